//! The `dynamodb-streams` source: DynamoDB Streams read directly, through the shard reader.
//!
//! Several tables' streams are read as one source. A table may have more than one readable
//! stream (streams disabled and enabled again, or a view type changed, leave the old stream
//! readable for 24 hours): every stream of a table is listed (`ListStreams`, again at each
//! full listing, so a stream replaced while running is found) and an older stream is drained
//! before a newer one. A shard's position is kept under `<table>/<stream label>/<shard id>`.
//! Records come back from the SDK as structures and are written as the DynamoDB Streams JSON
//! the decoder reads (with `eventSourceARN`, so the table is known).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodbstreams::types::{
    Record, ShardFilter, ShardFilterType, ShardIteratorType, StreamViewType,
};
use dynashift_core::value::write_json_string;

use super::attribute_json::streams::write_map;
use super::lineage::ShardInfo;
use super::shards::{
    classify, ApiError, IteratorStart, Listing, Page, Payload, ReaderOptions, ShardApi, ShardReader,
    SourceError,
};
use crate::aws::{sdk_config, sdk_message, AwsSettings};
use crate::cause::Cause;

/// How long DynamoDB Streams keeps a record: 24 hours, a fixed limit.
pub const RETENTION_SECS: u64 = 24 * 3_600;

#[derive(Clone)]
pub struct StreamsApi {
    client: aws_sdk_dynamodbstreams::Client,
    /// Tables whose every stream is read.
    tables: Vec<String>,
    /// Streams named by ARN in the configuration.
    fixed: Vec<String>,
    /// `<table>/<label>` → stream ARN, as listed.
    arns: Arc<Mutex<HashMap<String, String>>>,
}

/// `arn:…:table/NAME/stream/LABEL` → `NAME/LABEL`.
fn stream_key(arn: &str) -> Option<String> {
    let table = dynashift_core::decode::table_from_arn(arn)?;
    let label = arn.rsplit_once("/stream/")?.1;
    Some(format!("{table}/{label}"))
}

