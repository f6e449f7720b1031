//! The `dynamodb-streams` source: DynamoDB Streams read directly, through the shard reader.
//!
//! Several tables' streams are read as one source; a shard's position is kept under
//! `<table>/<shard id>`. Records come back from the SDK as structures and are written as the
//! DynamoDB Streams JSON the decoder reads (with `eventSourceARN`, so the table is known).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use dynashift_core::value::{base64_encode, write_json_string};

use super::lineage::ShardInfo;
use super::shards::{
    classify, sdk_message, ApiError, Page, Payload, ShardApi, ShardReader, SourceError, StartPosition,
};
use crate::aws::{sdk_config, AwsSettings};

#[derive(Clone)]
pub struct StreamsApi {
    client: aws_sdk_dynamodbstreams::Client,
    /// Table name → its stream's ARN.
    streams: Vec<(String, String)>,
}

impl StreamsApi {
    fn stream_of<'a>(&'a self, shard: &'a str) -> Result<(&'a str, &'a str), ApiError> {
        let (table, id) =
            shard.split_once('/').ok_or_else(|| ApiError::NotFound(format!("shard `{shard}`")))?;
        let arn = self
            .streams
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, a)| a.as_str())
            .ok_or_else(|| ApiError::NotFound(format!("the stream of table `{table}`")))?;
        Ok((arn, id))
    }
}

impl ShardApi for StreamsApi {
    fn describe(&self) -> String {
        let tables: Vec<&str> = self.streams.iter().map(|(t, _)| t.as_str()).collect();
        format!("the DynamoDB stream(s) of {}", tables.join(", "))
    }

    async fn list(&self) -> Result<Vec<ShardInfo>, ApiError> {
        let mut listing = Vec::new();
        for (table, arn) in &self.streams {
            let mut last: Option<String> = None;
            loop {
                let out = self
                    .client
                    .describe_stream()
                    .stream_arn(arn)
                    .set_exclusive_start_shard_id(last.clone())
                    .send()
                    .await
                    .map_err(|e| classify(&e, "DescribeStream"))?;
                let Some(d) = out.stream_description() else { break };
                listing.extend(d.shards().iter().filter_map(|s| {
                    Some(ShardInfo {
                        id: format!("{table}/{}", s.shard_id()?),
                        parent: s.parent_shard_id().map(|p| format!("{table}/{p}")),
                        adjacent_parent: None,
                    })
                }));
                last = d.last_evaluated_shard_id().map(str::to_string);
                if last.is_none() {
                    break;
                }
            }
        }
        Ok(listing)
    }

    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: &StartPosition,
    ) -> Result<Option<String>, ApiError> {
        let (arn, id) = self.stream_of(shard)?;
        let request = self.client.get_shard_iterator().stream_arn(arn).shard_id(id);
        let request = match (after, start) {
            (Some(seq), _) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(seq)
            }
            (None, StartPosition::Latest) => request.shard_iterator_type(ShardIteratorType::Latest),
            // DynamoDB Streams has no AT_TIMESTAMP; the config allows only the two above.
            (None, _) => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let out = request.send().await.map_err(|e| classify(&e, &format!("GetShardIterator for {shard}")))?;
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
            .map_err(|e| classify(&e, "GetRecords"))?;
        let records = out
            .records()
            .iter()
            .map(|r| {
                // The API's records do not name their table: the shard's stream does.
                let arn = stream_arn.to_string();
                let sequence = r.dynamodb().and_then(|d| d.sequence_number()).unwrap_or_default().to_string();
                Payload { sequence, data: record_json(r, Some(&arn)).into_bytes(), problem: None }
            })
            .collect();
        Ok(Page { records, next: out.next_shard_iterator().map(str::to_string), behind_ms: None })
    }
}

fn write_value(out: &mut String, v: &AttributeValue) {
    let b64 = base64_encode;
    let strings = |out: &mut String, items: &mut dyn Iterator<Item = String>| {
        out.push('[');
        for (i, s) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, &s);
        }
        out.push(']');
    };
    match v {
        AttributeValue::S(s) => {
            out.push_str("{\"S\":");
            write_json_string(out, s);
        }
        AttributeValue::N(n) => {
            out.push_str("{\"N\":");
            write_json_string(out, n);
        }
        AttributeValue::B(b) => {
            out.push_str("{\"B\":");
            write_json_string(out, &b64(b.as_ref()));
        }
        AttributeValue::Bool(b) => out.push_str(&format!("{{\"BOOL\":{b}")),
        AttributeValue::Null(_) => out.push_str("{\"NULL\":true"),
        AttributeValue::Ss(items) => {
            out.push_str("{\"SS\":");
            strings(out, &mut items.iter().cloned());
        }
        AttributeValue::Ns(items) => {
            out.push_str("{\"NS\":");
            strings(out, &mut items.iter().cloned());
        }
        AttributeValue::Bs(items) => {
            out.push_str("{\"BS\":");
            strings(out, &mut items.iter().map(|b| b64(b.as_ref())));
        }
        AttributeValue::L(items) => {
            out.push_str("{\"L\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        AttributeValue::M(map) => {
            out.push_str("{\"M\":");
            write_map(out, map);
        }
        // A type newer than this SDK: an empty object, which the decoder rejects with a reason.
        _ => out.push('{'),
    }
    out.push('}');
}

fn write_map(out: &mut String, map: &HashMap<String, AttributeValue>) {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    out.push('{');
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, name);
        out.push(':');
        write_value(out, &map[name]);
    }
    out.push('}');
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

/// Opens a reader of the streams of `tables` (their latest stream each) and `stream_arns`.
pub fn open(
    tables: &[String],
    stream_arns: &[String],
    aws: &AwsSettings,
    start: StartPosition,
    resume: HashMap<String, String>,
    once: bool,
    flush_interval: Duration,
) -> Result<ShardReader<StreamsApi>, SourceError> {
    let what = || format!("DynamoDB tables {}", tables.join(", "));
    let runtime = crate::runtime::background("dynashift-streams")
        .map_err(|e| SourceError::Other { what: what(), message: e.to_string() })?;
    let sdk = runtime.block_on(sdk_config(aws));
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let mut streams = Vec::new();
    for table in tables {
        let out = runtime.block_on(dynamodb.describe_table().table_name(table).send()).map_err(|e| {
            let message = sdk_message(&e);
            match e.as_service_error().map(|s| s.is_resource_not_found_exception()) {
                Some(true) => SourceError::NotFound { what: format!("DynamoDB table `{table}`"), message },
                _ => SourceError::Other { what: format!("DynamoDB table `{table}`"), message },
            }
        })?;
        let arn = out.table().and_then(|t| t.latest_stream_arn()).ok_or_else(|| SourceError::Other {
            what: format!("DynamoDB table `{table}`"),
            message: "has no stream: enable DynamoDB Streams (NEW_AND_OLD_IMAGES) on it".into(),
        })?;
        streams.push((table.clone(), arn.to_string()));
    }
    for arn in stream_arns {
        let table = dynashift_core::decode::table_from_arn(arn).ok_or_else(|| SourceError::Other {
            what: format!("stream `{arn}`"),
            message: "is not a DynamoDB stream ARN (…:table/NAME/stream/LABEL)".into(),
        })?;
        streams.push((table, arn.clone()));
    }
    let api = StreamsApi { client: aws_sdk_dynamodbstreams::Client::new(&sdk), streams };
    ShardReader::open(runtime, api, start, resume, once, flush_interval)
}
