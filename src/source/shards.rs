//! Reading a sharded stream (Kinesis Data Streams, DynamoDB Streams) into batches.
//!
//! Every readable shard (see `lineage`) is polled with `GetRecords`, all of them at once,
//! each no more than five times a second and about once a second while it is empty. Nothing
//! is skipped silently:
//!
//! - the configured `start` applies to a new reader's first listing only; every shard found
//!   later (a split's or merge's children, a new stream of a table, a shard that never gave a
//!   record before a restart) starts at its trim horizon, or at the time the reader first
//!   listed the stream;
//! - where the service would quietly continue at the trim horizon from an expired position
//!   (Kinesis), the reader resumes *at* the committed record and stops unless it comes back;
//! - a shard read to its end commits an `end` marker, so a committed shard that is neither
//!   listed nor ended at start-up is known to have been trimmed (a stop), and an ended shard
//!   that left the listing is pruned.
//!
//! Markers and positions travel as positions (see `dynashift_core::checkpoint`), committed
//! with the batch that holds the shard's records. The service's API is behind `ShardApi`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynashift_core::checkpoint::{ENDED, PRUNED, START_KEY, STREAM_KEY};
use dynashift_core::Position;

use super::lineage::Lineage;
pub use super::shard_api::{
    classify, ApiError, IteratorStart, Listing, Page, Payload, ShardApi, SourceError, StartPosition,
};
use super::RawRecord;
use crate::backoff::Backoff;

/// At most five GetRecords calls per second per shard.
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);
/// How long an empty shard at the tip rests before it is asked again; each empty page in a
/// row doubles it, up to `IDLE_PAUSE_MAX`.
const EMPTY_PAUSE: Duration = Duration::from_secs(1);
/// The longest rest of a shard that stays empty: a change to an idle table waits at most this
/// long (plus the flush interval) before it is read.
pub const IDLE_PAUSE_MAX: Duration = Duration::from_secs(10);
/// How often the whole listing is read again (children of ended shards are asked for when
/// they end; this finds everything else, such as a table's new stream).
const LIST_INTERVAL: Duration = Duration::from_secs(60);
/// Listing calls are spaced at least this far apart (DynamoDB Streams allows 10
/// DescribeStream calls a second; Kinesis allows more ListShards calls).
const MIN_LIST_SPACING: Duration = Duration::from_millis(250);
/// A GetRecords call (with its iterator) that has not answered by then is asked again later,
/// so one slow shard does not hold up the others.
const CALL_LIMIT: Duration = Duration::from_secs(20);
/// Taken off a start time given to AT_TIMESTAMP: the service compares it with its own arrival
/// times, and this host's clock may run ahead. Reading a little earlier only reads again.
const CLOCK_MARGIN_SECS: f64 = 60.0;
/// Empty pages in a row after which a shard whose service does not say how far behind it is
/// (DynamoDB Streams) counts as caught up: an empty page may come before later records.
const EMPTY_PAGES_AT_TIP: u32 = 3;
/// Attempts at the first listing when the service throttles or cannot be reached.
const OPEN_ATTEMPTS: u32 = 6;

/// How the reader behaves, from the configuration.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    pub start: StartPosition,
    /// Stop once every shard is caught up (`sync --once`) instead of waiting for more.
    pub once: bool,
    /// How long a partial batch may wait for more records.
    pub flush_interval: Duration,
    /// Continue when a committed position cannot be proved to exist (a shard known to have
    /// been idle past the retention), instead of stopping.
    pub skip_trim_check: bool,
    /// Bytes one round of reads over all shards aims at (a share of the memory budget).
    pub round_bytes: usize,
}

#[derive(Default)]
struct ShardState {
    iterator: Option<String>,
    /// Newest sequence handed out (or committed), to resume after.
    last: Option<String>,
    /// Where the first iterator starts when there is no `last`.
    from: Option<IteratorStart>,
    /// The committed sequence that must come back first (see `ShardApi::verifies_resume`).
    verify: Option<String>,
    next_call: Option<Instant>,
    backoff: Option<Backoff>,
    /// The last call returned nothing and the shard is at the stream's tip.
    caught_up: bool,
    /// Empty pages in a row.
    empty_pages: u32,
    /// Empty pages in a row at the tip: each doubles the shard's rest (`idle_pause`).
    idle_rounds: u32,
    /// How far behind the stream's tip the last page was (milliseconds): the service's word
    /// (Kinesis), else the age of the newest record read, 0 at the tip.
    behind_ms: Option<i64>,
}