impl StreamsApi {
    fn stream_of<'a>(&self, shard: &'a str) -> Result<(String, &'a str), ApiError> {
        let (stream, id) =
            shard.rsplit_once('/').ok_or_else(|| ApiError::NotFound(format!("shard `{shard}`").into()))?;
        let arns = self.arns.lock().map_err(|_| ApiError::Transient("stream list lock poisoned".into()))?;
        let arn = arns
            .get(stream)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("the stream `{stream}`").into()))?;
        Ok((arn, id))
    }

    /// Every stream to read, oldest first per table.
    async fn streams(&self) -> Result<Vec<String>, ApiError> {
        let mut arns = self.fixed.clone();
        for table in &self.tables {
            let mut last: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_streams()
                    .table_name(table)
                    .set_exclusive_start_stream_arn(last.clone())
                    .send()
                    .await
                    .map_err(|e| classify(e, "ListStreams"))?;
                arns.extend(out.streams().iter().filter_map(|s| s.stream_arn().map(str::to_string)));
                last = out.last_evaluated_stream_arn().map(str::to_string);
                // ListStreams allows 5 calls a second.
                tokio::time::sleep(std::time::Duration::from_millis(220)).await;
                if last.is_none() {
                    break;
                }
            }
        }
        let mut keyed: Vec<(String, String)> =
            arns.into_iter().filter_map(|arn| stream_key(&arn).map(|k| (k, arn))).collect();
        keyed.sort();
        keyed.dedup();
        if let Ok(mut map) = self.arns.lock() {
            map.extend(keyed.iter().cloned());
        }
        Ok(keyed.into_iter().map(|(_, arn)| arn).collect())
    }

    /// The shards of one stream (`filter`: only the children of a shard).
    async fn stream_shards(
        &self,
        arn: &str,
        filter: Option<&str>,
        out: &mut Vec<ShardInfo>,
    ) -> Result<bool, ApiError> {
        let key = stream_key(arn).unwrap_or_default();
        let (table, label) =
            key.split_once('/').map(|(t, l)| (t.to_string(), l.to_string())).unwrap_or_default();
        let mut last: Option<String> = None;
        loop {
            let mut request =
                self.client.describe_stream().stream_arn(arn).set_exclusive_start_shard_id(last.clone());
            if let Some(shard) = filter {
                request = request.shard_filter(
                    ShardFilter::builder().r#type(ShardFilterType::ChildShards).shard_id(shard).build(),
                );
            }
            let page = match request.send().await.map_err(|e| classify(e, "DescribeStream")) {
                Ok(page) => page,
                Err(ApiError::Throttled(text)) if !out.is_empty() => {
                    tracing::warn!("{text}; using a partial shard listing");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let Some(d) = page.stream_description() else { return Ok(true) };
            if let Some(view) = d.stream_view_type() {
                if matches!(view, StreamViewType::KeysOnly | StreamViewType::OldImage) {
                    return Err(ApiError::Permanent(
                        format!(
                            "the stream of table `{table}` has view type {}: its records carry no new image; \
                             set the table's stream to NEW_AND_OLD_IMAGES (or NEW_IMAGE)",
                            view.as_str()
                        )
                        .into(),
                    ));
                }
            }
            out.extend(d.shards().iter().filter_map(|s| {
                let closed = s.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_some());
                Some(ShardInfo {
                    id: format!("{key}/{}", s.shard_id()?),
                    parent: s.parent_shard_id().map(|p| format!("{key}/{p}")),
                    adjacent_parent: None,
                    closed,
                    generation: Some((table.clone(), label.clone())),
                })
            }));
            last = d.last_evaluated_shard_id().map(str::to_string);
            if last.is_none() {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        }
    }
}

impl ShardApi for StreamsApi {
    fn describe(&self) -> String {
        let mut tables: Vec<String> = self.tables.clone();
        tables.extend(self.fixed.iter().filter_map(|a| dynashift_core::decode::table_from_arn(a)));
        format!("the DynamoDB stream(s) of {}", tables.join(", "))
    }

    async fn list(&self) -> Result<Listing, ApiError> {
        let streams = self.streams().await?;
        let mut shards = Vec::new();
        let mut complete = true;
        for arn in &streams {
            // DescribeStream allows 10 calls a second: pages of several streams are spaced.
            tokio::time::sleep(std::time::Duration::from_millis(120)).await;
            complete &= self.stream_shards(arn, None, &mut shards).await?;
        }
        Ok(Listing { shards, complete })
    }

    async fn children(&self, shard: &str) -> Result<Listing, ApiError> {
        let (arn, id) = self.stream_of(shard)?;
        let mut shards = Vec::new();
        self.stream_shards(&arn, Some(id), &mut shards).await?;
        Ok(Listing { shards, complete: false })
    }

    async fn identity(&self) -> Result<Option<String>, ApiError> {
        // Positions are keyed by stream label already.
        Ok(None)
    }

    async fn retention(&self) -> Result<Option<u64>, ApiError> {
        Ok(Some(RETENTION_SECS))
    }

    async fn iterator(&self, shard: &str, start: &IteratorStart) -> Result<Option<String>, ApiError> {
        let (arn, id) = self.stream_of(shard)?;
        let request = self.client.get_shard_iterator().stream_arn(arn).shard_id(id);
        let request = match start {
            IteratorStart::At(seq) => {
                request.shard_iterator_type(ShardIteratorType::AtSequenceNumber).sequence_number(seq)
            }
            IteratorStart::After(seq) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(seq)
            }
            IteratorStart::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            // DynamoDB Streams has no AT_TIMESTAMP.
            IteratorStart::TrimHorizon | IteratorStart::Timestamp(_) => {
                request.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
        };
        let out = request.send().await.map_err(|e| classify(e, &format!("GetShardIterator for {shard}")))?;
        Ok(out.shard_iterator().map(str::to_string))
    }

    async fn records(&self, shard: &str, iterator: String, limit: usize) -> Result<Page, ApiError> {
        let (stream_arn, _) = self.stream_of(shard)?;
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit.min(1000) as i32)
            .send()
            .await
            .map_err(|e| classify(e, "GetRecords"))?;
        let records = out
            .records()
            .iter()
            .map(|r| {
                // The API's records do not name their table: the shard's stream does.
                let sequence = r.dynamodb().and_then(|d| d.sequence_number()).unwrap_or_default().to_string();
                Payload { sequence, data: record_json(r, Some(&stream_arn)).into_bytes(), problem: None }
            })
            .collect();
        Ok(Page {
            records,
            next: out.next_shard_iterator().map(str::to_string),
            behind_ms: None,
            newest_made_ms: out
                .records()
                .last()
                .and_then(|r| r.dynamodb())
                .and_then(|d| d.approximate_creation_date_time())
                .and_then(|t| t.to_millis().ok()),
            children: Vec::new(),
        })
    }

    /// DynamoDB Streams answers a trimmed position with TrimmedDataAccessException.
    fn verifies_resume(&self) -> bool {
        false
    }

    fn has_timestamps(&self) -> bool {
        false
    }
}

/// The DynamoDB Streams JSON of `r`: what a Lambda relaying the stream would receive.
pub fn record_json(r: &Record, stream_arn: Option<&str>) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"eventName\":");
    write_json_string(&mut out, r.event_name().map_or("", |e| e.as_str()));
    if let Some(id) = r.event_id() {
        out.push_str(",\"eventID\":");
        write_json_string(&mut out, id);
    }
    if let Some(arn) = stream_arn {
        out.push_str(",\"eventSourceARN\":");
        write_json_string(&mut out, arn);
    }
    if let Some(identity) = r.user_identity() {
        out.push_str(",\"userIdentity\":{\"type\":");
        write_json_string(&mut out, identity.r#type().unwrap_or_default());
        out.push_str(",\"principalId\":");
        write_json_string(&mut out, identity.principal_id().unwrap_or_default());
        out.push('}');
    }
    out.push_str(",\"dynamodb\":{");
    if let Some(d) = r.dynamodb() {
        let mut fields: Vec<String> = Vec::new();
        if let Some(t) = d.approximate_creation_date_time() {
            // DynamoDB Streams times have whole seconds; the sequence number orders within one.
            fields.push(format!("\"ApproximateCreationDateTime\":{}", t.secs()));
        }
        if let Some(seq) = d.sequence_number() {
            let mut s = String::from("\"SequenceNumber\":");
            write_json_string(&mut s, seq);
            fields.push(s);
        }
        for (name, image) in [("Keys", d.keys()), ("NewImage", d.new_image()), ("OldImage", d.old_image())] {
            if let Some(image) = image {
                let mut s = format!("\"{name}\":");
                write_map(&mut s, image);
                fields.push(s);
            }
        }
        out.push_str(&fields.join(","));
    }
    out.push_str("}}");
    out
}

