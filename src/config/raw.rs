//! The configuration file exactly as TOML gives it: every key, its default, nothing checked
//! beyond its TOML type. `TryFrom` in the sibling modules turns these into typed settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dynashift_core::naming::NamingStyle;
use dynashift_core::plan::{DeleteMode, TtlMode};
use dynashift_core::types::ColumnMode;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub source: RawSource,
    pub target: RawTarget,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub tables: BTreeMap<String, TableOverride>,
    #[serde(default)]
    pub schedule: RawSchedule,
    #[serde(default)]
    pub monitoring: RawMonitoring,
}

/// `[monitoring]`: the metrics listener and the lag alarm.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitoring {
    /// Address to serve `/metrics`, `/healthz` and `/readyz` on, e.g. "127.0.0.1:9464".
    pub metrics: Option<String>,
    /// Age of the oldest unapplied change that raises the lag alarm ("0s": never).
    pub alert_lag: Option<String>,
}

/// `[schedule]`: rules over every table's schedule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Tables one batch applies at most.
    pub max_tables_per_batch: Option<usize>,
    /// Windows in which nothing is applied, e.g. "Mon-Fri 08:00-09:00".
    #[serde(default)]
    pub quiet: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RawSource {
    File(RawFileSource),
    Kinesis(RawKinesisSource),
    DynamodbStreams(RawStreamsSource),
    RedshiftMv(RawMvSource),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMvSource {
    /// The streaming-ingestion materialized view (or a landing table with its columns),
    /// `schema.name`.
    pub view: String,
    /// Its server: a PostgreSQL connection string (Redshift's wire protocol included); without
    /// it, the Redshift target's own connection and login.
    pub url: Option<String>,
    /// Environment variable holding the password, when `url` has none.
    #[serde(default = "default_mv_password_env")]
    pub password_env: String,
    /// `REFRESH MATERIALIZED VIEW` before each pass (when its auto refresh is off).
    #[serde(default)]
    pub refresh: bool,
    /// Rows one query reads at most.
    #[serde(default = "default_mv_page_rows")]
    pub page_rows: usize,
    /// Table for relayed Streams records that carry no table name.
    pub table: Option<String>,
    /// For `dynashift setup`: the Kinesis stream the view reads.
    pub stream: Option<String>,
    /// For `dynashift setup`: the IAM role Redshift reads the stream with (ARN or `default`).
    pub iam_role: Option<String>,
    /// For `dynashift setup`: the external schema naming the stream.
    #[serde(default = "default_mv_external_schema")]
    pub external_schema: String,
}

fn default_mv_external_schema() -> String {
    "kds".into()
}

fn default_mv_password_env() -> String {
    "DYNASHIFT_SOURCE_PASSWORD".into()
}

fn default_mv_page_rows() -> usize {
    10_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSource {
    /// A path, a glob, or `-` for standard input.
    pub path: String,
    /// Table for records that name none (export lines, relayed Streams records).
    pub table: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKinesisSource {
    /// Stream name or ARN.
    pub stream: String,
    pub region: Option<String>,
    /// Endpoint of the Kinesis API (a VPC endpoint, or a local emulator).
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// `trim_horizon`, `latest` or an RFC 3339 time.
    #[serde(default = "default_start")]
    pub start: String,
    /// Table for relayed Streams records that carry no table name.
    pub table: Option<String>,
    /// Longest wait, in milliseconds, before a partial batch is applied.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default)]
    pub skip_trim_check: bool,
    /// DynamoDB tables whose changes the stream carries (for `check`).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Endpoint of the DynamoDB API for `check`, when `endpoint_url` (Kinesis) is not it.
    pub dynamodb_endpoint_url: Option<String>,
    /// `auto`: scan `tables` into the target before the stream is first read.
    pub backfill: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStreamsSource {
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub stream_arns: Vec<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    #[serde(default = "default_start")]
    pub start: String,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default)]
    pub skip_trim_check: bool,
    /// `auto`: scan `tables` into the target before the stream is first read.
    pub backfill: Option<String>,
}

fn default_start() -> String {
    "trim_horizon".into()
}

fn default_flush_interval_ms() -> u64 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RawTarget {
    Duckdb(RawDuckDbTarget),
    #[serde(alias = "postgresql")]
    Postgres(RawPostgresTarget),
    Redshift(Box<RawRedshiftTarget>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDuckDbTarget {
    pub path: PathBuf,
    #[serde(default = "default_schema")]
    pub schema: String,
    /// DuckDB's own memory budget, e.g. "256MB" (unset: a quarter of `defaults.memory`).
    pub memory_limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresTarget {
    /// `postgres://user@host:port/dbname?sslmode=…` or libpq's `host=… port=… user=… dbname=…`.
    pub url: String,
    /// Environment variable holding the password when the URL has none.
    #[serde(default = "default_password_env")]
    pub password_env: String,
    #[serde(default = "default_schema")]
    pub schema: String,
    /// PEM file of root certificates to trust besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// How dynashift reaches Redshift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawRedshiftConnection {
    /// The PostgreSQL wire protocol to the cluster's endpoint.
    #[default]
    Wire,
    /// The Redshift Data API over HTTPS (`BatchExecuteStatement`).
    DataApi,
}

/// How a wire connection logs in to Redshift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawRedshiftAuth {
    /// User and password from `url` / `password_env`.
    #[default]
    Password,
    /// Temporary credentials from `GetClusterCredentials` (provisioned clusters).
    Cluster,
    /// Temporary credentials from Redshift Serverless `GetCredentials`.
    Serverless,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedshiftTarget {
    #[serde(default)]
    pub connection: RawRedshiftConnection,
    /// Wire: connection string as for PostgreSQL.
    #[serde(default)]
    pub url: String,
    /// Data API: the database to connect to.
    pub database: Option<String>,
    /// Data API: a Secrets Manager secret holding the login.
    pub secret_arn: Option<String>,
    /// Data API: seconds one call may run before it is cancelled and retried.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_secs: u64,
    #[serde(default = "default_password_env")]
    pub password_env: String,
    #[serde(default = "default_schema")]
    pub schema: String,
    pub ca_file: Option<PathBuf>,
    /// `s3://bucket/prefix/` where batches are staged for COPY.
    pub s3_staging: String,
    /// IAM role Redshift assumes to read the staged objects.
    pub copy_role: String,
    /// Region of the staging bucket when it differs from the cluster's.
    pub s3_region: Option<String>,
    #[serde(default)]
    pub auth: RawRedshiftAuth,
    pub cluster_identifier: Option<String>,
    pub db_user: Option<String>,
    #[serde(default)]
    pub auto_create_user: bool,
    pub workgroup: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub data_api_endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// Rows per staged S3 part.
    #[serde(default = "default_part_rows")]
    pub part_rows: usize,
}

fn default_part_rows() -> usize {
    100_000
}

fn default_statement_timeout() -> u64 {
    900
}

fn default_password_env() -> String {
    "PGPASSWORD".into()
}

fn default_schema() -> String {
    "dynamodb".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(default)]
    pub columns: ColumnMode,
    #[serde(default)]
    pub naming: NamingStyle,
    #[serde(default)]
    pub deletes: DeleteMode,
    #[serde(default)]
    pub ttl_deletes: TtlMode,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    pub max_batch_records: Option<usize>,
    pub max_batch_memory: Option<String>,
    pub memory: Option<String>,
    /// Disk a backlog's held changes may take ("0": none).
    pub spill: Option<String>,
    /// Where they go.
    pub spill_dir: Option<std::path::PathBuf>,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// At most one apply of a table per this long ("0s": as soon as changes are read).
    pub every: Option<String>,
    /// Daily window in which tables are applied, e.g. "01:00-05:00".
    pub window: Option<String>,
    /// When several tables are due, higher first.
    pub priority: Option<i64>,
    /// Read and hold changes, apply nothing.
    pub paused: Option<bool>,
}

fn default_batch_size() -> usize {
    25_000
}

impl Default for RawDefaults {
    fn default() -> RawDefaults {
        RawDefaults {
            columns: ColumnMode::default(),
            naming: NamingStyle::default(),
            deletes: DeleteMode::default(),
            ttl_deletes: TtlMode::default(),
            batch_size: default_batch_size(),
            max_batch_records: None,
            max_batch_memory: None,
            memory: None,
            spill: None,
            spill_dir: None,
            include: Vec::new(),
            exclude: Vec::new(),
            every: None,
            window: None,
            priority: None,
            paused: None,
        }
    }
}

/// Per-table settings; unset fields fall back to `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableOverride {
    pub columns: Option<ColumnMode>,
    pub naming: Option<NamingStyle>,
    pub deletes: Option<DeleteMode>,
    pub ttl_deletes: Option<TtlMode>,
    /// Key attribute names, needed to load DynamoDB export lines.
    pub keys: Option<Vec<String>>,
    pub every: Option<String>,
    pub window: Option<String>,
    pub priority: Option<i64>,
    pub paused: Option<bool>,
}
