//! The `kinesis` source: Kinesis Data Streams for DynamoDB, through the shard reader.

use std::collections::HashMap;

use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;

use super::lineage::ShardInfo;
use super::shards::{
    classify, ApiError, IteratorStart, Listing, Page, Payload, ReaderOptions, ShardApi, ShardReader,
    SourceError,
};
use crate::aws::{sdk_config, AwsSettings};
use crate::cause::Cause;

/// The four bytes that open a record aggregated by the Kinesis Producer Library.
const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

#[derive(Clone)]
pub struct KinesisApi {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisApi {
    /// The API of `stream` (a full ARN names the stream too; the API takes the name), its
    /// client built on `runtime`, where it is used.
    fn new(
        runtime: &tokio::runtime::Runtime,
        stream: &str,
        aws: &AwsSettings,
    ) -> Result<KinesisApi, crate::aws::CredentialsError> {
        let sdk = runtime.block_on(sdk_config(aws));
        runtime.block_on(crate::aws::require_credentials(&sdk))?;
        let name = stream.rsplit_once(":stream/").map_or(stream, |(_, n)| n).to_string();
        Ok(KinesisApi { client: aws_sdk_kinesis::Client::new(&sdk), stream: name })
    }

    async fn summary(&self) -> Result<Option<aws_sdk_kinesis::types::StreamDescriptionSummary>, ApiError> {
        let out = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream)
            .send()
            .await
            .map_err(|e| classify(e, "DescribeStreamSummary"))?;
        Ok(out.stream_description_summary)
    }
}

impl ShardApi for KinesisApi {
    fn describe(&self) -> String {
        format!("Kinesis stream `{}`", self.stream)
    }

    async fn list(&self) -> Result<Listing, ApiError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(&self.stream),
            };
            let out = match request.send().await.map_err(|e| classify(e, "ListShards")) {
                Ok(out) => out,
                // A later page throttled: keep what was listed; the rest is asked for later.
                Err(ApiError::Throttled(text)) if !shards.is_empty() => {
                    tracing::warn!("{text}; using a partial shard listing");
                    return Ok(Listing { shards, complete: false });
                }
                Err(e) => return Err(e),
            };
            shards.extend(out.shards().iter().map(|s| {
                ShardInfo::new(
                    s.shard_id().to_string(),
                    s.parent_shard_id().map(str::to_string),
                    s.adjacent_parent_shard_id().map(str::to_string),
                    s.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_some()),
                )
            }));
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(Listing { shards, complete: true });
            }
        }
    }

    async fn children(&self, _shard: &str) -> Result<Listing, ApiError> {
        self.list().await
    }

    async fn identity(&self) -> Result<Option<String>, ApiError> {
        Ok(self
            .summary()
            .await?
            .map(|d| format!("{} created {}", d.stream_arn(), d.stream_creation_timestamp().secs())))
    }

    async fn retention(&self) -> Result<Option<u64>, ApiError> {
        // A retention of 0 hours is not one a stream can have: unknown.
        let hours = self.summary().await?.map(|d| d.retention_period_hours()).filter(|h| *h > 0);
        Ok(hours.map(|h| h as u64 * 3_600))
    }

    async fn iterator(&self, shard: &str, start: &IteratorStart) -> Result<Option<String>, ApiError> {
        let request = self.client.get_shard_iterator().stream_name(&self.stream).shard_id(shard);
        let request = match start {
            IteratorStart::At(seq) => {
                request.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(seq)
            }
            IteratorStart::After(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            IteratorStart::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            IteratorStart::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            IteratorStart::Timestamp(secs) => request
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_secs_f64(*secs)),
        };
        let out = request.send().await.map_err(|e| classify(e, &format!("GetShardIterator for {shard}")))?;
        Ok(out.shard_iterator().map(str::to_string))
    }

    fn verifies_resume(&self) -> bool {
        true
    }

    fn has_timestamps(&self) -> bool {
        true
    }

    async fn records(&self, _shard: &str, iterator: String, limit: usize) -> Result<Page, ApiError> {
        let out =
            self.client.get_records().shard_iterator(iterator).limit(limit as i32).send().await.map_err(
                |e| match e.as_service_error() {
                    Some(GetRecordsError::ExpiredIteratorException(_)) => ApiError::Expired,
                    _ => classify(e, "GetRecords"),
                },
            )?;
        let records = out
            .records()
            .iter()
            .map(|r| {
                let data = r.data().as_ref().to_vec();
                let problem = data.starts_with(&KPL_MAGIC).then(|| {
                    "record aggregated by the Kinesis Producer Library: de-aggregation is not supported; \
                     configure the producer without aggregation"
                        .to_string()
                });
                Payload { sequence: r.sequence_number().to_string(), data, problem }
            })
            .collect();
        let children = out
            .child_shards()
            .iter()
            .map(|c| {
                let parents = c.parent_shards();
                ShardInfo::new(
                    c.shard_id().to_string(),
                    parents.first().cloned(),
                    parents.get(1).cloned(),
                    false,
                )
            })
            .collect();
        Ok(Page {
            records,
            next: out.next_shard_iterator().map(str::to_string),
            behind_ms: out.millis_behind_latest(),
            newest_made_ms: out
                .records()
                .last()
                .and_then(|r| r.approximate_arrival_timestamp())
                .and_then(|t| t.to_millis().ok()),
            children,
        })
    }
}

/// Opens a reader of `stream` (a name or an ARN).
pub fn open(
    stream: &str,
    aws: &AwsSettings,
    options: ReaderOptions,
    resume: HashMap<String, String>,
) -> Result<ShardReader<KinesisApi>, SourceError> {
    let runtime = crate::runtime::background("dynashift-kinesis").map_err(|e| SourceError::Other {
        what: format!("Kinesis stream `{stream}`"),
        cause: Cause::of(e),
    })?;
    let api = KinesisApi::new(&runtime, stream, aws)?;
    ShardReader::open(runtime, api, options, resume)
}

/// How long `stream` (a name or an ARN) keeps a record, in seconds, as the stream says.
pub fn retention(stream: &str, aws: &AwsSettings) -> Result<Option<u64>, Cause> {
    let runtime = crate::runtime::background("dynashift-kinesis").map_err(Cause::of)?;
    let api = KinesisApi::new(&runtime, stream, aws).map_err(Cause::of)?;
    runtime.block_on(api.retention()).map_err(ApiError::into_cause)
}