/// Opens a reader of every stream of `tables` and of `stream_arns`.
pub fn open(
    tables: &[String],
    stream_arns: &[String],
    aws: &AwsSettings,
    options: ReaderOptions,
    resume: HashMap<String, String>,
) -> Result<ShardReader<StreamsApi>, SourceError> {
    let what = || format!("DynamoDB tables {}", tables.join(", "));
    let runtime = crate::runtime::background("dynashift-streams")
        .map_err(|e| SourceError::Other { what: what(), cause: Cause::of(e) })?;
    let sdk = runtime.block_on(sdk_config(aws));
    runtime.block_on(crate::aws::require_credentials(&sdk))?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let mut latest: HashMap<String, String> = HashMap::new();
    for table in tables {
        let out = runtime.block_on(dynamodb.describe_table().table_name(table).send()).map_err(|e| {
            let not_found = e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception());
            let cause = Cause::with_message(sdk_message(&e), e);
            let what = format!("DynamoDB table `{table}`");
            if not_found {
                SourceError::NotFound { what, cause }
            } else {
                SourceError::Other { what, cause }
            }
        })?;
        let arn = out.table().and_then(|t| t.latest_stream_arn()).ok_or_else(|| SourceError::Other {
            what: format!("DynamoDB table `{table}`"),
            cause: "has no stream: enable DynamoDB Streams (NEW_AND_OLD_IMAGES) on it".into(),
        })?;
        latest.insert(table.clone(), arn.to_string());
    }
    for arn in stream_arns {
        let table = dynashift_core::decode::table_from_arn(arn).ok_or_else(|| SourceError::Other {
            what: format!("stream `{arn}`"),
            cause: "is not a DynamoDB stream ARN (…:table/NAME/stream/LABEL)".into(),
        })?;
        latest.entry(table).or_insert_with(|| arn.clone());
    }
    let api = StreamsApi {
        client: aws_sdk_dynamodbstreams::Client::new(&sdk),
        tables: tables.to_vec(),
        fixed: stream_arns.to_vec(),
        arns: Arc::default(),
    };
    let (resume, renamed) = rekey_positions(resume, &latest);
    let mut reader = ShardReader::open(runtime, api, options, resume)?;
    for old in renamed {
        reader.push_mark(dynashift_core::Position::new(old, dynashift_core::checkpoint::PRUNED));
    }
    Ok(reader)
}

/// Positions kept by earlier versions under `<table>/<shard id>` belong to the table's latest
/// stream: they move to `<table>/<label>/<shard id>`; returns the old keys to delete.
fn rekey_positions(
    resume: HashMap<String, String>,
    latest: &HashMap<String, String>,
) -> (HashMap<String, String>, Vec<String>) {
    let mut out = HashMap::new();
    let mut renamed = Vec::new();
    for (key, value) in resume {
        let parts: Vec<&str> = key.splitn(3, '/').collect();
        match (parts.as_slice(), parts.first().and_then(|t| latest.get(*t)).and_then(|a| stream_key(a))) {
            ([_, shard], Some(stream)) => {
                out.insert(format!("{stream}/{shard}"), value);
                renamed.push(key);
            }
            _ => {
                out.insert(key, value);
            }
        }
    }
    (out, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_earlier_versions_move_to_the_latest_stream() {
        let arn = "arn:aws:dynamodb:us-east-1:1:table/Orders/stream/2026-01-01T00:00:00.000";
        let latest: HashMap<String, String> = [("Orders".to_string(), arn.to_string())].into();
        let resume: HashMap<String, String> = [
            ("Orders/shardId-1".to_string(), "100".to_string()),
            ("Orders/2025-12-01T00:00:00.000/shardId-0".to_string(), "end".to_string()),
            ("@start".to_string(), "1".to_string()),
        ]
        .into();
        let (moved, renamed) = rekey_positions(resume, &latest);
        assert_eq!(moved.get("Orders/2026-01-01T00:00:00.000/shardId-1").map(String::as_str), Some("100"));
        assert_eq!(moved.get("Orders/2025-12-01T00:00:00.000/shardId-0").map(String::as_str), Some("end"));
        assert!(moved.contains_key("@start"));
        assert_eq!(renamed, ["Orders/shardId-1"]);
        assert_eq!(stream_key(arn).as_deref(), Some("Orders/2026-01-01T00:00:00.000"));
    }
}
