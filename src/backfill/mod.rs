//! `backfill`: a table's first load, from a DynamoDB export or a parallel Scan, through the
//! same planner, bulk paths and schema evolution as the stream. Its rows carry the export's
//! time (or the scan's start) as their version, so the stream's changes after it win over
//! them and its rows win over changes before it: reading the stream from any position at or
//! before that time makes the overlap exact.

pub mod export_job;
pub mod progress;

use anyhow::Context as _;

use crate::aws::{sdk_config, sdk_message, AwsSettings};
use crate::config::{Config, ExportSourceConfig, ScanSourceConfig, SourceConfig};
use crate::source::export::manifest::ExportSummary;
use crate::source::export::object::ExportLocation;

/// What `backfill` was asked for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub from: BackfillFrom,
    /// The table to load (with an export: the table the export must be of).
    pub table: Option<String>,
    /// The table's key attributes, when neither the configuration nor DescribeTable gives them.
    pub keys: Vec<String>,
}

/// Where a backfill's items come from.
#[derive(Debug, Clone)]
pub enum BackfillFrom {
    /// A local export folder or `s3://bucket/prefix/AWSDynamoDB/<export id>/`.
    Export(String),
    /// A parallel Scan of the table: its segments, and read capacity units a second in all.
    Scan { segments: u32, page_items: Option<u32>, rate: Option<f64> },
}

/// The AWS settings the configuration's source uses for DynamoDB and S3 calls.
pub fn source_aws(config: &Config) -> AwsSettings {
    match &config.source {
        SourceConfig::Kinesis(k) => k.dynamodb_aws.clone(),
        SourceConfig::DynamodbStreams(s) => s.aws.clone(),
        SourceConfig::Export(e) => e.aws.clone(),
        SourceConfig::Scan(s) => s.aws.clone(),
        SourceConfig::File(_) | SourceConfig::RedshiftMv(_) => AwsSettings::default(),
    }
}

/// What a backfill loads, for its first line of output.
pub enum Loading {
    Export(ExportSummary),
    Scan { table: String },
}

/// A backfill's configuration, what it loads, and what it expects to load (for progress).
pub struct Backfill {
    pub config: Config,
    pub loading: Loading,
    pub expected: progress::Expected,
}

