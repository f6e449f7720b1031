//! A backfill's progress: items loaded against those expected (the export's manifests, or a
//! scanned table's `ItemCount`), items a second, the time left, and each data file or segment
//! being read. The figures come from the positions each committed batch carries, so they
//! count what is in the warehouse, not what was merely read.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use dynashift_core::checkpoint::ENDED;
use dynashift_core::Position;

/// What a backfill expects to load.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Items in all, when known (0 counts as unknown: a new table's `ItemCount` is 0 until
    /// DynamoDB refreshes it).
    pub items: Option<u64>,
    /// `items` is DynamoDB's estimate (a table's `ItemCount`, refreshed about every six
    /// hours), not a count.
    pub approximate: bool,
    /// The items each data file holds (an export's; a scan's segments list none).
    pub shard_items: HashMap<String, u64>,
    /// Data files or segments in all.
    pub shard_count: usize,
    /// What the shards are, for the lines: "data files" or "segments".
    pub unit: &'static str,
}

/// How far one data file or segment is read, as committed.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardState {
    /// Started; its committed position (an export's line number, a scan's page).
    Reading(String),
    Ended,
}

/// The figures of a backfill in progress.
pub struct BackfillProgress {
    expected: Expected,
    /// The shards started, by name (kept only for those seen: a scan may have a million
    /// segments).
    states: BTreeMap<String, ShardState>,
    /// Items loaded by earlier runs (an export resumed inside or after some of its files; a
    /// scan's segments read whole, at the table's average per segment).
    before: u64,
    /// Items loaded by this run.
    loaded: u64,
    started: Instant,
}

impl BackfillProgress {
    /// `resume`: the positions committed before this run, by shard.
    pub fn new(expected: Expected, resume: &HashMap<String, String>) -> BackfillProgress {
        let mut progress = BackfillProgress {
            expected,
            states: BTreeMap::new(),
            before: 0,
            loaded: 0,
            started: Instant::now(),
        };
        for (shard, position) in resume {
            progress.place(shard, position);
        }
        progress.before = progress.items_by_position();
        progress
    }

    /// After a committed batch: `positions` it committed, and the records this run has
    /// loaded so far.
    pub fn committed(&mut self, positions: &[Position], records: u64) {
        for p in positions {
            self.place(&p.shard, &p.sequence);
        }
        self.loaded = records;
    }

    fn place(&mut self, shard: &str, position: &str) {
        // `@…` rows are the run's own bookkeeping, not shards.
        if shard.starts_with('@') {
            return;
        }
        let state =
            if position == ENDED { ShardState::Ended } else { ShardState::Reading(position.to_string()) };
        self.states.insert(shard.to_string(), state);
    }

    /// The items expected, when known.
    pub fn items(&self) -> Option<u64> {
        self.expected.items.filter(|n| *n > 0)
    }

    /// Items the committed positions account for: an export's line numbers, and for a scan
    /// the table's average per segment for each segment read whole.
    fn items_by_position(&self) -> u64 {
        let per_segment = match (self.items(), self.expected.shard_count) {
            (Some(items), count) if count > 0 => items / count as u64,
            _ => 0,
        };
        let counted =
            self.states.iter().map(|(shard, state)| match (state, self.expected.shard_items.get(shard)) {
                (ShardState::Ended, Some(items)) => *items,
                (ShardState::Ended, None) => per_segment,
                (ShardState::Reading(line), Some(_)) => line.parse().unwrap_or(0),
                (ShardState::Reading(_), None) => 0,
            });
        counted.sum()
    }

    /// Items loaded in all, this run and before.
    pub fn done(&self) -> u64 {
        self.before + self.loaded
    }

