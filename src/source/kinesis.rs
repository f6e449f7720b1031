//! The `kinesis` source: Kinesis Data Streams for DynamoDB, read shard by shard.
//!
//! Every readable shard (see `lineage`) is polled with `GetRecords`, all of them at once,
//! each no more than five times a second and about once a second while it is empty. A shard
//! resumes `AFTER_SEQUENCE_NUMBER` its committed position; a shard with none starts where the
//! config says. Sequence numbers are positions, compared as numbers downstream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use dynashift_core::Position;

use super::lineage::{Lineage, ShardInfo};
use super::RawRecord;
use crate::aws::{sdk_config, AwsSettings};
use crate::warehouse::retry::Backoff;

/// The four bytes that open a record aggregated by the Kinesis Producer Library.
const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// At most five GetRecords calls per second per shard.
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);
/// How long an empty shard rests before it is asked again.
const EMPTY_PAUSE: Duration = Duration::from_secs(1);
/// How often the shard listing is refreshed to find the children of splits and merges.
const LIST_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    #[error("Kinesis stream `{stream}` does not exist (or is not visible to these credentials): {message}")]
    NotFound { stream: String, message: String },
    #[error("access to Kinesis stream `{stream}` was denied: {message}")]
    Denied { stream: String, message: String },
    #[error("Kinesis stream `{stream}`: {message}")]
    Other { stream: String, message: String },
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

pub struct KinesisSource {
    runtime: tokio::runtime::Runtime,
    client: aws_sdk_kinesis::Client,
    stream: String,
    start: StartPosition,
    lineage: Lineage,
    shards: HashMap<String, ShardState>,
    listed_at: Option<Instant>,
    /// Stop once every shard is caught up (`sync --once`) instead of waiting for more.
    once: bool,
    /// How long a partial batch may wait for more records.
    flush_interval: Duration,
}

fn message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or(""))
        }
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

