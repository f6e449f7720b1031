//! `bench --mv`: the workload landed in a PostgreSQL table with the columns of Redshift's
//! streaming-ingestion view — four shards by item key, sequence numbers rising per shard, each
//! record's bytes as bytea — so the `redshift-mv` source is timed against the file source on
//! the same server.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use futures_util::SinkExt;

/// The landing table, `schema.name` (its schema survives the bench's reset between runs).
pub const VIEW: &str = "cdc.w1_changes";

const SHARDS: u64 = 4;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// COPY data is sent in pieces of about this many bytes.
const PIECE: usize = 8 << 20;

/// Lands `file`'s records in `VIEW` (made afresh); returns the seconds it took, which the
/// bench does not count.
pub fn land(url: &str, file: &Path) -> anyhow::Result<f64> {
    let started = Instant::now();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    runtime.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS cdc; DROP TABLE IF EXISTS {VIEW}; \
                 CREATE TABLE {VIEW} (approximate_arrival_timestamp TIMESTAMP, partition_key VARCHAR(256), \
                 shard_id CHAR(20), sequence_number VARCHAR(128), refresh_time TIMESTAMP, kinesis_data BYTEA)"
            ))
            .await
            .context("creating the landing table")?;
        let sink = client
            .copy_in(&format!("COPY {VIEW} (shard_id, sequence_number, kinesis_data) FROM STDIN"))
            .await
            .context("starting COPY into the landing table")?;
        futures_util::pin_mut!(sink);
        let reader = std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        );
        let mut next = [0u64; SHARDS as usize];
        let mut piece: Vec<u8> = Vec::with_capacity(PIECE + (1 << 20));
        for line in reader.lines() {
            let line = line.with_context(|| format!("reading {}", file.display()))?;
            if line.is_empty() {
                continue;
            }
            let shard = shard_of(&line);
            next[shard as usize] += 1;
            // As Kinesis numbers them: decimal, rising within the shard.
            let head = format!("shardId-{shard:012}\t49{:020}\t\\\\x", next[shard as usize]);
            piece.extend_from_slice(head.as_bytes());
            for b in line.as_bytes() {
                piece.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            piece.push(b'\n');
            if piece.len() >= PIECE {
                sink.send(bytes::Bytes::from(std::mem::take(&mut piece))).await.context("landing records")?;
            }
        }
        sink.send(bytes::Bytes::from(piece)).await.context("landing records")?;
        sink.finish().await.context("finishing COPY into the landing table")?;
        // The index docs/redshift-mv.md asks of a PostgreSQL landing table.
        client
            .batch_execute(&format!(
                "CREATE INDEX ON {VIEW} (shard_id, LENGTH(sequence_number), sequence_number); ANALYZE {VIEW}"
            ))
            .await
            .context("indexing the landing table")?;
        anyhow::Ok(())
    })?;
    Ok(started.elapsed().as_secs_f64())
}

/// The shard of a record: by its table and item key, as DynamoDB spreads changes.
fn shard_of(line: &str) -> u64 {
    let record: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    record["tableName"].to_string().hash(&mut hasher);
    record["dynamodb"]["Keys"].to_string().hash(&mut hasher);
    hasher.finish() % SHARDS
}