    /// Items a second this run.
    pub fn rate(&self) -> f64 {
        self.loaded as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    /// Seconds left at this run's rate, when the items expected are known and not reached
    /// (an estimate can be passed).
    pub fn seconds_left(&self) -> Option<u64> {
        let rate = self.rate();
        let left = self.items()?.checked_sub(self.done()).filter(|left| *left > 0)?;
        (rate > 0.0).then(|| (left as f64 / rate).ceil() as u64)
    }

    /// Shards read whole.
    pub fn ended(&self) -> usize {
        self.states.values().filter(|s| **s == ShardState::Ended).count()
    }

    /// The shards being read, each with a few words on how far it is.
    pub fn reading(&self) -> Vec<(String, String)> {
        self.states
            .iter()
            .filter_map(|(shard, state)| match state {
                ShardState::Reading(at) => Some((
                    short_name(shard).to_string(),
                    describe(at, self.expected.shard_items.get(shard).copied()),
                )),
                ShardState::Ended => None,
            })
            .collect()
    }

    /// The whole state in one line (logged every half minute off a terminal).
    pub fn line(&self) -> String {
        let mut line = self.totals();
        let reading = self.reading();
        if !reading.is_empty() {
            let parts: Vec<String> = reading.iter().map(|(shard, at)| format!("{shard} ({at})")).collect();
            line.push_str(&format!(", reading {}", parts.join(", ")));
        }
        line
    }

    /// Items, time left, rate and shards read whole (on a terminal, the shards being read
    /// have bars of their own).
    pub fn totals(&self) -> String {
        let about = if self.expected.approximate { "about " } else { "" };
        let done = self.done();
        let mut line = match self.items() {
            Some(items) if done <= items => {
                format!("{done} of {about}{items} items ({:.0}%)", 100.0 * done as f64 / items as f64)
            }
            Some(items) => format!("{done} items (past the estimate of {about}{items})"),
            None => format!("{done} items"),
        };
        if let Some(left) = self.seconds_left() {
            line.push_str(&format!(", {about}{} left", crate::report::format_age(left as i64)));
        }
        line.push_str(&format!(", {:.0} items/s", self.rate()));
        line.push_str(&format!(
            "; {}: {} of {} read whole",
            self.expected.unit,
            self.ended(),
            self.expected.shard_count
        ));
        line
    }
}

/// A data file by its name in the export's folder (`data/…`), not its whole S3 key.
fn short_name(shard: &str) -> &str {
    shard.rfind("/data/").map_or(shard, |at| &shard[at + 1..])
}

/// How far a shard is, from its committed position: a line of a data file whose items are
/// known, a scan's page (`{page}:{start key}`).
fn describe(position: &str, items: Option<u64>) -> String {
    match items {
        Some(items) => format!("{position} of {items} items"),
        None => {
            let page = position.split(':').next().and_then(|p| p.parse::<u64>().ok());
            page.map_or_else(|| position.to_string(), |p| format!("{p} pages"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(resume: &[(&str, &str)]) -> BackfillProgress {
        let expected = Expected {
            items: Some(1_000),
            approximate: false,
            shard_items: HashMap::from([("x/data/a.json.gz".into(), 400), ("x/data/b.json.gz".into(), 600)]),
            shard_count: 2,
            unit: "data files",
        };
        let resume = resume.iter().map(|(s, p)| (s.to_string(), p.to_string())).collect();
        BackfillProgress::new(expected, &resume)
    }

    fn scan(items: u64, resume: &[(&str, &str)]) -> BackfillProgress {
        let expected = Expected {
            items: Some(items),
            approximate: true,
            shard_items: HashMap::new(),
            shard_count: 4,
            unit: "segments",
        };
        let resume = resume.iter().map(|(s, p)| (s.to_string(), p.to_string())).collect();
        BackfillProgress::new(expected, &resume)
    }

    #[test]
    fn an_export_counts_its_files_by_their_committed_lines() {
        let mut progress = export(&[("@applied", "x")]);
        assert_eq!((progress.done(), progress.ended()), (0, 0));
        progress.committed(
            &[Position::new("x/data/a.json.gz", ENDED), Position::new("x/data/b.json.gz", "150")],
            550,
        );
        assert_eq!((progress.done(), progress.ended()), (550, 1));
        assert_eq!(progress.reading(), vec![("data/b.json.gz".to_string(), "150 of 600 items".to_string())]);
        let line = progress.line();
        assert!(line.starts_with("550 of 1000 items (55%), "), "{line}");
        assert!(
            line.contains(
                " items/s; data files: 1 of 2 read whole, reading data/b.json.gz (150 of 600 items)"
            ),
            "{line}"
        );
    }

    #[test]
    fn a_resumed_export_counts_what_earlier_runs_loaded() {
        let mut progress = export(&[("x/data/a.json.gz", ENDED), ("x/data/b.json.gz", "100")]);
        assert_eq!(progress.done(), 500);
        progress.committed(&[Position::new("x/data/b.json.gz", "300")], 200);
        assert_eq!(progress.done(), 700, "before this run, plus this run's records");
    }

    #[test]
    fn a_scan_shows_pages_and_an_approximate_total() {
        let mut progress = scan(10_000, &[]);
        progress.committed(&[Position::new("segment 1 of 4", "0000000007:{\"id\":{\"S\":\"x\"}}")], 2_500);
        let line = progress.line();
        assert!(line.starts_with("2500 of about 10000 items (25%), about "), "{line}");
        assert!(line.contains("segments: 0 of 4 read whole, reading segment 1 of 4 (7 pages)"), "{line}");
    }

    #[test]
    fn a_resumed_scan_counts_its_finished_segments_at_the_average() {
        let progress = scan(
            10_000,
            &[("segment 0 of 4", ENDED), ("segment 1 of 4", ENDED), ("segment 2 of 4", "0000000003:{}")],
        );
        assert_eq!(progress.done(), 5_000);
        assert!(progress.line().starts_with("5000 of about 10000 items (50%)"), "{}", progress.line());
    }

    #[test]
    fn an_unknown_or_passed_estimate_shows_no_time_left() {
        let mut progress = scan(0, &[]);
        progress.committed(&[Position::new("segment 0 of 4", "0000000001:{}")], 300);
        assert_eq!((progress.items(), progress.seconds_left()), (None, None));
        assert!(progress.line().starts_with("300 items, "), "{}", progress.line());
        let mut progress = scan(100, &[]);
        progress.committed(&[Position::new("segment 0 of 4", "0000000001:{}")], 300);
        assert_eq!(progress.seconds_left(), None);
        assert!(
            progress.line().starts_with("300 items (past the estimate of about 100), "),
            "{}",
            progress.line()
        );
    }
}
