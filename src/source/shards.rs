//! Reading a sharded stream (Kinesis Data Streams, DynamoDB Streams) into batches.
//!
//! Every readable shard (see `lineage`) is polled with `GetRecords`, all of them at once,
//! each no more than five times a second and about once a second while it is empty. A shard
//! resumes after its committed position; a shard with none starts where the config says.
//! Sequence numbers are positions, compared as numbers downstream. The service's API is
//! behind `ShardApi`, one implementation per service.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use dynashift_core::Position;

use super::lineage::{Lineage, ShardInfo};
use super::RawRecord;
use crate::warehouse::retry::Backoff;

/// At most five GetRecords calls per second per shard.
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);
/// How long an empty shard rests before it is asked again.
const EMPTY_PAUSE: Duration = Duration::from_secs(1);
/// How often the shard listing is refreshed to find the children of splits and merges.
const LIST_INTERVAL: Duration = Duration::from_secs(5);

/// An SDK error as one line: the service's code and message, or the transport's chain.
pub fn sdk_message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(s) if s.err().code().is_some() => {
            let err = s.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or(""))
        }
        // No error code: the response could not be read (the reason is in the source chain).
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

/// Classifies an SDK error by its service code (Kinesis and DynamoDB Streams share them).
pub fn classify<E, R>(e: &SdkError<E, R>, call: &str) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = format!("{call}: {}", sdk_message(e));
    match e.as_service_error().and_then(|s| s.code()) {
        Some("ResourceNotFoundException") => ApiError::NotFound(text),
        Some("AccessDeniedException") => ApiError::Denied(text),
        Some("ExpiredIteratorException") => ApiError::Expired,
        Some("ProvisionedThroughputExceededException")
        | Some("LimitExceededException")
        | Some("ThrottlingException") => ApiError::Throttled(text),
        Some("TrimmedDataAccessException") => ApiError::Trimmed(text),
        _ => ApiError::Transient(text),
    }
}

/// Where a shard with no committed position starts.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    /// Seconds since the epoch (with fraction).
    At(f64),
}

impl StartPosition {
    pub fn parse(text: &str) -> Result<StartPosition, String> {
        match text {
            "trim_horizon" => Ok(StartPosition::TrimHorizon),
            "latest" => Ok(StartPosition::Latest),
            t => DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
                .map(|d| StartPosition::At(d.as_secs_f64()))
                .map_err(|_| format!("`{t}` is not trim_horizon, latest, or an RFC 3339 time")),
        }
    }
}

/// One record as the service returned it.
pub struct Payload {
    pub sequence: String,
    pub data: Vec<u8>,
    /// Why the record cannot be decoded, when the service's side already knows.
    pub problem: Option<String>,
}

/// One `GetRecords` answer.
pub struct Page {
    pub records: Vec<Payload>,
    /// `None`: the shard is closed and fully read.
    pub next: Option<String>,
    /// How far behind the tip the shard is, where the service says.
    pub behind_ms: Option<i64>,
}

#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    Denied(String),
    /// The iterator is too old; a fresh one is needed.
    Expired,
    /// The position is older than the stream keeps.
    Trimmed(String),
    Throttled(String),
    Transient(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what} does not exist (or is not visible to these credentials): {message}")]
    NotFound { what: String, message: String },
    #[error("access to {what} was denied: {message}")]
    Denied { what: String, message: String },
    #[error(
        "{what}: a committed position is older than the stream's retention, so changes were lost to \
         dynashift: run a full load (backfill) of the affected tables, then start again ({message})"
    )]
    Trimmed { what: String, message: String },
    #[error("{what}: {message}")]
    Other { what: String, message: String },
}

/// A stream service's API, as the reader needs it.
pub trait ShardApi: Clone + Send + Sync + 'static {
    /// What is read, for messages: "Kinesis stream `x`".
    fn describe(&self) -> String;
    /// Every shard, with its parents.
    fn list(&self) -> impl Future<Output = Result<Vec<ShardInfo>, ApiError>> + Send;
    /// An iterator after `after`, or at `start` when the shard has no position.
    fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: &StartPosition,
    ) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    fn records(
        &self,
        shard: &str,
        iterator: String,
        limit: usize,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;
}

#[derive(Default)]
struct ShardState {
    iterator: Option<String>,
    /// Newest sequence handed out (or committed), to resume after.
    last: Option<String>,
    next_call: Option<Instant>,
    backoff: Option<Backoff>,
    /// The last call returned nothing and the shard is at the stream's tip.
    caught_up: bool,
}

pub struct ShardReader<A: ShardApi> {
    runtime: tokio::runtime::Runtime,
    api: A,
    start: StartPosition,
    lineage: Lineage,
    shards: HashMap<String, ShardState>,
    listed_at: Option<Instant>,
    /// Stop once every shard is caught up (`sync --once`) instead of waiting for more.
    once: bool,
    /// How long a partial batch may wait for more records.
    flush_interval: Duration,
}

impl<A: ShardApi> ShardReader<A> {
    /// `resume` maps shard id → committed sequence number.
    pub fn open(
        runtime: tokio::runtime::Runtime,
        api: A,
        start: StartPosition,
        resume: HashMap<String, String>,
        once: bool,
        flush_interval: Duration,
    ) -> Result<ShardReader<A>, SourceError> {
        let shards = resume
            .into_iter()
            .map(|(id, seq)| (id, ShardState { last: Some(seq), ..ShardState::default() }))
            .collect();
        let mut reader = ShardReader {
            runtime,
            api,
            start,
            lineage: Lineage::default(),
            shards,
            listed_at: None,
            once,
            flush_interval,
        };
        reader.list_shards()?;
        Ok(reader)
    }