/// The configuration a backfill runs with: the export or the scan as the source (its
/// positions named by the export's id or the table), the table's keys known.
pub fn backfill_config(config: &Config, request: &BackfillRequest) -> anyhow::Result<Backfill> {
    let aws = source_aws(config);
    let mut backfill = config.clone();
    // A scan's table, described once: its keys and its approximate item count.
    let mut described = None;
    let (table, loading, expected) = match &request.from {
        BackfillFrom::Export(from) => {
            let location =
                ExportLocation::parse(from, &aws).map_err(|why| anyhow::anyhow!("{from}: {why}"))?;
            let source = crate::source::export::ExportSource::open(location, Default::default())?;
            let summary = source.summary().clone();
            if let Some(table) = request.table.as_ref().filter(|t| **t != summary.table) {
                anyhow::bail!("{from} is an export of `{}`, not of `{table}`", summary.table);
            }
            backfill.source = SourceConfig::Export(ExportSourceConfig {
                location: from.clone(),
                aws: aws.clone(),
                export_id: summary.export_id().to_string(),
                table: summary.table.clone(),
                version_micros: load_version(summary.export_time_micros),
                copy_bytes: config.spill_bytes(),
            });
            let files: u64 = source.files().iter().map(|f| f.item_count).sum();
            let expected = progress::Expected {
                items: Some(summary.item_count.unwrap_or(files)),
                approximate: false,
                shard_items: source.files().iter().map(|f| (f.key.clone(), f.item_count)).collect(),
                shard_count: source.files().len(),
                unit: "data files",
            };
            (summary.table.clone(), Loading::Export(summary), expected)
        }
        BackfillFrom::Scan { segments, page_items, rate } => {
            let table = request.table.clone().context("a scan needs the table: pass --table")?;
            anyhow::ensure!((1..=1_000_000).contains(segments), "--segments must be between 1 and 1,000,000");
            anyhow::ensure!(
                rate.is_none_or(|r| r > 0.0),
                "--rate must be above 0 read capacity units a second"
            );
            backfill.source = SourceConfig::Scan(ScanSourceConfig {
                table: table.clone(),
                aws: aws.clone(),
                segments: *segments,
                page_items: *page_items,
                rate: *rate,
                // Before the scan's first read by this machine's clock, less a margin for
                // how far it may be ahead of AWS's (an older version only re-applies changes).
                started_micros: load_version(crate::run::unix_now_micros() - CLOCK_MARGIN_MICROS),
            });
            let description = describe_table(&table, &aws).map(|(_, _, d)| d);
            if let Err(e) = &description {
                tracing::debug!("no item count to show the scan's progress against: {e:#}");
            }
            let expected = progress::Expected {
                items: description.as_ref().ok().and_then(|d| d.item_count()).map(|c| c.max(0) as u64),
                approximate: true,
                shard_items: Default::default(),
                shard_count: *segments as usize,
                unit: "segments",
            };
            described = Some(description);
            (table.clone(), Loading::Scan { table }, expected)
        }
    };
    let configured = backfill.tables.get(&table).and_then(|t| t.keys.clone());
    let keys = match configured {
        Some(keys) => keys,
        None if !request.keys.is_empty() => request.keys.clone(),
        None => table_keys(&table, &aws, described).with_context(|| {
            format!(
                "the key attributes of `{table}` are needed to load it: set `keys` in [tables.\"{table}\"] \
                 or pass --keys"
            )
        })?,
    };
    backfill.tables.entry(table).or_default().keys = Some(keys);
    // Every item is a key of its own: spilling would write each once more for nothing.
    backfill.defaults.spill = Some(0);
    if backfill.defaults.max_batch_memory.is_none() && !backfill.target.is_redshift() {
        let share = if backfill.target.is_embedded() { EMBEDDED_BATCH_SHARE } else { SERVER_BATCH_SHARE };
        backfill.defaults.max_batch_memory = Some(backfill.memory_budget_bytes() / share);
    }
    Ok(Backfill { config: backfill, loading, expected })
}

/// A backfill's batches take this share of the memory budget unless `max_batch_memory` says
/// otherwise (Redshift keeps its large batches: each costs an S3 upload and a COPY). Every
/// item is a row of its own, so large batches save the warehouse little, and small ones let
/// the next batch be planned while one is applied. 1,000,000 items into DuckDB: 15.7 s and
/// 665 MB with the stream's 128 MB batches, 10.0 s and 413 MB with 32 MB ones.
const EMBEDDED_BATCH_SHARE: u64 = 16;
/// PostgreSQL's batches stay larger. While each batch's guards hashed the whole table, 64 MB
/// took 17.4 s and 295 MB, 32 MB 23.1 s and 208 MB, 128 MB 17.8 s and 418 MB; appended
/// unguarded (`snapshot_load`), 32 and 64 MB measured alike (19–24 s on slow host hours).
const SERVER_BATCH_SHARE: u64 = 8;

/// How far this machine's clock may run ahead of AWS's, taken off a scan's start.
const CLOCK_MARGIN_MICROS: i64 = 60_000_000;

/// The version a backfill's rows carry, for a snapshot taken at `micros`: the last
/// microsecond before the second it falls in. DynamoDB Streams times changes to the second, so
/// a change made just after the snapshot can carry an earlier time than the snapshot's; every
/// change of that second then wins over the loaded row (one made before the snapshot only
/// re-applies a value the stream then carries forward).
pub fn load_version(micros: i64) -> i64 {
    micros.div_euclid(1_000_000) * 1_000_000 - 1
}

/// The table's key attributes, from DescribeTable (its answer when already asked).
fn table_keys(
    table: &str,
    aws: &AwsSettings,
    described: Option<anyhow::Result<aws_sdk_dynamodb::types::TableDescription>>,
) -> anyhow::Result<Vec<String>> {
    let described = match described {
        Some(described) => described?,
        None => describe_table(table, aws)?.2,
    };
    let keys: Vec<String> = described.key_schema().iter().map(|k| k.attribute_name().to_string()).collect();
    anyhow::ensure!(!keys.is_empty(), "DescribeTable gave no key schema");
    Ok(keys)
}

