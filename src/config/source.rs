//! `[source]`: where changes are read, as typed settings.

use std::time::Duration;

use super::raw::{RawFileSource, RawKinesisSource, RawMvSource, RawSource, RawStreamsSource};
use super::InvalidSetting;
use crate::aws::AwsSettings;
use crate::source::shards::{ReaderOptions, StartPosition};
use dynashift_core::streaming_view::{setup_statements, StreamingView, ViewSettingError};

#[derive(Debug, Clone)]
pub enum SourceConfig {
    File(FileSourceConfig),
    Kinesis(KinesisSourceConfig),
    DynamodbStreams(StreamsSourceConfig),
    /// A DynamoDB table export, read by `backfill` (not a `[source]` of the file).
    Export(ExportSourceConfig),
    /// A table read with a parallel Scan, by `backfill --scan` (not a `[source]` of the file).
    Scan(ScanSourceConfig),
    /// Redshift's streaming-ingestion materialized view of the Kinesis stream.
    RedshiftMv(MvSourceConfig),
}

/// A materialized view (or landing table) holding the Kinesis stream's records.
#[derive(Debug, Clone)]
pub struct MvSourceConfig {
    pub schema: String,
    pub view: String,
    /// The view's server; `None`: the Redshift target's (`target_login`).
    pub url: Option<String>,
    pub password_env: String,
    /// The Redshift target's connection and login, lent when `url` is not given.
    pub target_login: Option<Box<LentConnection>>,
    pub refresh: bool,
    pub page_rows: usize,
    pub table: Option<String>,
    /// What `dynashift setup` creates the view from (`None` without `stream` and `iam_role`:
    /// the view must exist, and is adopted).
    pub streaming: Option<dynashift_core::streaming_view::StreamingView>,
}

/// How a Redshift target reaches its cluster, lent to a `redshift-mv` source without a `url`.
#[derive(Debug, Clone)]
pub enum LentConnection {
    /// The wire protocol, logged in as the target is.
    Wire(TargetLogin),
    /// The Data API, with the target's cluster or workgroup, database and login.
    DataApi(crate::warehouse::data_api::DataApiOptions),
}

/// A Redshift target's wire connection and how it logs in (password, or IAM credentials).
#[derive(Debug, Clone)]
pub struct TargetLogin {
    pub settings: crate::warehouse::pg_session::PgSettings,
    pub auth: crate::warehouse::redshift::RedshiftAuth,
    pub aws: AwsSettings,
}

/// A table to scan for a backfill.
#[derive(Debug, Clone)]
pub struct ScanSourceConfig {
    pub table: String,
    pub aws: AwsSettings,
    /// Segments read in parallel.
    pub segments: u32,
    /// Items per Scan request (`None`: DynamoDB's 1 MB pages).
    pub page_items: Option<u32>,
    /// Read capacity units a second, shared by the segments (`None`: no limit).
    pub rate: Option<f64>,
    /// When this scan started (µs since the epoch): its rows' version, at or before every read.
    pub started_micros: i64,
}

/// A table export to load: where it is, and what its manifest says.
#[derive(Debug, Clone)]
pub struct ExportSourceConfig {
    /// A local folder or `s3://bucket/prefix/AWSDynamoDB/<export id>/`.
    pub location: String,
    pub aws: AwsSettings,
    /// The export's id, which names its positions.
    pub export_id: String,
    /// The exported table.
    pub table: String,
    /// The moment the export is consistent with (µs since the epoch): its rows' version.
    pub version_micros: i64,
    /// Disk that copies of data files downloaded from S3 may take while they are read (the
    /// spill bound the configuration sets: a backfill itself never spills).
    pub copy_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    /// A path, a glob, or `-` for standard input.
    pub path: String,
    /// Table for records that name none (export lines, relayed Streams records).
    pub table: Option<String>,
}

/// How a stream's shards are read, common to both stream sources.
#[derive(Debug, Clone)]
pub struct StreamReading {
    /// Where a new reader's shards start (shards found later are read from their start).
    pub start: StartPosition,
    /// Longest wait before a partial batch is applied.
    pub flush_interval: Duration,
    /// Continue past committed positions that cannot be proved to exist.
    pub skip_trim_check: bool,
    /// `backfill = "auto"`: the source's tables are scanned into the target before the
    /// stream is first read.
    pub backfill_auto: bool,
}

/// `backfill = "auto"` (or unset): whether the tables are scanned before the stream is first
/// read. A `latest` start would miss the changes made while they are scanned.
fn backfill_auto(raw: Option<&str>, start: &StartPosition) -> Result<bool, InvalidSetting> {
    match raw {
        None | Some("off") => Ok(false),
        Some("auto") if matches!(start, StartPosition::Latest) => Err(InvalidSetting::value(
            "source.backfill",
            "`auto` reads the stream from before the scan: use start = \"trim_horizon\" (a `latest` start \
             would miss the changes made while the tables are scanned)",
        )),
        Some("auto") => Ok(true),
        Some(other) => {
            Err(InvalidSetting::value("source.backfill", format!("`{other}`: expected \"auto\" or \"off\"")))
        }
    }
}