impl ShardState {
    fn start(&self) -> IteratorStart {
        match (&self.verify, &self.last, &self.from) {
            (Some(v), _, _) => IteratorStart::At(v.clone()),
            (None, Some(last), _) => IteratorStart::After(last.clone()),
            (None, None, Some(from)) => from.clone(),
            (None, None, None) => IteratorStart::TrimHorizon,
        }
    }
}

pub struct ShardReader<A: ShardApi> {
    runtime: tokio::runtime::Runtime,
    api: A,
    options: ReaderOptions,
    lineage: Lineage,
    shards: HashMap<String, ShardState>,
    /// When this reader (or the one whose positions it continues) first listed the stream,
    /// µs since the epoch; `None` for positions kept by an earlier version.
    started_micros: Option<i64>,
    listed_at: Option<Instant>,
    last_list_call: Option<Instant>,
    /// Markers to commit with the next batch.
    marks: Vec<Position>,
    /// Average record size seen, to size calls by bytes.
    record_bytes: usize,
    /// How long the stream keeps a record (seconds), when the service says.
    retention: Option<u64>,
}

/// The rest of a shard at the tip after `rounds` empty pages there in a row.
fn idle_pause(rounds: u32) -> Duration {
    let doublings = rounds.saturating_sub(1).min(8);
    (EMPTY_PAUSE * (1u32 << doublings)).min(IDLE_PAUSE_MAX)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn mark(shard: &str, value: &str) -> Position {
    Position::new(shard, value)
}

impl<A: ShardApi> ShardReader<A> {
    /// `resume` maps shard id → committed value (a sequence or a marker, see
    /// `dynashift_core::checkpoint`).
    pub fn open(
        runtime: tokio::runtime::Runtime,
        api: A,
        options: ReaderOptions,
        mut resume: HashMap<String, String>,
    ) -> Result<ShardReader<A>, SourceError> {
        let what = api.describe();
        let started_micros = resume.remove(START_KEY).and_then(|v| v.parse().ok());
        let stored_identity = resume.remove(STREAM_KEY);
        let new_reader = resume.is_empty() && started_micros.is_none();
        let mut reader = ShardReader {
            runtime,
            api,
            options,
            lineage: Lineage::default(),
            shards: HashMap::new(),
            started_micros,
            listed_at: None,
            last_list_call: None,
            marks: Vec::new(),
            record_bytes: 1024,
            retention: None,
        };
        let identity = reader.with_retries(|r| r.runtime.block_on(r.api.identity()))?;
        match (identity, stored_identity) {
            (Some(now), Some(then)) if now != then => {
                return Err(SourceError::Other {
                    what,
                    cause: format!(
                        "the stream was re-created: its positions belong to `{then}`, the stream now is \
                         `{now}`; to read the new stream from its start, delete this source's rows from \
                         _dynashift.checkpoints"
                    )
                    .into(),
                })
            }
            (Some(now), None) => reader.marks.push(mark(STREAM_KEY, &now)),
            _ => {}
        }
        // Only schedules need it: a reader that may not ask still reads.
        match reader.with_retries(|r| r.runtime.block_on(r.api.retention())) {
            Ok(retention) => reader.retention = retention,
            Err(e) => {
                tracing::warn!("cannot read the stream's retention; schedules are not bounded by it: {e}")
            }
        }
        if new_reader {
            let now = now_micros();
            reader.started_micros = Some(now);
            reader.marks.push(mark(START_KEY, &now.to_string()));
        }
        let listing = reader.with_retries(|r| r.list_call(None))?;
        let listed: HashSet<String> = listing.shards.iter().map(|s| s.id.clone()).collect();
        reader.lineage.update(listing.shards);
        let verify = reader.api.verifies_resume();
        let mut missing = Vec::new();
        for (id, value) in resume {
            if value == ENDED {
                if listed.contains(&id) {
                    reader.lineage.mark_drained(&id);
                } else {
                    reader.marks.push(mark(&id, PRUNED));
                }
                continue;
            }
            if listing.complete && !listed.contains(&id) {
                missing.push(id.clone());
                continue;
            }
            let state = reader.shards.entry(id).or_default();
            if verify && !reader.options.skip_trim_check {
                state.verify = Some(value.clone());
            }
            state.last = Some(value);
        }
        if !missing.is_empty() {
            missing.sort();
            if !reader.options.skip_trim_check {
                return Err(SourceError::Trimmed {
                    what,
                    cause: format!(
                        "shard(s) {} have committed positions but were not read to their end and are no \
                         longer listed",
                        missing.join(", ")
                    )
                    .into(),
                });
            }
            tracing::warn!(shards = %missing.join(", "), "positions of unlisted shards skipped (skip_trim_check)");
        }
        for id in listed {
            let from = if new_reader { reader.first_start() } else { reader.later_start() };
            reader.shards.entry(id).or_default().from.get_or_insert(from);
        }
        reader.listed_at = Some(Instant::now());
        Ok(reader)
    }

    /// `call`, tried again with backoff while the service throttles or cannot be reached.
    fn with_retries<T>(
        &mut self,
        mut call: impl FnMut(&mut Self) -> Result<T, ApiError>,
    ) -> Result<T, SourceError> {
        let mut backoff = Backoff::default();
        let mut attempt = 1;
        loop {
            match call(self) {
                Err(ApiError::Throttled(text) | ApiError::Transient(text)) if attempt < OPEN_ATTEMPTS => {
                    let delay = backoff.next_delay();
                    tracing::warn!("{text}; retrying in {:.1}s", delay.as_secs_f64());
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other.map_err(|e| self.fail(e)),
            }
        }
    }

    /// Adds a marker to commit with the next batch.
    pub fn push_mark(&mut self, position: Position) {
        self.marks.push(position);
    }

    /// Markers to commit with the records last returned.
    /// How long the stream keeps a record, in seconds, when the service said.
    pub fn retention_secs(&self) -> Option<u64> {
        self.retention
    }

    pub fn take_marks(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.marks)
    }

    /// Where a new reader's first listing starts: as configured.
    fn first_start(&self) -> IteratorStart {
        match self.options.start {
            StartPosition::TrimHorizon => IteratorStart::TrimHorizon,
            StartPosition::Latest => IteratorStart::Latest,
            StartPosition::At(t) if self.api.has_timestamps() => IteratorStart::Timestamp(t),
            StartPosition::At(_) => IteratorStart::TrimHorizon,
        }
    }

    /// Where any other shard without a position starts: never at LATEST, which would skip
    /// what the shard took before it was first read.
    fn later_start(&self) -> IteratorStart {
        let since = self.started_micros.map(|m| m as f64 / 1e6 - CLOCK_MARGIN_SECS);
        match (&self.options.start, since) {
            (StartPosition::TrimHorizon, _) | (_, None) => IteratorStart::TrimHorizon,
            _ if !self.api.has_timestamps() => IteratorStart::TrimHorizon,
            (StartPosition::At(t), Some(s)) => IteratorStart::Timestamp(t.min(s)),
            (StartPosition::Latest, Some(s)) => IteratorStart::Timestamp(s),
        }
    }

    fn fail(&self, e: ApiError) -> SourceError {
        let what = self.api.describe();
        match e {
            ApiError::NotFound(cause) => SourceError::NotFound { what, cause },
            ApiError::Denied(cause) => SourceError::Denied { what, cause },
            ApiError::Trimmed(cause) => SourceError::Trimmed { what, cause },
            other => SourceError::Other { what, cause: other.into_cause() },
        }
    }

    /// One listing call (all shards, or the children of `ended`), spaced from the last.
    fn list_call(&mut self, ended: Option<&str>) -> Result<Listing, ApiError> {
        if let Some(wait) = self.last_list_call.map(|t| MIN_LIST_SPACING.saturating_sub(t.elapsed())) {
            std::thread::sleep(wait);
        }
        self.last_list_call = Some(Instant::now());
        match ended {
            Some(shard) => self.runtime.block_on(self.api.children(shard)),
            None => self.runtime.block_on(self.api.list()),
        }
    }

    /// Takes in a listing made while running: new shards start at `later_start`, ended
    /// shards that left a complete listing are pruned.
    fn take_listing(&mut self, listing: Listing) {
        let listed: HashSet<String> = listing.shards.iter().map(|s| s.id.clone()).collect();
        let complete = listing.complete;
        for id in self.lineage.update(listing.shards) {
            let from = self.later_start();
            self.shards.entry(id).or_default().from.get_or_insert(from);
        }
        if complete {
            let listed: HashSet<&str> = listed.iter().map(String::as_str).collect();
            for id in self.lineage.drained_and_unlisted(&listed) {
                self.lineage.remove(&id);
                self.shards.remove(&id);
                self.marks.push(mark(&id, PRUNED));
            }
        }
    }

    /// Re-lists while running: a missing stream, denied access or a permanent error stops
    /// the run; anything else (the service unreachable, throttling) is retried later.
    fn refresh(&mut self, ended: Option<&str>) -> Result<(), SourceError> {
        if ended.is_none() {
            self.listed_at = Some(Instant::now());
        }
        match self.list_call(ended) {
            Ok(listing) => {
                self.take_listing(listing);
                Ok(())
            }
            Err(ApiError::Throttled(message) | ApiError::Transient(message)) => {
                tracing::warn!("listing shards: {message}; retrying later");
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Up to `max` records: returns as soon as `max` are read, when some were read and the
    /// flush interval has passed, or (once) when every shard is at its tip.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, SourceError> {
        let started = Instant::now();
        let mut out: Vec<RawRecord> = Vec::new();
        loop {
            if self.listed_at.is_none_or(|t| t.elapsed() >= LIST_INTERVAL) {
                self.refresh(None)?;
            }
            let readable = self.lineage.readable();
            if readable.is_empty() && self.options.once {
                return Ok(out);
            }
            let now = Instant::now();
            let due: Vec<String> = readable
                .iter()
                .filter(|id| self.shards.get(*id).and_then(|s| s.next_call).is_none_or(|t| t <= now))
                .cloned()
                .collect();
            let room = max.saturating_sub(out.len()).clamp(1, 10_000);
            let by_bytes = self.options.round_bytes / due.len().max(1) / self.record_bytes.max(1);
            let limit = room.min(by_bytes).max(1);
            let mut ended: Vec<(String, Vec<super::lineage::ShardInfo>)> = Vec::new();
            for (id, result) in self.poll(&due, limit) {
                match result {
                    Ok(page) => {
                        if let Some(children) = self.take_page(&id, page, &mut out)? {
                            ended.push((id, children));
                        }
                    }
                    Err(ApiError::Expired) => {
                        if let Some(s) = self.shards.get_mut(&id) {
                            s.iterator = None;
                        }
                    }
                    Err(error @ (ApiError::Throttled(_) | ApiError::Transient(_))) => {
                        let metrics = crate::metrics::metrics();
                        let (cause, text) = match error {
                            ApiError::Throttled(text) => {
                                metrics.throttled.inc();
                                ("source_throttled", text)
                            }
                            ApiError::Transient(text) => ("source_unavailable", text),
                            _ => unreachable!("matched above"),
                        };
                        metrics.retries.with_label_values(&[cause]).inc();
                        metrics.health.source_down.store(true, std::sync::atomic::Ordering::Relaxed);
                        let state = self.shards.entry(id.clone()).or_default();
                        let delay = state.backoff.get_or_insert_with(Backoff::default).next_delay();
                        tracing::warn!(shard = %id, "{text}; retrying in {:.1}s", delay.as_secs_f64());
                        state.next_call = Some(Instant::now() + delay);
                    }
                    Err(fatal) => return Err(self.fail(fatal)),
                }
            }
            self.publish_figures();
            for (id, children) in ended {
                // Children of a drained shard become readable: from the last page when the
                // service names them, else by asking.
                if children.is_empty() {
                    self.refresh(Some(&id))?;
                } else {
                    self.take_listing(Listing { shards: children, complete: false });
                }
            }
            if out.len() >= max || (!out.is_empty() && started.elapsed() >= self.options.flush_interval) {
                return Ok(out);
            }
            // A closed shard is never caught up before its iterator ends.
            let caught_up =
                self.lineage.readable().iter().all(|id| {
                    !self.lineage.is_closed(id) && self.shards.get(id).is_some_and(|s| s.caught_up)
                });
            if (self.options.once && caught_up)
                || (!self.options.once && out.is_empty() && started.elapsed() >= self.options.flush_interval)
            {
                return Ok(out);
            }
            // Sleep until the next shard is due (briefly, to stay responsive to stops).
            let next = self
                .lineage
                .readable()
                .iter()
                .filter_map(|id| self.shards.get(id).and_then(|s| s.next_call))
                .min()
                .map_or(Duration::from_millis(50), |t| t.saturating_duration_since(Instant::now()));
            std::thread::sleep(next.min(Duration::from_millis(250)));
        }
    }

    /// The shard figures for monitoring: shards read, idle ones, how far behind each is.
    fn publish_figures(&self) {
        let metrics = crate::metrics::metrics();
        let readable: HashSet<String> = self.lineage.readable().into_iter().collect();
        metrics.shards.set(readable.len() as i64);
        let idle = readable.iter().filter(|id| self.shards.get(*id).is_some_and(|s| s.caught_up)).count();
        metrics.idle_shards.set(idle as i64);
        let mut lag = metrics.lag();
        lag.shard_behind_ms.retain(|id, _| readable.contains(id));
        for id in &readable {
            if let Some(behind) = self.shards.get(id).and_then(|s| s.behind_ms) {
                lag.shard_behind_ms.insert(id.clone(), behind);
            }
        }
    }

    /// Takes one page of shard `id` into `out`. Returns the children named when the shard
    /// ended (empty if the service names none), `None` while it goes on.
    fn take_page(
        &mut self,
        id: &str,
        mut page: Page,
        out: &mut Vec<RawRecord>,
    ) -> Result<Option<Vec<super::lineage::ShardInfo>>, SourceError> {
        let closed = self.lineage.is_closed(id);
        let state = self.shards.entry(id.to_string()).or_default();
        if let Some(expected) = state.verify.take() {
            let first = page.records.first().map(|r| r.sequence.clone());
            match first {
                Some(seq) if seq == expected => {
                    page.records.remove(0);
                }
                // Something else came first, or the shard is at its tip or end without it:
                // the committed record is gone, and what followed it may be too.
                Some(_) => return Err(trimmed(&self.api, id, &expected)),
                None if page.next.is_none() || page.behind_ms == Some(0) => {
                    return Err(trimmed(&self.api, id, &expected))
                }
                None => state.verify = Some(expected),
            }
        }
        let empty = page.records.is_empty();
        let shard: Arc<str> = Arc::from(id);
        let bytes: usize = page.records.iter().map(|p| p.data.len()).sum();
        if !empty {
            self.record_bytes = (self.record_bytes + bytes / page.records.len()) / 2;
        }
        for p in page.records {
            state.last = Some(p.sequence.clone());
            out.push(RawRecord {
                data: p.data,
                position: Position::new(shard.clone(), p.sequence),
                problem: p.problem,
            });
        }
        state.backoff = None;
        state.empty_pages = if empty { state.empty_pages + 1 } else { 0 };
        // At the tip: the service says so, or (where it does not) several empty pages in a
        // row. A closed shard is never caught up before its iterator ends (see `next_batch`).
        let at_tip = match page.behind_ms {
            Some(behind) => behind == 0,
            None => state.empty_pages >= EMPTY_PAGES_AT_TIP,
        };
        state.caught_up = empty && at_tip;
        if empty {
            crate::metrics::metrics().empty_polls.inc();
        }
        // An idle shard is asked less often the longer it stays empty: 1 s, 2 s, 4 s … 10 s.
        crate::metrics::metrics().health.source_down.store(false, std::sync::atomic::Ordering::Relaxed);
        // A closed shard is read to its end without rests: `sync --once` waits for it.
        let idle = empty && at_tip && !closed;
        state.idle_rounds = if idle { state.idle_rounds + 1 } else { 0 };
        let pause = if idle {
            idle_pause(state.idle_rounds)
        } else if empty && at_tip {
            EMPTY_PAUSE
        } else {
            MIN_CALL_INTERVAL
        };
        state.behind_ms = match (page.behind_ms, page.newest_made_ms) {
            (Some(behind), _) => Some(behind),
            (None, Some(made)) => Some((now_micros() / 1000 - made).max(0)),
            (None, None) if at_tip => Some(0),
            (None, None) => state.behind_ms,
        };
        state.next_call = Some(Instant::now() + pause);
        state.iterator = page.next;
        if state.iterator.is_some() {
            return Ok(None);
        }
        self.lineage.mark_drained(id);
        self.marks.push(mark(id, ENDED));
        Ok(Some(page.children))
    }

    /// One `GetRecords` per due shard, all at once, each bounded by `CALL_LIMIT`.
    fn poll(&mut self, due: &[String], limit: usize) -> Vec<(String, Result<Page, ApiError>)> {
        // A shard opened at LATEST that loses its iterator (iterators expire after minutes)
        // before its first record must not be opened at LATEST again: it continues from a
        // little before now (Kinesis) or its trim horizon.
        let reopen = if self.api.has_timestamps() {
            IteratorStart::Timestamp(now_micros() as f64 / 1e6 - CLOCK_MARGIN_SECS)
        } else {
            IteratorStart::TrimHorizon
        };
        let work: Vec<(String, Option<String>, IteratorStart)> = due
            .iter()
            .map(|id| {
                let s = self.shards.entry(id.clone()).or_default();
                let start = s.start();
                if s.iterator.is_none() && start == IteratorStart::Latest {
                    s.from = Some(reopen.clone());
                }
                (id.clone(), s.iterator.clone(), start)
            })
            .collect();
        let api = self.api.clone();
        self.runtime.block_on(async move {
            let calls = work.into_iter().map(|(id, iterator, start)| {
                let api = api.clone();
                async move {
                    let call = async {
                        let iterator = match iterator {
                            Some(it) => it,
                            None => {
                                match api.iterator(&id, &start).await.map_err(|e| at_position(e, &start))? {
                                    Some(it) => it,
                                    None => {
                                        return Ok(Page {
                                            records: Vec::new(),
                                            next: None,
                                            behind_ms: None,
                                            newest_made_ms: None,
                                            children: Vec::new(),
                                        })
                                    }
                                }
                            }
                        };
                        api.records(&id, iterator, limit).await
                    };
                    let result = match tokio::time::timeout(CALL_LIMIT, call).await {
                        Ok(result) => result,
                        Err(_) => Err(ApiError::Transient(
                            format!("GetRecords for {id}: no answer within {}s", CALL_LIMIT.as_secs()).into(),
                        )),
                    };
                    (id, result)
                }
            });
            futures_util::future::join_all(calls).await
        })
    }
}

/// Kinesis may answer a position older than the retention with InvalidArgumentException
/// naming the starting sequence number: that is a trimmed position, not a bad request.
fn at_position(e: ApiError, start: &IteratorStart) -> ApiError {
    match (e, start) {
        (ApiError::Permanent(text), IteratorStart::At(_) | IteratorStart::After(_))
            if refuses_sequence(&text.to_string()) =>
        {
            ApiError::Trimmed(text)
        }
        (e, _) => e,
    }
}

fn refuses_sequence(text: &str) -> bool {
    text.contains("InvalidArgumentException") && text.contains("equence")
}

fn trimmed<A: ShardApi>(api: &A, shard: &str, sequence: &str) -> SourceError {
    SourceError::Trimmed {
        what: api.describe(),
        cause: format!(
            "shard {shard} no longer holds its committed record {sequence}; if the shard is known to have \
             had no records since, set skip_trim_check = true in [source] to continue"
        )
        .into(),
    }
}

#[cfg(test)]
mod tests;