/// A DynamoDB client on a runtime of its own (credentials required), and `table` as
/// DescribeTable describes it.
fn describe_table(
    table: &str,
    aws: &AwsSettings,
) -> anyhow::Result<(
    tokio::runtime::Runtime,
    aws_sdk_dynamodb::Client,
    aws_sdk_dynamodb::types::TableDescription,
)> {
    let runtime = crate::runtime::background("dynashift-backfill")?;
    let sdk = runtime.block_on(sdk_config(aws));
    runtime.block_on(crate::aws::require_credentials(&sdk))?;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let out = runtime
        .block_on(client.describe_table().table_name(table).send())
        .map_err(|e| anyhow::anyhow!("DescribeTable of `{table}` failed: {}", sdk_message(&e)))?;
    let described = out.table.context("DescribeTable gave no description")?;
    Ok((runtime, client, described))
}

/// After a backfill: the shards (an export's data files, a scan's segments) not read to
/// their end, named; empty when the whole table is loaded.
pub fn unfinished(
    warehouse: &mut dyn crate::warehouse::Warehouse,
    backfill: &Config,
) -> anyhow::Result<Vec<String>> {
    let shards: Vec<String> = match &backfill.source {
        SourceConfig::Export(e) => {
            let location = ExportLocation::parse(&e.location, &e.aws)
                .map_err(|why| anyhow::anyhow!("{}: {why}", e.location))?;
            let source = crate::source::export::ExportSource::open(location, Default::default())?;
            source.files().iter().map(|f| f.key.clone()).collect()
        }
        SourceConfig::Scan(s) => {
            (0..s.segments).map(|i| crate::source::scan::segment_shard(i, s.segments)).collect()
        }
        _ => Vec::new(),
    };
    let committed = warehouse.load_checkpoints(&backfill.source.checkpoint_name())?;
    let ended = Some(dynashift_core::checkpoint::ENDED);
    Ok(shards.into_iter().filter(|s| committed.get(s).map(String::as_str) != ended).collect())
}

/// Segments an automatic backfill scans with (fixed, so that a resumed one finds its positions).
pub const AUTO_SEGMENTS: u32 = 4;

/// With `backfill = "auto"`: the source's tables still to scan before its stream is first
/// read. None once the stream has committed a position (it has started: a table is never
/// scanned again), else those whose scan has not read every segment to its end (a scan a
/// stop interrupted resumes).
pub fn tables_to_backfill(
    warehouse: &mut dyn crate::warehouse::Warehouse,
    config: &Config,
) -> anyhow::Result<Vec<String>> {
    let (tables, auto) = match &config.source {
        SourceConfig::DynamodbStreams(s) => (&s.tables, s.reading.backfill_auto),
        SourceConfig::Kinesis(k) => (&k.tables, k.reading.backfill_auto),
        _ => return Ok(Vec::new()),
    };
    if !auto || !warehouse.is_set_up()? {
        return Ok(if auto { tables.clone() } else { Vec::new() });
    }
    let positions = warehouse.load_checkpoints(&config.source.checkpoint_name())?;
    if positions.keys().any(|shard| !shard.starts_with('@')) {
        return Ok(Vec::new());
    }
    let ended = Some(dynashift_core::checkpoint::ENDED);
    let mut pending = Vec::new();
    for table in tables {
        let scanned = warehouse.load_checkpoints(&format!("scan:{table}"))?;
        let whole = (0..AUTO_SEGMENTS).all(|i| {
            scanned.get(&crate::source::scan::segment_shard(i, AUTO_SEGMENTS)).map(String::as_str) == ended
        });
        if !whole {
            pending.push(table.clone());
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_load_is_older_than_every_change_of_its_second() {
        assert_eq!(super::load_version(1_796_040_000_250_000), 1_796_039_999_999_999);
        assert_eq!(super::load_version(1_796_040_000_000_000), 1_796_039_999_999_999);
    }
}
