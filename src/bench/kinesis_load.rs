//! The Kinesis side of `dynashift bench`: the workload put into a four-shard stream (on a
//! Kinesis endpoint such as a local kinesalite), for `dynashift sync --once` to read.

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use dynashift::aws::{sdk_config, AwsSettings};

pub const SHARDS: i32 = 4;

/// Creates stream `name` with four shards at `endpoint` and puts every line of `file` into
/// it. Returns the seconds the puts took.
pub fn load_stream(endpoint: &str, name: &str, file: &Path) -> anyhow::Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let settings = AwsSettings {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.to_string()),
        profile: None,
        max_attempts: Some(5),
    };
    let client = aws_sdk_kinesis::Client::new(&rt.block_on(sdk_config(&settings)));
    rt.block_on(client.create_stream().stream_name(name).shard_count(SHARDS).send())
        .with_context(|| format!("creating stream {name} at {endpoint}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = rt.block_on(client.describe_stream_summary().stream_name(name).send())?;
        if out.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "stream {name} did not become active");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    let mut entries = Vec::with_capacity(500);
    let flush = |entries: &mut Vec<PutRecordsRequestEntry>| -> anyhow::Result<()> {
        let batch = std::mem::take(entries);
        let out = rt.block_on(client.put_records().stream_name(name).set_records(Some(batch)).send())?;
        anyhow::ensure!(out.failed_record_count() == Some(0), "some records were not accepted");
        Ok(())
    };
    for (count, line) in reader.lines().enumerate() {
        let line = line?;
        let entry = PutRecordsRequestEntry::builder()
            .data(Blob::new(line.into_bytes()))
            .partition_key(format!("k{count}"))
            .build()?;
        entries.push(entry);
        if entries.len() == 500 {
            flush(&mut entries)?;
        }
    }
    if !entries.is_empty() {
        flush(&mut entries)?;
    }
    Ok(started.elapsed().as_secs_f64())
}