impl StreamReading {
    /// The shard reader's options for one run.
    pub fn reader_options(&self, once: bool, round_bytes: usize) -> ReaderOptions {
        ReaderOptions {
            start: self.start.clone(),
            once,
            flush_interval: self.flush_interval,
            skip_trim_check: self.skip_trim_check,
            round_bytes,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KinesisSourceConfig {
    /// Stream name or ARN.
    pub stream: String,
    pub aws: AwsSettings,
    pub reading: StreamReading,
    /// Table for relayed Streams records that carry no table name.
    pub table: Option<String>,
    /// DynamoDB tables whose changes the stream carries, for `check` to read their streaming
    /// destination's settings.
    pub tables: Vec<String>,
    /// Where `check` calls the DynamoDB API.
    pub dynamodb_aws: AwsSettings,
}

impl KinesisSourceConfig {
    pub fn stream_name(&self) -> &str {
        self.stream.rsplit_once(":stream/").map_or(self.stream.as_str(), |(_, n)| n)
    }
}

#[derive(Debug, Clone)]
pub struct StreamsSourceConfig {
    /// Tables whose latest stream is read.
    pub tables: Vec<String>,
    /// Streams read by ARN (besides `tables`).
    pub stream_arns: Vec<String>,
    pub aws: AwsSettings,
    pub reading: StreamReading,
}

impl SourceConfig {
    /// The name the source's positions are committed under.
    pub fn checkpoint_name(&self) -> String {
        match self {
            SourceConfig::File(_) => "file".into(),
            SourceConfig::Kinesis(k) => format!("kinesis:{}", k.stream_name()),
            SourceConfig::DynamodbStreams(_) => "dynamodb-streams".into(),
            SourceConfig::Export(e) => format!("export:{}", e.export_id),
            SourceConfig::Scan(s) => format!("scan:{}", s.table),
            SourceConfig::RedshiftMv(m) => format!("redshift-mv:{}.{}", m.schema, m.view),
        }
    }

    /// The version export lines carry (µs since the epoch): the export's time for a
    /// backfill, so that the stream's later changes win over it and its rows over earlier ones.
    pub fn load_version(&self) -> Option<i64> {
        match self {
            SourceConfig::Export(e) => Some(e.version_micros),
            SourceConfig::Scan(s) => Some(s.started_micros),
            _ => None,
        }
    }

    /// The version of a snapshot load, whose every key appears once in the whole load: an
    /// export (a point-in-time copy lists each item once). A scan is not one: DynamoDB does
    /// not promise that a Scan running during writes returns each item once.
    pub fn snapshot_version(&self) -> Option<i64> {
        match self {
            SourceConfig::Export(e) => Some(e.version_micros),
            _ => None,
        }
    }

    /// Table for records that name none.
    pub fn default_table(&self) -> Option<String> {
        match self {
            SourceConfig::File(f) => f.table.clone(),
            SourceConfig::Kinesis(k) => k.table.clone(),
            SourceConfig::DynamodbStreams(_) => None,
            SourceConfig::Export(e) => Some(e.table.clone()),
            SourceConfig::Scan(s) => Some(s.table.clone()),
            SourceConfig::RedshiftMv(m) => m.table.clone(),
        }
    }

    /// Whether the input ends (a file, an export, a scan), rather than being followed (a stream).
    pub fn is_file(&self) -> bool {
        matches!(self, SourceConfig::File(_) | SourceConfig::Export(_) | SourceConfig::Scan(_))
    }
}

impl TryFrom<RawSource> for SourceConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawSource) -> Result<SourceConfig, InvalidSetting> {
        Ok(match raw {
            RawSource::File(f) => SourceConfig::File(f.try_into()?),
            RawSource::Kinesis(k) => SourceConfig::Kinesis(k.try_into()?),
            RawSource::DynamodbStreams(d) => SourceConfig::DynamodbStreams(d.try_into()?),
            RawSource::RedshiftMv(m) => SourceConfig::RedshiftMv(m.try_into()?),
        })
    }
}

impl TryFrom<RawMvSource> for MvSourceConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawMvSource) -> Result<MvSourceConfig, InvalidSetting> {
        let Some((schema, view)) = raw.view.split_once('.').filter(|(s, v)| !s.is_empty() && !v.is_empty())
        else {
            return Err(InvalidSetting::value("source.view", "name the view as `schema.name`"));
        };
        if raw.url.as_deref().is_some_and(|url| url.trim().is_empty()) {
            return Err(InvalidSetting::value(
                "source.url",
                "must not be empty (leave it out to use the Redshift target's connection)",
            ));
        }
        if raw.page_rows == 0 {
            return Err(InvalidSetting::value("source.page_rows", "must be at least 1"));
        }
        let streaming = streaming_view(&raw, schema, view)?;
        Ok(MvSourceConfig {
            streaming,
            schema: schema.to_string(),
            view: view.to_string(),
            url: raw.url,
            password_env: raw.password_env,
            target_login: None,
            refresh: raw.refresh,
            page_rows: raw.page_rows,
            table: raw.table,
        })
    }
}

