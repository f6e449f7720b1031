//! Progress of a long run: a line redrawn in place on a terminal, or a plain log line every
//! half minute when standard error is not one (a service's log, a CI job).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::pipeline::Summary;

/// How often the figures are logged when not on a terminal.
const LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    logged: Instant,
}

impl Progress {
    /// A progress line on standard error if it is a terminal, periodic log lines if not.
    pub fn start() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let now = Instant::now();
        Progress { bar, started: now, logged: now }
    }

    /// After each committed batch: the run's figures so far; `lag`: seconds from the newest
    /// change the batch applied to now. Returns the line when it was logged.
    pub fn committed(&mut self, summary: &Summary, lag: Option<i64>) -> Option<String> {
        let changes: u64 = summary.tables.values().map(|t| t.changes).sum();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = changes as f64 / secs;
        let lag = lag.map_or_else(|| "-".to_string(), crate::report::format_age);
        let line = format!(
            "{} records, {} changes ({rate:.0}/s), {} batches, {} rejects, lag {lag}",
            summary.records, changes, summary.batches, summary.rejects
        );
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
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_the_figures_are_logged_every_half_minute() {
        let now = Instant::now();
        let mut progress = Progress { bar: None, started: now, logged: now };
        let summary = Summary { records: 1_200, batches: 3, rejects: 1, ..Summary::default() };
        assert_eq!(progress.committed(&summary, Some(90)), None, "less than 30 s since the start");
        progress.logged = now.checked_sub(LOG_EVERY).unwrap_or(now);
        let line = progress.committed(&summary, Some(90)).unwrap_or_default();
        assert!(
            line.starts_with("1200 records, 0 changes (") && line.ends_with("3 batches, 1 rejects, lag 1m"),
            "{line}"
        );
        assert_eq!(progress.committed(&summary, None), None, "logged a moment ago");
    }
}