    fn fail(&self, e: ApiError) -> SourceError {
        let what = self.api.describe();
        match e {
            ApiError::NotFound(message) => SourceError::NotFound { what, message },
            ApiError::Denied(message) => SourceError::Denied { what, message },
            ApiError::Trimmed(message) => SourceError::Trimmed { what, message },
            ApiError::Expired => SourceError::Other { what, message: "iterator expired".into() },
            ApiError::Throttled(message) | ApiError::Transient(message) => {
                SourceError::Other { what, message }
            }
        }
    }

    fn list_shards(&mut self) -> Result<(), SourceError> {
        let listing = self.runtime.block_on(self.api.list()).map_err(|e| self.fail(e))?;
        self.lineage.update(listing);
        self.listed_at = Some(Instant::now());
        Ok(())
    }

    /// Re-lists the shards while running: a missing stream or denied access stops the run,
    /// anything else (the service unreachable, say) is retried at the next interval.
    fn refresh_shards(&mut self) -> Result<(), SourceError> {
        match self.list_shards() {
            Err(SourceError::Other { message, .. }) => {
                tracing::warn!("listing shards: {message}; retrying in {}s", LIST_INTERVAL.as_secs());
                self.listed_at = Some(Instant::now());
                Ok(())
            }
            other => other,
        }
    }

    /// Up to `max` records: returns as soon as `max` are read, when some were read and the
    /// flush interval has passed, or (once) when every shard is at its tip.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, SourceError> {
        let started = Instant::now();
        let mut out: Vec<RawRecord> = Vec::new();
        loop {
            if self.listed_at.is_none_or(|t| t.elapsed() >= LIST_INTERVAL) {
                self.refresh_shards()?;
            }
            let readable = self.lineage.readable();
            if readable.is_empty() && self.once {
                return Ok(out);
            }
            let now = Instant::now();
            let due: Vec<String> = readable
                .iter()
                .filter(|id| self.shards.get(*id).and_then(|s| s.next_call).is_none_or(|t| t <= now))
                .cloned()
                .collect();
            let room = max.saturating_sub(out.len()).clamp(1, 10_000);
            let mut ended = false;
            for (id, result) in self.poll(&due, room) {
                let state = self.shards.entry(id.clone()).or_default();
                match result {
                    Ok(page) => {
                        let empty = page.records.is_empty();
                        let shard: Arc<str> = Arc::from(id.as_str());
                        for p in page.records {
                            state.last = Some(p.sequence.clone());
                            out.push(RawRecord {
                                data: p.data,
                                position: Position::new(shard.clone(), p.sequence),
                                problem: p.problem,
                            });
                        }
                        state.backoff = None;
                        state.caught_up = empty && page.behind_ms.is_none_or(|b| b == 0);
                        state.next_call =
                            Some(Instant::now() + if empty { EMPTY_PAUSE } else { MIN_CALL_INTERVAL });
                        state.iterator = page.next;
                        if state.iterator.is_none() {
                            self.lineage.mark_drained(&id);
                            ended = true;
                        }
                    }
                    Err(ApiError::Expired) => state.iterator = None,
                    Err(ApiError::Throttled(text) | ApiError::Transient(text)) => {
                        let delay = state.backoff.get_or_insert_with(Backoff::default).next_delay();
                        tracing::warn!(shard = %id, "{text}; retrying in {:.1}s", delay.as_secs_f64());
                        state.next_call = Some(Instant::now() + delay);
                    }
                    Err(fatal) => return Err(self.fail(fatal)),
                }
            }
            if ended {
                // Children of a drained shard become readable; look for them now.
                self.refresh_shards()?;
            }
            if out.len() >= max || (!out.is_empty() && started.elapsed() >= self.flush_interval) {
                return Ok(out);
            }
            let caught_up =
                self.lineage.readable().iter().all(|id| self.shards.get(id).is_some_and(|s| s.caught_up));
            if (self.once && caught_up)
                || (!self.once && out.is_empty() && started.elapsed() >= self.flush_interval)
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

    /// One `GetRecords` per due shard, all at once.
    fn poll(&mut self, due: &[String], limit: usize) -> Vec<(String, Result<Page, ApiError>)> {
        let work: Vec<(String, Option<String>, Option<String>)> = due
            .iter()
            .map(|id| {
                let s = self.shards.get(id);
                (id.clone(), s.and_then(|s| s.iterator.clone()), s.and_then(|s| s.last.clone()))
            })
            .collect();
        let api = self.api.clone();
        let start = self.start.clone();
        self.runtime.block_on(async move {
            let calls = work.into_iter().map(|(id, iterator, last)| {
                let api = api.clone();
                let start = start.clone();
                async move {
                    let iterator = match iterator {
                        Some(it) => it,
                        None => match api.iterator(&id, last.as_deref(), &start).await {
                            Ok(Some(it)) => it,
                            Ok(None) => {
                                return (id, Ok(Page { records: Vec::new(), next: None, behind_ms: None }))
                            }
                            Err(e) => return (id, Err(e)),
                        },
                    };
                    let page = api.records(&id, iterator, limit).await;
                    (id, page)
                }
            });
            futures_util::future::join_all(calls).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(StartPosition::parse("trim_horizon"), Ok(StartPosition::TrimHorizon));
        assert_eq!(StartPosition::parse("latest"), Ok(StartPosition::Latest));
        assert_eq!(StartPosition::parse("2025-11-24T16:00:00Z"), Ok(StartPosition::At(1_764_000_000.0)));
        assert!(StartPosition::parse("yesterday").is_err());
    }
}