impl KinesisSource {
    /// `resume` maps shard id → committed sequence number.
    pub fn open(
        stream: &str,
        aws: &AwsSettings,
        start: StartPosition,
        resume: HashMap<String, String>,
        once: bool,
        flush_interval: Duration,
    ) -> Result<KinesisSource, KinesisError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dynashift-kinesis")
            .enable_all()
            .build()
            .map_err(|e| KinesisError::Other { stream: stream.into(), message: e.to_string() })?;
        let sdk = runtime.block_on(sdk_config(aws));
        let client = aws_sdk_kinesis::Client::new(&sdk);
        // A full ARN names the stream too; the API takes the name.
        let name = stream.rsplit_once(":stream/").map_or(stream, |(_, n)| n).to_string();
        let shards = resume
            .into_iter()
            .map(|(id, seq)| (id, ShardState { last: Some(seq), ..ShardState::default() }))
            .collect();
        let mut source = KinesisSource {
            runtime,
            client,
            stream: name,
            start,
            lineage: Lineage::default(),
            shards,
            listed_at: None,
            once,
            flush_interval,
        };
        source.list_shards()?;
        Ok(source)
    }

    fn list_shards(&mut self) -> Result<(), KinesisError> {
        let mut listing = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = self.runtime.block_on(request.send()).map_err(|e| {
                let text = message(&e);
                match e.as_service_error().and_then(|s| s.code()) {
                    Some("ResourceNotFoundException") => {
                        KinesisError::NotFound { stream: self.stream.clone(), message: text }
                    }
                    Some("AccessDeniedException") => {
                        KinesisError::Denied { stream: self.stream.clone(), message: text }
                    }
                    _ => KinesisError::Other {
                        stream: self.stream.clone(),
                        message: format!("ListShards: {text}"),
                    },
                }
            })?;
            listing.extend(out.shards().iter().map(|s| ShardInfo {
                id: s.shard_id().to_string(),
                parent: s.parent_shard_id().map(str::to_string),
                adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
            }));
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        self.lineage.update(listing);
        self.listed_at = Some(Instant::now());
        Ok(())
    }

    /// Re-lists the shards while running: a missing stream or denied access stops the run,
    /// anything else (the service unreachable, say) is retried at the next interval.
    fn refresh_shards(&mut self) -> Result<(), KinesisError> {
        match self.list_shards() {
            Err(KinesisError::Other { message, .. }) => {
                tracing::warn!("{message}; retrying in {}s", LIST_INTERVAL.as_secs());
                self.listed_at = Some(Instant::now());
                Ok(())
            }
            other => other,
        }
    }

    async fn iterator(
        client: &aws_sdk_kinesis::Client,
        stream: &str,
        shard: &str,
        after: Option<&str>,
        start: &StartPosition,
    ) -> Result<Option<String>, String> {
        let mut request = client.get_shard_iterator().stream_name(stream).shard_id(shard);
        request = match (after, start) {
            (Some(seq), _) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            (None, StartPosition::TrimHorizon) => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            (None, StartPosition::Latest) => request.shard_iterator_type(ShardIteratorType::Latest),
            (None, StartPosition::At(secs)) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_secs_f64(*secs)),
        };
        let out =
            request.send().await.map_err(|e| format!("GetShardIterator for {shard}: {}", message(&e)))?;
        Ok(out.shard_iterator().map(str::to_string))
    }

    /// Up to `max` records: returns as soon as `max` are read, when some were read and the
    /// flush interval has passed, or (once) when every shard is at its tip.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, KinesisError> {
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
            let results = self.poll(&due, room)?;
            let mut ended = false;
            for (id, result) in results {
                let state = self.shards.entry(id.clone()).or_default();
                match result {
                    Poll::Records { records, next, behind_ms } => {
                        let empty = records.is_empty();
                        let shard: Arc<str> = Arc::from(id.as_str());
                        for (seq, data) in records {
                            let problem = data.starts_with(&KPL_MAGIC).then(|| {
                                "record aggregated by the Kinesis Producer Library: de-aggregation is not \
                                 supported; configure the producer without aggregation"
                                    .to_string()
                            });
                            state.last = Some(seq.clone());
                            out.push(RawRecord {
                                data,
                                position: Position::new(shard.clone(), seq),
                                problem,
                            });
                        }
                        state.backoff = None;
                        state.caught_up = empty && behind_ms == Some(0);
                        state.next_call =
                            Some(Instant::now() + if empty { EMPTY_PAUSE } else { MIN_CALL_INTERVAL });
                        match next {
                            Some(it) => state.iterator = Some(it),
                            None => {
                                state.iterator = None;
                                self.lineage.mark_drained(&id);
                                ended = true;
                            }
                        }
                    }
                    Poll::Expired => state.iterator = None,
                    Poll::Throttled(text) | Poll::Transient(text) => {
                        let delay = state.backoff.get_or_insert_with(Backoff::default).next_delay();
                        tracing::warn!(shard = %id, "{text}; retrying in {:.1}s", delay.as_secs_f64());
                        state.next_call = Some(Instant::now() + delay);
                    }
                }
            }
            if ended {
                // Children of a drained shard become readable; look for them now.
                self.refresh_shards()?;
            }
            if out.len() >= max || (!out.is_empty() && started.elapsed() >= self.flush_interval) {
                return Ok(out);
            }
            let all_caught_up =
                self.lineage.readable().iter().all(|id| self.shards.get(id).is_some_and(|s| s.caught_up));
            if self.once && all_caught_up && out.is_empty() {
                return Ok(out);
            }
            if self.once && all_caught_up {
                return Ok(out);
            }
            if !self.once && out.is_empty() && started.elapsed() >= self.flush_interval {
                return Ok(out);
            }
            // Sleep until the next shard is due (at most a short while, to stay responsive).
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
    fn poll(&mut self, due: &[String], limit: usize) -> Result<Vec<(String, Poll)>, KinesisError> {
        let client = self.client.clone();
        let stream = self.stream.clone();
        let start = self.start.clone();
        let work: Vec<(String, Option<String>, Option<String>)> = due
            .iter()
            .map(|id| {
                let s = self.shards.get(id);
                (id.clone(), s.and_then(|s| s.iterator.clone()), s.and_then(|s| s.last.clone()))
            })
            .collect();
        let results = self.runtime.block_on(async move {
            let calls = work.into_iter().map(|(id, iterator, last)| {
                let client = client.clone();
                let stream = stream.clone();
                let start = start.clone();
                async move {
                    let iterator = match iterator {
                        Some(it) => it,
                        None => match Self::iterator(&client, &stream, &id, last.as_deref(), &start).await {
                            Ok(Some(it)) => it,
                            Ok(None) => {
                                return (
                                    id,
                                    Ok(Poll::Records { records: vec![], next: None, behind_ms: None }),
                                )
                            }
                            Err(e) => return (id, Ok(Poll::Transient(e))),
                        },
                    };
                    let result =
                        client.get_records().shard_iterator(iterator).limit(limit as i32).send().await;
                    let poll = match result {
                        Ok(out) => Ok(Poll::Records {
                            records: out
                                .records()
                                .iter()
                                .map(|r| (r.sequence_number().to_string(), r.data().as_ref().to_vec()))
                                .collect(),
                            next: out.next_shard_iterator().map(str::to_string),
                            behind_ms: out.millis_behind_latest(),
                        }),
                        Err(e) => {
                            let text = message(&e);
                            match e.as_service_error() {
                                Some(GetRecordsError::ExpiredIteratorException(_)) => Ok(Poll::Expired),
                                Some(GetRecordsError::ProvisionedThroughputExceededException(_)) => {
                                    Ok(Poll::Throttled(format!("GetRecords throttled: {text}")))
                                }
                                Some(GetRecordsError::ResourceNotFoundException(_)) => {
                                    Err(KinesisError::NotFound { stream: stream.clone(), message: text })
                                }
                                Some(GetRecordsError::AccessDeniedException(_)) => {
                                    Err(KinesisError::Denied { stream: stream.clone(), message: text })
                                }
                                _ => Ok(Poll::Transient(format!("GetRecords failed: {text}"))),
                            }
                        }
                    };
                    (id, poll)
                }
            });
            futures_util::future::join_all(calls).await
        });
        results.into_iter().map(|(id, r)| r.map(|p| (id, p))).collect()
    }
}

enum Poll {
    Records { records: Vec<(String, Vec<u8>)>, next: Option<String>, behind_ms: Option<i64> },
    Expired,
    Throttled(String),
    Transient(String),
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
