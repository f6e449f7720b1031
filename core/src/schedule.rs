//! Per-table schedules: how often a table's held changes are applied (`every`), in which daily
//! window, with which priority, or not at all (`paused`); and quiet windows in which nothing is
//! applied. Times are seconds since the Unix epoch, given by the caller, so every decision can
//! be tested on a virtual clock.

use std::fmt;

const DAY: i64 = 86_400;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A schedule setting that cannot be read, with what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{text}` is not {expected}")]
pub struct InvalidSchedule {
    /// The text as written.
    pub text: String,
    /// What was expected, for the message.
    pub expected: &'static str,
}

fn invalid(text: &str, expected: &'static str) -> InvalidSchedule {
    InvalidSchedule { text: text.to_string(), expected }
}

/// Parses a duration such as `0s`, `90s`, `15m`, `1h30m` or `2d` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, InvalidSchedule> {
    const EXPECTED: &str = "a duration such as \"0s\", \"15m\", \"1h30m\" or \"1d\"";
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(invalid(text, EXPECTED)),
        };
        let n: u64 = digits.parse().map_err(|_| invalid(text, EXPECTED))?;
        total =
            n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(|| invalid(text, EXPECTED))?;
        digits.clear();
        parts += 1;
    }
    if parts == 0 || !digits.is_empty() {
        return Err(invalid(text, EXPECTED));
    }
    Ok(total)
}

/// A daily window, `HH:MM-HH:MM`, in UTC or at a fixed offset; it may span midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after local midnight at which it opens and closes (`end` < `start` spans
    /// midnight).
    start: i64,
    end: i64,
    /// The zone's offset from UTC, in minutes.
    offset: i64,
}

fn parse_clock(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn parse_offset(text: &str) -> Option<i64> {
    match text {
        "" | "UTC" | "Z" => Some(0),
        _ => {
            let sign = match text.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let minutes = parse_clock(&text[1..])?;
            (minutes < 24 * 60).then_some(sign * minutes)
        }
    }
}

impl Window {
    /// Parses `01:00-05:00`, optionally followed by a zone: `UTC` (the default) or a fixed
    /// offset such as `+02:00`.
    pub fn parse(text: &str) -> Result<Window, InvalidSchedule> {
        const EXPECTED: &str = "a daily window such as \"01:00-05:00\" or \"22:00-02:00 +01:00\"";
        let text = text.trim();
        let (range, zone) = text.split_once(' ').unwrap_or((text, ""));
        let (start, end) = range.split_once('-').ok_or_else(|| invalid(text, EXPECTED))?;
        let (Some(start), Some(end), Some(offset)) =
            (parse_clock(start), parse_clock(end), parse_offset(zone.trim()))
        else {
            return Err(invalid(text, EXPECTED));
        };
        // 24:00 ends a window at midnight; it starts none.
        let start = start % (24 * 60);
        if start == end || end - start == 24 * 60 {
            return Err(invalid(text, "a daily window of some length (start and end differ)"));
        }
        Ok(Window { start, end, offset })
    }

    /// Seconds since the local midnight of the day of `t`, and that midnight.
    fn local(&self, t: i64) -> (i64, i64) {
        let local = t + self.offset * 60;
        let midnight = local.div_euclid(DAY) * DAY;
        (local - midnight, midnight - self.offset * 60)
    }

    /// Whether the window is open at `t`.
    pub fn contains(&self, t: i64) -> bool {
        let (s, _) = self.local(t);
        let (start, end) = (self.start * 60, self.end * 60);
        if start < end {
            (start..end).contains(&s)
        } else {
            s >= start || s < end
        }
    }

    /// When the window next opens at or after `t` (`t` itself when it is open).
    pub fn next_open(&self, t: i64) -> i64 {
        if self.contains(t) {
            return t;
        }
        let (_, midnight) = self.local(t);
        let open = midnight + self.start * 60;
        if open > t {
            open
        } else {
            open + DAY
        }
    }

    /// When the window open at `t` closes (`t` when it is closed).
    pub fn close_after(&self, t: i64) -> i64 {
        if !self.contains(t) {
            return t;
        }
        let (s, midnight) = self.local(t);
        let close = midnight + self.end * 60;
        if self.end * 60 > s {
            close
        } else {
            close + DAY
        }
    }

    /// The day (0 = Monday) on which the window open at `t` opened, in the window's zone.
    fn opened_on(&self, t: i64) -> usize {
        let (s, midnight) = self.local(t);
        let local_midnight = midnight + self.offset * 60;
        let mut day = local_midnight.div_euclid(DAY);
        if self.start > self.end && s < self.end * 60 {
            day -= 1;
        }
        // 1970-01-01 was a Thursday (3 with Monday as 0).
        (day + 3).rem_euclid(7) as usize
    }

    /// Seconds the window is closed each day.
    fn closed_secs(&self) -> i64 {
        let open =
            if self.end > self.start { self.end - self.start } else { self.end + 24 * 60 - self.start };
        DAY - open * 60
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}-{:02}:{:02}", self.start / 60, self.start % 60, self.end / 60, self.end % 60)?;
        if self.offset != 0 {
            let sign = if self.offset < 0 { '-' } else { '+' };
            write!(f, " {sign}{:02}:{:02}", self.offset.abs() / 60, self.offset.abs() % 60)?;
        }
        Ok(())
    }
}

/// A window in which nothing is applied: `Mon-Fri 08:00-09:00`, `Sat 00:00-06:00`, or a
/// window alone (every day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quiet {
    /// Days (0 = Monday) on which the window opens.
    days: [bool; 7],
    window: Window,
}

fn parse_day(text: &str) -> Option<usize> {
    DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(text))
}

impl Quiet {
    /// Parses `Mon-Fri 08:00-09:00`, `Sat,Sun 00:00-06:00`, `08:00-09:00 +01:00`, ….
    pub fn parse(text: &str) -> Result<Quiet, InvalidSchedule> {
        const EXPECTED: &str = "a quiet window such as \"Mon-Fri 08:00-09:00\" or \"22:00-23:00\"";
        let trimmed = text.trim();
        let first = trimmed.split(' ').next().unwrap_or("");
        if first.contains(':') {
            return Ok(Quiet { days: [true; 7], window: Window::parse(trimmed)? });
        }
        let mut days = [false; 7];
        for part in first.split(',') {
            match part.split_once('-') {
                Some((from, to)) => {
                    let (Some(from), Some(to)) = (parse_day(from), parse_day(to)) else {
                        return Err(invalid(text, EXPECTED));
                    };
                    let mut d = from;
                    loop {
                        days[d] = true;
                        if d == to {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[parse_day(part).ok_or_else(|| invalid(text, EXPECTED))?] = true,
            }
        }
        let window = trimmed[first.len()..].trim();
        if window.is_empty() {
            return Err(invalid(text, EXPECTED));
        }
        Ok(Quiet { days, window: Window::parse(window)? })
    }

    /// Whether `t` falls in this quiet window.
    pub fn contains(&self, t: i64) -> bool {
        self.window.contains(t) && self.days[self.window.opened_on(t)]
    }

    /// When this quiet window, open at `t`, ends.
    fn end_after(&self, t: i64) -> i64 {
        self.window.close_after(t)
    }
}

/// When a table's held changes are applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// At most one apply per this many seconds (0: as soon as changes are read).
    pub every: u64,
    /// Only inside this daily window.
    pub window: Option<Window>,
    /// When several tables are due, higher first.
    pub priority: i64,
    /// Read and hold, apply nothing.
    pub paused: bool,
}

impl Schedule {
    /// Applied at every batch: no interval, no window, not paused.
    pub fn is_continuous(&self) -> bool {
        self.every == 0 && self.window.is_none() && !self.paused
    }

    /// Whether the table's held changes may be applied at `now`, given its last apply.
    pub fn due(&self, last_applied: Option<i64>, now: i64, quiet: &[Quiet]) -> bool {
        !self.paused
            && !quiet.iter().any(|q| q.contains(now))
            && self.window.is_none_or(|w| w.contains(now))
            && last_applied.is_none_or(|last| now >= last.saturating_add(self.every as i64))
    }

    /// When the table is next due at or after `now`; `None` when paused or when quiet
    /// windows cover every moment its own window is open.
    pub fn next_due(&self, last_applied: Option<i64>, now: i64, quiet: &[Quiet]) -> Option<i64> {
        if self.paused {
            return None;
        }
        let mut t = last_applied.map_or(now, |last| now.max(last.saturating_add(self.every as i64)));
        // Each step moves to a window's opening or a quiet window's end; a week of them is
        // more than any combination needs.
        for _ in 0..64 {
            if let Some(w) = self.window.filter(|w| !w.contains(t)) {
                t = w.next_open(t);
                continue;
            }
            match quiet.iter().find(|q| q.contains(t)) {
                Some(q) => t = q.end_after(t),
                None => return Some(t),
            }
        }
        None
    }

    /// The longest a held change may wait for this schedule (its interval plus the time its
    /// window is closed); `None` when paused. Quiet windows are not counted.
    pub fn longest_wait(&self) -> Option<u64> {
        if self.paused {
            return None;
        }
        let closed = self.window.map_or(0, |w| w.closed_secs());
        Some(self.every + closed as u64)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.paused {
            return f.write_str("paused");
        }
        if self.is_continuous() {
            return f.write_str("continuous");
        }
        let mut parts = Vec::new();
        if self.every > 0 {
            parts.push(format!("every {}", format_duration(self.every)));
        }
        if let Some(w) = self.window {
            parts.push(format!("in {w}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// `90` → `1m30s`, `3600` → `1h`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let parts = [(secs / 86_400, 'd'), (secs / 3_600 % 24, 'h'), (secs / 60 % 60, 'm'), (secs % 60, 's')];
    parts.iter().filter(|(n, _)| *n > 0).map(|(n, unit)| format!("{n}{unit}")).collect()
}

/// A table holding changes, as `choose` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldTable {
    /// The source table.
    pub table: String,
    /// Approximate memory of its held changes.
    pub bytes: usize,
    /// When its oldest held change was read (seconds since the epoch).
    pub held_since: i64,
    /// When the oldest of its held changes was made (seconds since the epoch): near when the
    /// stream received it.
    pub oldest_change: i64,
}

/// Which held tables the next batch applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Choice {
    /// Due tables, highest priority first, at most `max_tables`.
    pub due: Vec<String>,
    /// Tables applied outside their schedule because the held changes reached the memory
    /// bound (the one holding the most).
    pub early: Vec<String>,
    /// Tables applied outside their schedule because their oldest held change nears the
    /// stream's retention.
    pub retention: Vec<String>,
    /// A paused table whose held changes alone fill the memory bound: reading must wait.
    pub blocked_by: Option<String>,
    /// Paused tables whose oldest held change nears the stream's retention: unless they are
    /// applied soon, the stream drops changes they have not applied.
    pub expiring_paused: Vec<String>,
}

impl Choice {
    /// Every table the batch applies.
    pub fn tables(&self) -> impl Iterator<Item = &String> {
        self.retention.iter().chain(&self.due).chain(&self.early)
    }

    /// Whether the batch applies no table.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty() && self.early.is_empty() && self.retention.is_empty()
    }
}

/// What `choose` decides by.
pub struct Rules<'a> {
    /// The schedule of each table.
    pub schedule: &'a dyn Fn(&str) -> &'a Schedule,
    /// The last apply of each table (seconds since the epoch), if any.
    pub last_applied: &'a dyn Fn(&str) -> Option<i64>,
    /// Windows in which nothing is applied.
    pub quiet: &'a [Quiet],
    /// Tables one batch applies at most (0: no limit).
    pub max_tables: usize,
    /// How long the stream keeps a record, in seconds (`None`: for ever, a file). A table
    /// whose oldest held change is three quarters of it old is applied whatever its schedule.
    pub retention: Option<u64>,
}

/// How long the stream has held `h`'s oldest change: by the time the change was made, unless
/// that is older than the retention itself (no record can be: the times were made up, or
/// the clocks disagree), then by the time it was read.
fn age_in_stream(h: &HeldTable, now: i64, retention: u64) -> u64 {
    let made = now.saturating_sub(h.oldest_change).max(0) as u64;
    if made < retention {
        made
    } else {
        now.saturating_sub(h.held_since).max(0) as u64
    }
}

/// Chooses the tables the next batch applies at `now`. `over_budget`: the held changes
/// reached the memory bound.
pub fn choose(held: &[HeldTable], rules: &Rules, now: i64, over_budget: bool) -> Choice {
    let mut choice = Choice::default();
    let mut due: Vec<&HeldTable> = Vec::new();
    for h in held {
        let schedule = (rules.schedule)(&h.table);
        let expiring =
            rules.retention.is_some_and(|retention| age_in_stream(h, now, retention) >= retention / 4 * 3);
        if expiring && schedule.paused {
            choice.expiring_paused.push(h.table.clone());
        } else if expiring {
            choice.retention.push(h.table.clone());
        } else if schedule.due((rules.last_applied)(&h.table), now, rules.quiet) {
            due.push(h);
        }
    }
    due.sort_by(|a, b| {
        let (pa, pb) = ((rules.schedule)(&a.table).priority, (rules.schedule)(&b.table).priority);
        pb.cmp(&pa).then(a.held_since.cmp(&b.held_since)).then(a.table.cmp(&b.table))
    });
    let room = if rules.max_tables == 0 { usize::MAX } else { rules.max_tables };
    choice.due =
        due.iter().take(room.saturating_sub(choice.retention.len())).map(|h| h.table.clone()).collect();
    if over_budget && choice.is_empty() {
        let biggest = |paused: bool| {
            held.iter().filter(|h| (rules.schedule)(&h.table).paused == paused).max_by_key(|h| h.bytes)
        };
        match biggest(false) {
            Some(h) => choice.early.push(h.table.clone()),
            None => choice.blocked_by = biggest(true).map(|h| h.table.clone()),
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07, a Monday, 00:00 UTC.
    const MONDAY: i64 = 1_796_601_600;
    const H: i64 = 3_600;

    #[test]
    fn the_epoch_monday_is_a_monday() {
        let w = Window::parse("00:00-01:00").unwrap();
        assert_eq!(w.opened_on(MONDAY), 0);
        assert_eq!(w.opened_on(MONDAY + 6 * DAY), 6);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        for bad in ["", "15", "m", "1x", "-1h", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(5_400), "1h30m");
        assert_eq!(format_duration(90_061), "1d1h1m1s");
    }

    #[test]
    fn windows_open_and_close() {
        let w = Window::parse("01:00-05:00").unwrap();
        assert!(!w.contains(MONDAY));
        assert!(w.contains(MONDAY + H));
        assert!(!w.contains(MONDAY + 5 * H));
        assert_eq!(w.next_open(MONDAY), MONDAY + H);
        assert_eq!(w.next_open(MONDAY + 6 * H), MONDAY + DAY + H);
        assert_eq!(w.close_after(MONDAY + 2 * H), MONDAY + 5 * H);
        assert_eq!(w.to_string(), "01:00-05:00");
    }

    #[test]
    fn windows_across_midnight_and_in_other_zones() {
        let w = Window::parse("22:00-02:00").unwrap();
        assert!(w.contains(MONDAY + 23 * H));
        assert!(w.contains(MONDAY + DAY + H));
        assert!(!w.contains(MONDAY + DAY + 3 * H));
        assert_eq!(w.close_after(MONDAY + 23 * H), MONDAY + DAY + 2 * H);
        assert_eq!(w.close_after(MONDAY + H), MONDAY + 2 * H);
        // 01:00-05:00 at +02:00 is 23:00-03:00 UTC.
        let w = Window::parse("01:00-05:00 +02:00").unwrap();
        assert!(w.contains(MONDAY - H));
        assert!(w.contains(MONDAY + 2 * H));
        assert!(!w.contains(MONDAY + 3 * H));
        assert_eq!(w.to_string(), "01:00-05:00 +02:00");
        for bad in ["1-5", "01:00", "01:00-01:00", "25:00-02:00", "01:00-05:00 CET", "01:60-02:00"] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quiet_windows_by_weekday() {
        let q = Quiet::parse("Mon-Fri 08:00-09:00").unwrap();
        assert!(q.contains(MONDAY + 8 * H));
        assert!(!q.contains(MONDAY + 9 * H));
        assert!(q.contains(MONDAY + 4 * DAY + 8 * H + 1_800), "Friday");
        assert!(!q.contains(MONDAY + 5 * DAY + 8 * H), "Saturday");
        let weekend_nights = Quiet::parse("Sat,Sun 23:00-01:00").unwrap();
        assert!(weekend_nights.contains(MONDAY + 6 * DAY + 23 * H), "Sunday night");
        assert!(weekend_nights.contains(MONDAY + 7 * DAY + 30 * 60), "Monday's first hour, from Sunday");
        assert!(weekend_nights.contains(MONDAY + 30 * 60), "the night from Sunday to this Monday");
        assert!(!weekend_nights.contains(MONDAY + 5 * DAY + 30 * 60), "Saturday's first hour, from Friday");
        let wrap = Quiet::parse("Fri-Mon 12:00-13:00").unwrap();
        assert!(wrap.contains(MONDAY + 12 * H) && !wrap.contains(MONDAY + DAY + 12 * H));
        assert!(Quiet::parse("08:00-09:00").unwrap().contains(MONDAY + 2 * DAY + 8 * H));
        for bad in ["Mon-Fri", "Funday 08:00-09:00", "Mon-Fri 8-9", ""] {
            assert!(Quiet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_window_and_pause_decide_when_a_table_is_due() {
        let hourly = Schedule { every: 3_600, ..Schedule::default() };
        assert!(hourly.due(None, MONDAY, &[]), "never applied: due at once");
        assert!(!hourly.due(Some(MONDAY), MONDAY + 3_599, &[]));
        assert!(hourly.due(Some(MONDAY), MONDAY + 3_600, &[]));
        assert_eq!(hourly.next_due(Some(MONDAY), MONDAY + 10, &[]), Some(MONDAY + H));
        let nightly = Schedule { window: Window::parse("01:00-05:00").ok(), ..Schedule::default() };
        assert!(!nightly.due(None, MONDAY, &[]));
        assert!(nightly.due(None, MONDAY + 2 * H, &[]));
        assert_eq!(nightly.next_due(None, MONDAY, &[]), Some(MONDAY + H));
        assert_eq!(nightly.next_due(None, MONDAY + 6 * H, &[]), Some(MONDAY + DAY + H));
        let paused = Schedule { paused: true, ..Schedule::default() };
        assert!(!paused.due(None, MONDAY, &[]));
        assert_eq!(paused.next_due(None, MONDAY, &[]), None);
        assert_eq!(paused.longest_wait(), None);
        assert_eq!(nightly.longest_wait(), Some(20 * 3_600));
        assert!(Schedule::default().is_continuous() && Schedule::default().due(Some(MONDAY), MONDAY, &[]));
    }

    #[test]
    fn quiet_windows_hold_every_table() {
        let quiet = [Quiet::parse("Mon-Fri 08:00-09:00").unwrap()];
        let continuous = Schedule::default();
        assert!(!continuous.due(Some(MONDAY), MONDAY + 8 * H + 5, &quiet));
        assert!(continuous.due(Some(MONDAY), MONDAY + 9 * H, &quiet));
        assert_eq!(continuous.next_due(None, MONDAY + 8 * H + 5, &quiet), Some(MONDAY + 9 * H));
        // A window wholly inside quiet time is never due.
        let inside = Schedule { window: Window::parse("08:00-09:00").ok(), ..Schedule::default() };
        let always_quiet = [Quiet::parse("08:00-09:00").unwrap()];
        assert_eq!(inside.next_due(None, MONDAY, &always_quiet), None);
    }

    fn held(table: &str, bytes: usize, held_since: i64) -> HeldTable {
        HeldTable { table: table.into(), bytes, held_since, oldest_change: held_since }
    }

    struct Setup {
        schedules: Vec<(&'static str, Schedule)>,
        applied: Vec<(&'static str, i64)>,
        quiet: Vec<Quiet>,
        max_tables: usize,
        retention: Option<u64>,
    }

    impl Setup {
        fn choose(&self, held: &[HeldTable], now: i64, over_budget: bool) -> Choice {
            let continuous = Schedule::default();
            let schedule =
                |t: &str| self.schedules.iter().find(|(n, _)| *n == t).map_or(&continuous, |(_, s)| s);
            let last_applied = |t: &str| self.applied.iter().find(|(n, _)| *n == t).map(|(_, at)| *at);
            let rules = Rules {
                schedule: &schedule,
                last_applied: &last_applied,
                quiet: &self.quiet,
                max_tables: self.max_tables,
                retention: self.retention,
            };
            choose(held, &rules, now, over_budget)
        }
    }

    fn setup() -> Setup {
        Setup {
            schedules: vec![
                ("Orders", Schedule { every: 3_600, priority: 10, ..Schedule::default() }),
                ("Audit", Schedule { paused: true, ..Schedule::default() }),
                ("Hot", Schedule { priority: 1, ..Schedule::default() }),
            ],
            applied: vec![("Orders", MONDAY)],
            quiet: Vec::new(),
            max_tables: 0,
            retention: None,
        }
    }

    #[test]
    fn due_tables_by_priority_then_age_within_the_batch_limit() {
        let mut s = setup();
        let tables = [held("Cold", 5, MONDAY), held("Hot", 5, MONDAY + 5), held("Orders", 5, MONDAY + 9)];
        let c = s.choose(&tables, MONDAY + 60, false);
        assert_eq!(c.due, vec!["Hot", "Cold"], "Orders applied a minute ago");
        let c = s.choose(&tables, MONDAY + H, false);
        assert_eq!(c.due, vec!["Orders", "Hot", "Cold"]);
        s.max_tables = 2;
        assert_eq!(s.choose(&tables, MONDAY + H, false).due, vec!["Orders", "Hot"]);
    }

    #[test]
    fn memory_pressure_applies_the_biggest_unpaused_table_early() {
        let s = setup();
        let tables = [held("Orders", 900, MONDAY), held("Audit", 5_000, MONDAY)];
        let c = s.choose(&tables, MONDAY + 60, true);
        assert_eq!((c.due.len(), c.early.clone()), (0, vec!["Orders".to_string()]));
        assert!(s.choose(&tables, MONDAY + 60, false).is_empty(), "no pressure, nothing due");
        let c = s.choose(&[held("Audit", 5_000, MONDAY)], MONDAY + 60, true);
        assert!(c.is_empty());
        assert_eq!(c.blocked_by.as_deref(), Some("Audit"), "a paused table is never applied early");
    }

    #[test]
    fn retention_beats_schedules_and_windows_but_not_a_pause() {
        let mut s = setup();
        s.retention = Some(24 * 3_600);
        s.quiet = vec![Quiet::parse("00:00-23:59").unwrap()];
        let tables = [held("Orders", 5, MONDAY), held("Audit", 5, MONDAY), held("Hot", 5, MONDAY + 60)];
        let c = s.choose(&tables, MONDAY + 18 * H, false);
        assert_eq!(c.retention, vec!["Orders"]);
        assert_eq!(c.expiring_paused, vec!["Audit"]);
        assert!(c.due.is_empty(), "quiet time");
        assert_eq!(c.tables().count(), 1);
    }
}