/// The view `setup` would create: both `stream` and `iam_role`, or neither.
fn streaming_view(
    raw: &RawMvSource,
    schema: &str,
    view: &str,
) -> Result<Option<StreamingView>, InvalidSetting> {
    let (stream, iam_role) = match (&raw.stream, &raw.iam_role) {
        (None, None) => return Ok(None),
        (Some(stream), Some(role)) => (stream.clone(), role.clone()),
        (Some(_), None) => {
            return Err(InvalidSetting::value(
                "source.iam_role",
                "give it with source.stream (an ARN, or `default`)",
            ))
        }
        (None, Some(_)) => {
            return Err(InvalidSetting::value(
                "source.stream",
                "give it with source.iam_role (the Kinesis stream's name)",
            ))
        }
    };
    if raw.external_schema == schema {
        return Err(InvalidSetting::value(
            "source.external_schema",
            format!("{schema:?} is the view's own schema: the external schema only names the stream, so give the view another (as `cdc.{view}`)"),
        ));
    }
    let streaming = StreamingView {
        external_schema: raw.external_schema.clone(),
        iam_role,
        stream,
        schema: schema.to_string(),
        view: view.to_string(),
        auto_refresh: !raw.refresh,
    };
    // Checked now, so a bad role or stream name is reported by every command.
    if let Err(e) = setup_statements(&streaming) {
        let setting = match e {
            ViewSettingError::Stream(_) => "source.stream",
            _ => "source.iam_role",
        };
        return Err(InvalidSetting::value(setting, e.to_string()));
    }
    Ok(Some(streaming))
}

impl TryFrom<RawFileSource> for FileSourceConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawFileSource) -> Result<FileSourceConfig, InvalidSetting> {
        if raw.path.trim().is_empty() {
            return Err(InvalidSetting::value("source.path", "must not be empty"));
        }
        Ok(FileSourceConfig { path: raw.path, table: raw.table })
    }
}

impl TryFrom<RawKinesisSource> for KinesisSourceConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawKinesisSource) -> Result<KinesisSourceConfig, InvalidSetting> {
        let start = StartPosition::parse(&raw.start).map_err(|e| InvalidSetting::parse("source.start", e))?;
        let aws = AwsSettings::from_config(&raw.region, &raw.endpoint_url, &raw.profile);
        let dynamodb_endpoint = raw.dynamodb_endpoint_url.or_else(|| raw.endpoint_url.clone());
        let config = KinesisSourceConfig {
            dynamodb_aws: AwsSettings::from_config(&raw.region, &dynamodb_endpoint, &raw.profile),
            stream: raw.stream,
            aws,
            reading: StreamReading {
                backfill_auto: backfill_auto(raw.backfill.as_deref(), &start)?,
                start,
                flush_interval: Duration::from_millis(raw.flush_interval_ms),
                skip_trim_check: raw.skip_trim_check,
            },
            table: raw.table,
            tables: raw.tables,
        };
        if config.stream_name().is_empty() {
            return Err(InvalidSetting::value("source.stream", "must not be empty"));
        }
        Ok(config)
    }
}

impl TryFrom<RawStreamsSource> for StreamsSourceConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawStreamsSource) -> Result<StreamsSourceConfig, InvalidSetting> {
        if raw.tables.is_empty() && raw.stream_arns.is_empty() {
            return Err(InvalidSetting::value("source", "name `tables` or `stream_arns` to read"));
        }
        // DynamoDB Streams has no reading from a time.
        let start = match raw.start.as_str() {
            "trim_horizon" => StartPosition::TrimHorizon,
            "latest" => StartPosition::Latest,
            other => {
                return Err(InvalidSetting::value(
                    "source.start",
                    format!("`{other}`: DynamoDB Streams start at trim_horizon or latest"),
                ))
            }
        };
        Ok(StreamsSourceConfig {
            tables: raw.tables,
            stream_arns: raw.stream_arns,
            aws: AwsSettings::from_config(&raw.region, &raw.endpoint_url, &raw.profile),
            reading: StreamReading {
                backfill_auto: backfill_auto(raw.backfill.as_deref(), &start)?,
                start,
                flush_interval: Duration::from_millis(raw.flush_interval_ms),
                skip_trim_check: raw.skip_trim_check,
            },
        })
    }
}
