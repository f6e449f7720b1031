//! Progress of a long run: a line redrawn in place on a terminal, or a plain log line every
//! half minute when standard error is not one (a service's log, a CI job). A backfill shows
//! its items against those expected, and a bar per data file or segment being read.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use dynashift_core::Position;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::backfill::progress::BackfillProgress;
use crate::pipeline::Summary;

/// How often the figures are logged when not on a terminal.
const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    logged: Instant,
    backfill: Option<BackfillProgress>,
    /// On a terminal, during a backfill: the bars of the shards being read.
    shard_bars: Option<ShardBars>,
}

/// A bar per data file or segment being read, below the backfill's own.
struct ShardBars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
}

impl Progress {
    /// A progress line on standard error if it is a terminal, periodic log lines if not;
    /// `backfill`: the run is a backfill, shown against what it expects to load.
    pub fn start(backfill: Option<BackfillProgress>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let multi = MultiProgress::new();
        let bar = terminal.then(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            let (template, length) = match backfill.as_ref().and_then(BackfillProgress::items) {
                // `wide_msg`: cut to the terminal's width, so that a line never wraps
                // and the bars below it keep their places.
                Some(items) => ("{bar:30} {wide_msg} [{elapsed}]", items),
                None => ("{spinner} {msg} [{elapsed}]", 0),
            };
            bar.set_style(
                ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_length(length);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let shard_bars = (terminal && backfill.is_some()).then(|| ShardBars { multi, bars: HashMap::new() });
        let now = Instant::now();
        Progress { bar, started: now, logged: now, backfill, shard_bars }
    }

    /// After each committed batch: the run's figures so far, the positions the batch
    /// committed; `lag`: seconds from the newest change the batch applied to now. Returns
    /// the line when it was logged.
    pub fn committed(
        &mut self,
        summary: &Summary,
        positions: &[Position],
        lag: Option<i64>,
    ) -> Option<String> {
        let line = match self.backfill.as_mut() {
            Some(backfill) => {
                backfill.committed(positions, summary.records);
                if let (Some(bar), Some(shards)) = (&self.bar, self.shard_bars.as_mut()) {
                    bar.set_position(backfill.done());
                    shards.show(backfill);
                    bar.set_message(format!("backfill: {}", backfill.totals()));
                    return None;
                }
                format!("backfill: {}", backfill.line())
            }
            None => {
                let changes: u64 = summary.tables.values().map(|t| t.changes).sum();
                let secs = self.started.elapsed().as_secs_f64().max(0.001);
                let rate = changes as f64 / secs;
                let lag = lag.map_or_else(|| "-".to_string(), crate::report::format_age);
                format!(
                    "{} records, {} changes ({rate:.0}/s), {} batches, {} rejects, lag {lag}",
                    summary.records, changes, summary.batches, summary.rejects
                )
            }
        };
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None if self.logged.elapsed() >= LOG_EVERY => {
                self.logged = Instant::now();
                tracing::info!(target: "dynashift::progress", "{line}");
                return Some(line);
            }
            None => {}
        }
        None
    }

    pub fn finish(&self) {
        if let Some(shards) = &self.shard_bars {
            for bar in shards.bars.values() {
                bar.finish_and_clear();
            }
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ShardBars {
    /// A bar for each shard being read (its items when known), none for the others.
    fn show(&mut self, backfill: &BackfillProgress) {
        let reading = backfill.reading();
        self.bars.retain(|shard, bar| {
            let keep = reading.iter().any(|(s, _)| s == shard);
            if !keep {
                bar.finish_and_clear();
            }
            keep
        });
        for (shard, at) in reading {
            match self.bars.get(&shard) {
                Some(bar) => bar.set_message(at),
                None => {
                    // Styled and labelled before it is shown, so no frame draws it bare.
                    let bar = ProgressBar::new_spinner()
                        .with_style(
                            ProgressStyle::with_template("  {prefix} {wide_msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        )
                        .with_prefix(shard.clone())
                        .with_message(at);
                    self.bars.insert(shard, self.multi.add(bar));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_the_figures_are_logged_every_half_minute() {
        let now = Instant::now();
        let mut progress =
            Progress { bar: None, started: now, logged: now, backfill: None, shard_bars: None };
        let summary = Summary { records: 1_200, batches: 3, rejects: 1, ..Summary::default() };
        assert_eq!(progress.committed(&summary, &[], Some(90)), None, "less than 30 s since the start");
        progress.logged = now.checked_sub(LOG_EVERY).unwrap_or(now);
        let line = progress.committed(&summary, &[], Some(90)).unwrap_or_default();
        assert!(
            line.starts_with("1200 records, 0 changes (") && line.ends_with("3 batches, 1 rejects, lag 1m"),
            "{line}"
        );
        assert_eq!(progress.committed(&summary, &[], None), None, "logged a moment ago");
    }
}
