//! A backfill's progress: items loaded against those expected (the export's manifests, or a
//! scanned table's `ItemCount`), items a second, the time left, and each data file or segment
//! being read. The figures come from the positions each committed batch carries, so they
//! count what is in the warehouse, not what was merely read.

use std::collections::HashMap;
use std::time::Instant;

use dynashift_core::checkpoint::ENDED;
use dynashift_core::Position;

/// What a backfill expects to load.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Items in all, when known.
    pub items: Option<u64>,
    /// `items` is DynamoDB's estimate (a table's `ItemCount`, refreshed about every six
    /// hours), not a count.
    pub approximate: bool,
    /// Each data file or segment, in reading order, and the items it holds when known.
    pub shards: Vec<(String, Option<u64>)>,
    /// What the shards are, for the lines: "data files" or "segments".
    pub unit: &'static str,
}

/// How far one data file or segment is read, as committed.
#[derive(Debug, Clone, PartialEq)]
pub enum ShardState {
    Waiting,
    /// Started; its committed position (an export's line number, a scan's page).
    Reading(String),
    Ended,
}

/// The figures of a backfill in progress.
pub struct BackfillProgress {
    expected: Expected,
    states: Vec<ShardState>,
    index: HashMap<String, usize>,
    /// Items loaded by earlier runs (an export resumed inside or after some of its files).
    before: u64,
    /// Items loaded by this run.
    loaded: u64,
    started: Instant,
}

impl BackfillProgress {
    /// `resume`: the positions committed before this run, by shard.
    pub fn new(expected: Expected, resume: &HashMap<String, String>) -> BackfillProgress {
        let index: HashMap<String, usize> =
            expected.shards.iter().enumerate().map(|(i, (shard, _))| (shard.clone(), i)).collect();
        let mut progress = BackfillProgress {
            states: vec![ShardState::Waiting; expected.shards.len()],
            expected,
            index,
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
        if let Some(&i) = self.index.get(shard) {
            self.states[i] =
                if position == ENDED { ShardState::Ended } else { ShardState::Reading(position.to_string()) };
        }
    }

    /// Items the committed positions account for, where shards count their items (an
    /// export's line numbers).
    fn items_by_position(&self) -> u64 {
        let counted = self.expected.shards.iter().zip(&self.states);
        counted
            .map(|((_, items), state)| match (state, items) {
                (ShardState::Ended, Some(items)) => *items,
                (ShardState::Reading(line), Some(_)) => line.parse().unwrap_or(0),
                _ => 0,
            })
            .sum()
    }

    /// Items loaded in all, this run and before.
    pub fn done(&self) -> u64 {
        self.before + self.loaded
    }

    /// Items a second this run.
    pub fn rate(&self) -> f64 {
        self.loaded as f64 / self.started.elapsed().as_secs_f64().max(0.001)
    }

    /// Seconds left at this run's rate, when the items expected are known.
    pub fn seconds_left(&self) -> Option<u64> {
        let rate = self.rate();
        let items = self.expected.items?;
        (rate > 0.0).then(|| (items.saturating_sub(self.done()) as f64 / rate).ceil() as u64)
    }

    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// Shards read whole.
    pub fn ended(&self) -> usize {
        self.states.iter().filter(|s| **s == ShardState::Ended).count()
    }

    /// The shards being read, each with a few words on how far it is.
    pub fn reading(&self) -> Vec<(String, String)> {
        let shards = self.expected.shards.iter().zip(&self.states);
        shards
            .filter_map(|((shard, items), state)| match state {
                ShardState::Reading(at) => Some((short_name(shard).to_string(), describe(at, *items))),
                _ => None,
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

    /// Items, rate, time left and shards read whole (on a terminal, the shards being read
    /// have bars of their own).
    pub fn totals(&self) -> String {
        let about = if self.expected.approximate { "about " } else { "" };
        let mut line = match self.expected.items {
            Some(items) if items > 0 => format!(
                "{} of {about}{} items ({:.0}%)",
                self.done(),
                items,
                (100.0 * self.done() as f64 / items as f64).min(100.0)
            ),
            _ => format!("{} items", self.done()),
        };
        if let Some(left) = self.seconds_left() {
            line.push_str(&format!(", {about}{} left", crate::report::format_age(left as i64)));
        }
        line.push_str(&format!(", {:.0} items/s", self.rate()));
        line.push_str(&format!(
            "; {}: {} of {} read whole",
            self.expected.unit,
            self.ended(),
            self.expected.shards.len()
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
            shards: vec![("x/data/a.json.gz".into(), Some(400)), ("x/data/b.json.gz".into(), Some(600))],
            unit: "data files",
        };
        let resume = resume.iter().map(|(s, p)| (s.to_string(), p.to_string())).collect();
        BackfillProgress::new(expected, &resume)
    }

    #[test]
    fn an_export_counts_its_files_by_their_committed_lines() {
        let mut progress = export(&[]);
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
        let expected = Expected {
            items: Some(10_000),
            approximate: true,
            shards: vec![("segment 0 of 2".into(), None), ("segment 1 of 2".into(), None)],
            unit: "segments",
        };
        let mut progress = BackfillProgress::new(expected, &HashMap::new());
        progress.committed(&[Position::new("segment 1 of 2", "0000000007:{\"id\":{\"S\":\"x\"}}")], 2_500);
        let line = progress.line();
        assert!(line.starts_with("2500 of about 10000 items (25%), "), "{line}");
        assert!(line.contains("segments: 0 of 2 read whole, reading segment 1 of 2 (7 pages)"), "{line}");
        assert!(line.contains("about "), "{line}");
    }
}
