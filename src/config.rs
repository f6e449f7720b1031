//! The TOML configuration: parsed into typed settings at load time, checked, then used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dynashift_core::naming::NamingStyle;
use dynashift_core::plan::{DeleteMode, TableOptions, TtlMode};
use dynashift_core::types::ColumnMode;
use serde::Deserialize;

use crate::size::{parse_size, valid_size};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub source: SourceConfig,
    pub target: TargetConfig,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub tables: BTreeMap<String, TableOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    File(FileSourceConfig),
    Kinesis(KinesisSourceConfig),
    DynamodbStreams(StreamsSourceConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamsSourceConfig {
    /// Tables whose latest stream is read.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Streams read by ARN (besides `tables`).
    #[serde(default)]
    pub stream_arns: Vec<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// `trim_horizon` or `latest` (DynamoDB Streams has no reading from a time). Applies to
    /// a new reader's first listing only.
    #[serde(default = "default_start")]
    pub start: String,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Continue past committed positions that cannot be proved to exist.
    #[serde(default)]
    pub skip_trim_check: bool,
}

impl SourceConfig {
    /// The name the source's positions are committed under.
    pub fn checkpoint_name(&self) -> String {
        match self {
            SourceConfig::File(_) => "file".into(),
            SourceConfig::Kinesis(k) => format!("kinesis:{}", k.stream_name()),
            SourceConfig::DynamodbStreams(_) => "dynamodb-streams".into(),
        }
    }

    /// Table for records that name none.
    pub fn default_table(&self) -> Option<String> {
        match self {
            SourceConfig::File(f) => f.table.clone(),
            SourceConfig::Kinesis(k) => k.table.clone(),
            SourceConfig::DynamodbStreams(_) => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisSourceConfig {
    /// Stream name or ARN.
    pub stream: String,
    pub region: Option<String>,
    /// Endpoint of the Kinesis API (a VPC endpoint, or a local emulator).
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    /// Where a new reader's shards start: `trim_horizon`, `latest` or an RFC 3339 time. Shards
    /// found later (children of splits and merges) are read from their start.
    #[serde(default = "default_start")]
    pub start: String,
    /// Table for relayed Streams records that carry no table name.
    pub table: Option<String>,
    /// Longest wait, in milliseconds, before a partial batch is applied.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Continue when a committed record no longer comes back on resume (a shard known to
    /// have been idle past the retention) instead of stopping.
    #[serde(default)]
    pub skip_trim_check: bool,
    /// DynamoDB tables whose changes the stream carries, for `check` to read their streaming
    /// destination's settings.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Endpoint of the DynamoDB API for `check`, when `endpoint_url` (Kinesis) is not it.
    pub dynamodb_endpoint_url: Option<String>,
}

impl KinesisSourceConfig {
    pub fn stream_name(&self) -> &str {
        self.stream.rsplit_once(":stream/").map_or(self.stream.as_str(), |(_, n)| n)
    }
}

fn default_start() -> String {
    "trim_horizon".into()
}

fn default_flush_interval_ms() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A path, a glob, or `-` for standard input.
    pub path: String,
    /// Table for records that name none (export lines, relayed Streams records).
    pub table: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TargetConfig {
    Duckdb(DuckDbTargetConfig),
    #[serde(alias = "postgresql")]
    Postgres(PostgresTargetConfig),
    Redshift(Box<RedshiftTargetConfig>),
}

impl TargetConfig {
    /// The share of the memory budget that held changes get when `max_batch_memory` is
    /// unset: the embedded DuckDB's own buffers share the process, so it gets a quarter;
    /// with a server warehouse the process holds only batches, which get half (larger ones
    /// fold more changes to a key into one row).
    pub fn batch_memory_divisor(&self) -> u64 {
        match self {
            TargetConfig::Duckdb(_) => 4,
            TargetConfig::Postgres(_) | TargetConfig::Redshift(_) => 2,
        }
    }

    /// Schema of the replicated tables.
    pub fn schema(&self) -> &str {
        match self {
            TargetConfig::Duckdb(t) => &t.schema,
            TargetConfig::Postgres(t) => &t.schema,
            TargetConfig::Redshift(t) => &t.schema,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTargetConfig {
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
pub enum RedshiftConnection {
    /// The PostgreSQL wire protocol to the cluster's endpoint.
    #[default]
    Wire,
    /// The Redshift Data API over HTTPS (`BatchExecuteStatement`).
    DataApi,
}

/// How dynashift logs in to Redshift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedshiftAuthKind {
    /// User and password from `url` / `password_env`.
    #[default]
    Password,
    /// Temporary credentials from `GetClusterCredentials` (provisioned clusters).
    Cluster,
    /// Temporary credentials from Redshift Serverless `GetCredentials`.
    Serverless,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftTargetConfig {
    /// `wire` (the PostgreSQL protocol to the cluster's port) or `data-api` (HTTPS).
    #[serde(default)]
    pub connection: RedshiftConnection,
    /// Wire: connection string as for PostgreSQL: `host=… port=5439 dbname=… user=… sslmode=require`.
    #[serde(default)]
    pub url: String,
    /// Data API: the database to connect to.
    pub database: Option<String>,
    /// Data API: a Secrets Manager secret holding the login (instead of `db_user` / IAM).
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
    pub auth: RedshiftAuthKind,
    pub cluster_identifier: Option<String>,
    pub db_user: Option<String>,
    #[serde(default)]
    pub auto_create_user: bool,
    pub workgroup: Option<String>,
    /// AWS region of the cluster and bucket (else the standard chain's).
    pub region: Option<String>,
    /// Endpoint for the AWS APIs (S3, Redshift), e.g. a VPC endpoint or a local emulator.
    pub endpoint_url: Option<String>,
    /// Data API: endpoint of the Redshift Data API when it differs from `endpoint_url` (its
    /// own VPC endpoint).
    pub data_api_endpoint_url: Option<String>,
    /// Named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Rows per staged S3 part.
    #[serde(default = "default_part_rows")]
    pub part_rows: usize,
}

fn default_part_rows() -> usize {
    100_000
}

impl RedshiftTargetConfig {
    fn validate(&self) -> Result<(), String> {
        match self.connection {
            RedshiftConnection::Wire => {
                crate::warehouse::postgres::PgSettings::parse(&self.url, &self.password_env, &self.schema)
                    .map_err(|e| format!("target.url: {e}"))?;
            }
            RedshiftConnection::DataApi => self.validate_data_api()?,
        }
        crate::warehouse::s3_stage::S3Location::parse(&self.s3_staging)
            .map_err(|e| format!("target.s3_staging: {e}"))?;
        dynashift_core::literal::string_literal("target.copy_role", &self.copy_role)
            .map_err(|e| e.to_string())?;
        if !self.copy_role.starts_with("arn:") {
            return Err(format!("target.copy_role `{}` is not an IAM role ARN", self.copy_role));
        }
        if self.part_rows == 0 {
            return Err("target.part_rows must be at least 1".into());
        }
        self.wire_auth().map(|_| ())
    }

    /// How a wire connection logs in, each kind with exactly the fields it needs.
    pub fn wire_auth(&self) -> Result<crate::warehouse::redshift::RedshiftAuth, String> {
        use crate::warehouse::redshift::RedshiftAuth;
        match (self.auth, &self.cluster_identifier, &self.db_user, &self.workgroup) {
            (RedshiftAuthKind::Password, ..) => Ok(RedshiftAuth::Password),
            (RedshiftAuthKind::Cluster, Some(cluster), Some(user), _) => Ok(RedshiftAuth::Cluster {
                cluster_identifier: cluster.clone(),
                db_user: user.clone(),
                auto_create: self.auto_create_user,
            }),
            (RedshiftAuthKind::Cluster, ..) => {
                Err("target.auth = \"cluster\" needs cluster_identifier and db_user".into())
            }
            (RedshiftAuthKind::Serverless, _, _, Some(workgroup)) => {
                Ok(RedshiftAuth::Serverless { workgroup: workgroup.clone() })
            }
            (RedshiftAuthKind::Serverless, ..) => Err("target.auth = \"serverless\" needs workgroup".into()),
        }
    }
}

impl RedshiftTargetConfig {
    fn validate_data_api(&self) -> Result<(), String> {
        if self.database.is_none() {
            return Err("target.connection = \"data-api\" needs `database`".into());
        }
        if !self.url.is_empty() {
            return Err("target.url is for connection = \"wire\"; the Data API takes `database` and \
                        `cluster_identifier` or `workgroup`"
                .into());
        }
        match (&self.cluster_identifier, &self.workgroup) {
            (Some(_), Some(_)) => Err("target: set `cluster_identifier` or `workgroup`, not both".into()),
            (None, None) => {
                Err("target.connection = \"data-api\" needs `cluster_identifier` (a provisioned \
                                 cluster) or `workgroup` (Redshift Serverless)"
                    .into())
            }
            (Some(_), None) if self.db_user.is_none() && self.secret_arn.is_none() => Err(
                "target.connection = \"data-api\" with a cluster needs `db_user` (temporary credentials) \
                 or `secret_arn`"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

fn default_statement_timeout() -> u64 {
    900
}

fn default_password_env() -> String {
    "PGPASSWORD".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckDbTargetConfig {
    pub path: PathBuf,
    #[serde(default = "default_schema")]
    pub schema: String,
    /// DuckDB's own memory budget (`SET memory_limit`), e.g. "256MB" or "2GB". Unset, a
    /// quarter of `defaults.memory` (see `Config::duckdb_memory_limit`).
    #[serde(default)]
    pub memory_limit: Option<String>,
}

/// The memory budget when `defaults.memory` is unset.
const DEFAULT_MEMORY: u64 = 512_000_000;
/// Less leaves the parts too small: DuckDB's quarter of 64MB could not commit a batch of
/// 350 KB items ("failed to pin block").
const MIN_MEMORY: u64 = 256_000_000;

fn default_schema() -> String {
    "dynamodb".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub columns: ColumnMode,
    #[serde(default)]
    pub naming: NamingStyle,
    #[serde(default)]
    pub deletes: DeleteMode,
    #[serde(default)]
    pub ttl_deletes: TtlMode,
    /// Records read per step; a batch (one warehouse transaction) holds at least one step.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// While the warehouse is busy, further steps fold into the next batch up to this many
    /// records (never fewer than `batch_size`); set it to `batch_size` for fixed-size batches.
    /// Unset, it depends on the target (`Config::max_batch_records`).
    #[serde(default)]
    pub max_batch_records: Option<usize>,
    /// ... and up to about this much memory of held changes (a size such as "64MB"). Unset,
    /// a share of `memory` (`Config::max_batch_memory_bytes`).
    #[serde(default)]
    pub max_batch_memory: Option<String>,
    /// The process's memory budget, from which the parts left unset are sized: held
    /// changes, DuckDB's own memory, reads (see `Config::memory_budget_bytes`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Glob patterns of DynamoDB table names to replicate (all when empty).
    #[serde(default)]
    pub include: Vec<String>,
    /// Glob patterns of DynamoDB table names to skip.
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_batch_size() -> usize {
    25_000
}

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults {
            columns: ColumnMode::default(),
            naming: NamingStyle::default(),
            deletes: DeleteMode::default(),
            ttl_deletes: TtlMode::default(),
            batch_size: default_batch_size(),
            max_batch_records: None,
            max_batch_memory: None,
            memory: None,
            include: Vec::new(),
            exclude: Vec::new(),
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
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let config: Config = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Records a batch folds at most (never fewer than `batch_size`). The embedded DuckDB
    /// takes whatever fits `max_batch_memory`: one transaction of millions of records costs
    /// it nothing, and each batch fewer is a rewrite of the keys they share saved.
    pub fn max_batch_records(&self) -> usize {
        let default = match self.target {
            TargetConfig::Duckdb(_) => 10_000_000,
            TargetConfig::Postgres(_) | TargetConfig::Redshift(_) => 500_000,
        };
        self.defaults.max_batch_records.unwrap_or(default).max(self.defaults.batch_size)
    }

    /// `defaults.memory` in bytes (validated when the config was loaded): 512 MB unless set.
    /// Its parts, when not set themselves: held changes a quarter with DuckDB, half with a
    /// server warehouse; DuckDB's own memory a quarter; each file read a thirty-second; each round
    /// of stream reads an eighth. The rest is the planned batch being applied, its staging,
    /// and the process itself.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.defaults.memory.as_deref().and_then(parse_size).unwrap_or(DEFAULT_MEMORY)
    }

    /// `defaults.max_batch_memory` in bytes, or its share of the memory budget when unset.
    pub fn max_batch_memory_bytes(&self) -> usize {
        let bytes = match self.defaults.max_batch_memory.as_deref() {
            Some(size) => parse_size(size).unwrap_or(u64::MAX),
            None => self.memory_budget_bytes() / self.target.batch_memory_divisor(),
        };
        bytes.min(usize::MAX as u64) as usize
    }

    /// The bounds of the run loop (`flow::Flow`). The batch being gathered and the batch
    /// being applied (as planned rows, about 1.5 times its held changes) share half the
    /// budget with DuckDB, three quarters with a server warehouse, and never less than one
    /// batch's held changes.
    pub fn flow_limits(&self, max_batches: Option<u64>) -> crate::flow::FlowLimits {
        let batch_bytes = self.max_batch_memory_bytes();
        let share = match self.target {
            TargetConfig::Duckdb(_) => self.memory_budget_bytes() / 2,
            TargetConfig::Postgres(_) | TargetConfig::Redshift(_) => self.memory_budget_bytes() / 4 * 3,
        };
        crate::flow::FlowLimits {
            batch_records: self.max_batch_records() as u64,
            batch_bytes,
            total_bytes: (share.min(usize::MAX as u64) as usize).max(batch_bytes),
            max_batches,
        }
    }

    /// DuckDB's `memory_limit`: as set, or a quarter of the memory budget (in KB, as DuckDB
    /// reads sizes: 512MB gives 128000KB, DuckDB's 128MB).
    pub fn duckdb_memory_limit(&self) -> String {
        match &self.target {
            TargetConfig::Duckdb(DuckDbTargetConfig { memory_limit: Some(limit), .. }) => limit.clone(),
            _ => format!("{}KB", self.memory_budget_bytes() / 4 / 1000),
        }
    }

    /// Bytes a file read stops at (a record larger than that is still read, alone).
    pub fn read_bytes(&self) -> usize {
        (self.memory_budget_bytes() / 32).min(usize::MAX as u64) as usize
    }

    /// Bytes one round of stream reads (all shards together) aims at.
    pub fn round_bytes(&self) -> usize {
        (self.memory_budget_bytes() / 8).min(usize::MAX as u64) as usize
    }

    fn validate(&self) -> Result<(), String> {
        if self.defaults.batch_size == 0 {
            return Err("defaults.batch_size must be at least 1".into());
        }
        if let Some(size) = self.defaults.max_batch_memory.as_deref().filter(|s| !valid_size(s)) {
            return Err(format!("defaults.max_batch_memory `{size}` is not a size such as \"64MB\""));
        }
        if let Some(size) = self.defaults.memory.as_deref() {
            if parse_size(size).is_none_or(|b| b < MIN_MEMORY) {
                return Err(format!(
                    "defaults.memory `{size}` is not a size of at least 256MB, such as \"512MB\""
                ));
            }
        }
        for (key, patterns) in [("include", &self.defaults.include), ("exclude", &self.defaults.exclude)] {
            for p in patterns {
                glob::Pattern::new(p).map_err(|e| format!("defaults.{key}: bad pattern `{p}`: {e}"))?;
            }
        }
        match &self.target {
            TargetConfig::Duckdb(DuckDbTargetConfig { memory_limit: Some(limit), .. })
                if !valid_size(limit) =>
            {
                return Err(format!("target.memory_limit `{limit}` is not a size such as \"256MB\""));
            }
            TargetConfig::Postgres(t) => {
                crate::warehouse::postgres::PgSettings::parse(&t.url, &t.password_env, &t.schema)
                    .map_err(|e| format!("target.url: {e}"))?;
            }
            TargetConfig::Redshift(t) => t.validate()?,
            TargetConfig::Duckdb(_) => {}
        }
        match &self.source {
            SourceConfig::File(f) if f.path.trim().is_empty() => Err("source.path must not be empty".into()),
            SourceConfig::Kinesis(k) => {
                crate::source::shards::StartPosition::parse(&k.start)
                    .map_err(|e| format!("source.start: {e}"))?;
                if k.stream_name().is_empty() {
                    return Err("source.stream must not be empty".into());
                }
                Ok(())
            }
            SourceConfig::DynamodbStreams(d) => {
                if d.tables.is_empty() && d.stream_arns.is_empty() {
                    return Err("source: name `tables` or `stream_arns` to read".into());
                }
                if !["trim_horizon", "latest"].contains(&d.start.as_str()) {
                    return Err(format!(
                        "source.start `{}`: DynamoDB Streams start at trim_horizon or latest",
                        d.start
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Effective options of one DynamoDB table.
    pub fn table_options(&self, table: &str) -> TableOptions {
        let o = self.tables.get(table).cloned().unwrap_or_default();
        let d = &self.defaults;
        TableOptions {
            columns: o.columns.unwrap_or(d.columns),
            naming: o.naming.unwrap_or(d.naming),
            deletes: o.deletes.unwrap_or(d.deletes),
            ttl_deletes: o.ttl_deletes.unwrap_or(d.ttl_deletes),
        }
    }

    /// Whether changes of `table` are replicated, by the include/exclude patterns.
    pub fn includes(&self, table: &str) -> bool {
        let matches = |p: &String| glob::Pattern::new(p).is_ok_and(|p| p.matches(table));
        (self.defaults.include.is_empty() || self.defaults.include.iter().any(matches))
            && !self.defaults.exclude.iter().any(matches)
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("x.toml")).map_err(|e| e.to_string())
    }

    const MIN: &str =
        "[source]\nkind = \"file\"\npath = \"a.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"q.duckdb\"\n";

    #[test]
    fn minimal_config() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.defaults.batch_size, 25_000);
        assert!(c.includes("Anything"));
        assert_eq!(c.target.schema(), "dynamodb");
    }

    #[test]
    fn overrides_and_patterns() {
        let c = parse(&format!(
            "{MIN}[defaults]\ndeletes = \"soft\"\nexclude = [\"tmp_*\"]\n[tables.\"audit-log\"]\ncolumns = \"document\"\n"
        ))
        .unwrap();
        assert_eq!(c.table_options("audit-log").columns, ColumnMode::Document);
        assert_eq!(c.table_options("audit-log").deletes, DeleteMode::Soft);
        assert_eq!(c.table_options("other").columns, ColumnMode::Typed);
        assert!(!c.includes("tmp_1") && c.includes("orders"));
    }

    #[test]
    fn errors_name_the_key_and_file() {
        let e = parse(&format!("{MIN}[defaults]\ncolumnz = \"typed\"\n")).unwrap_err();
        assert!(e.contains("x.toml") && e.contains("columnz"), "{e}");
        let e = parse(&format!("{MIN}[defaults]\ncolumns = \"wide\"\n")).unwrap_err();
        assert!(e.contains("wide"), "{e}");
        let e = parse("[target]\nkind = \"duckdb\"\npath = \"q\"\n").unwrap_err();
        assert!(e.contains("source"), "{e}");
        let e = parse(&MIN.replace("path = \"a.jsonl\"", "path = \"a\"\nextra = 1")).unwrap_err();
        assert!(e.contains("extra"), "{e}");
        let e = parse(&MIN.replace("q.duckdb\"", "q.duckdb\"\nmemory_limit = \"1GB'; DROP\"")).unwrap_err();
        assert!(e.contains("memory_limit"), "{e}");
        assert!(valid_size("256MB") && valid_size("1.5 GB") && !valid_size("lots") && !valid_size("0MB"));
        let e = parse(&format!("{MIN}[defaults]\nbatch_size = \"big\"\n")).unwrap_err();
        assert!(e.contains("batch_size"), "{e}");
        let e = parse(&format!("{MIN}[defaults]\nmax_batch_memory = \"plenty\"\n")).unwrap_err();
        assert!(e.contains("max_batch_memory") && e.contains("plenty"), "{e}");
        let c =
            parse(&format!("{MIN}[defaults]\nmax_batch_memory = \"2MiB\"\nmax_batch_records = 9\n")).unwrap();
        assert_eq!((c.max_batch_memory_bytes(), c.max_batch_records()), (2 * 1024 * 1024, 25_000));
        let c = parse(MIN).unwrap();
        assert_eq!((c.max_batch_memory_bytes(), c.max_batch_records()), (128_000_000, 10_000_000));
        // A server warehouse holds batches only, so it gets the larger default; an explicit
        // size still wins.
        let pg =
            MIN.replace("kind = \"duckdb\"\npath = \"q.duckdb\"", "kind = \"postgres\"\nurl = \"host=db\"");
        assert_eq!(parse(&pg).unwrap().max_batch_memory_bytes(), 256_000_000);
        assert_eq!(parse(&pg).unwrap().max_batch_records(), 500_000);
        // One memory budget sizes every part left unset: by default the figures above, and
        // DuckDB's own 128MB, 16 MB file reads, 64 MB rounds of stream reads; the batch being
        // gathered and the one being applied share half the budget (three quarters with a
        // server warehouse).
        let c = parse(MIN).unwrap();
        assert_eq!(c.duckdb_memory_limit(), "128000KB");
        assert_eq!((c.read_bytes(), c.round_bytes()), (16_000_000, 64_000_000));
        assert_eq!(c.flow_limits(Some(3)).total_bytes, 256_000_000);
        assert_eq!(c.flow_limits(Some(3)).max_batches, Some(3));
        assert_eq!(parse(&pg).unwrap().flow_limits(None).total_bytes, 384_000_000);
        let c = parse(&format!("{MIN}[defaults]\nmemory = \"2GB\"\n")).unwrap();
        assert_eq!((c.max_batch_memory_bytes(), c.duckdb_memory_limit()), (500_000_000, "500000KB".into()));
        let pinned = MIN.replace("q.duckdb\"", "q.duckdb\"\nmemory_limit = \"1GB\"");
        let c =
            parse(&format!("{pinned}[defaults]\nmemory = \"2GB\"\nmax_batch_memory = \"64MB\"\n")).unwrap();
        assert_eq!((c.max_batch_memory_bytes(), c.duckdb_memory_limit()), (64_000_000, "1GB".into()));
        let e = parse(&format!("{MIN}[defaults]\nmemory = \"16MB\"\n")).unwrap_err();
        assert!(e.contains("defaults.memory") && e.contains("at least 256MB"), "{e}");
        let pg = format!("{pg}[defaults]\nmax_batch_memory = \"32MB\"\n");
        assert_eq!(parse(&pg).unwrap().max_batch_memory_bytes(), 32_000_000);
    }

    #[test]
    fn redshift_target() {
        let rs = MIN.replace(
            "kind = \"duckdb\"\npath = \"q.duckdb\"",
            "kind = \"redshift\"\nurl = \"host=c.example port=5439 dbname=dev user=app\"\n\
             s3_staging = \"s3://stage-bucket/dynashift/\"\ncopy_role = \"arn:aws:iam::1:role/copy\"",
        );
        let c = parse(&rs).unwrap();
        let TargetConfig::Redshift(t) = &c.target else { panic!("not redshift") };
        assert_eq!((t.auth, t.part_rows), (RedshiftAuthKind::Password, 100_000));
        let e = parse(&format!("{rs}\nauth = \"cluster\"")).unwrap_err();
        assert!(e.contains("cluster_identifier"), "{e}");
        // Each login kind carries exactly its fields, taken from the config once.
        use crate::warehouse::redshift::RedshiftAuth;
        let c = parse(&format!("{rs}\nauth = \"cluster\"\ncluster_identifier = \"c1\"\ndb_user = \"app\""))
            .unwrap();
        let TargetConfig::Redshift(t) = &c.target else { panic!("not redshift") };
        assert!(matches!(
            t.wire_auth(),
            Ok(RedshiftAuth::Cluster { cluster_identifier, db_user, auto_create: false })
                if cluster_identifier == "c1" && db_user == "app"
        ));
        let c = parse(&format!("{rs}\nauth = \"serverless\"\nworkgroup = \"w\"")).unwrap();
        let TargetConfig::Redshift(t) = &c.target else { panic!("not redshift") };
        assert!(matches!(t.wire_auth(), Ok(RedshiftAuth::Serverless { workgroup }) if workgroup == "w"));
        let e = parse(&format!("{rs}\nauth = \"serverless\"")).unwrap_err();
        assert!(e.contains("workgroup"), "{e}");
        let e = parse(&rs.replace("s3://stage-bucket/dynashift/", "stage-bucket")).unwrap_err();
        assert!(e.contains("target.s3_staging"), "{e}");
        let e = parse(&rs.replace("arn:aws:iam::1:role/copy", "role\\\\x")).unwrap_err();
        assert!(e.contains("copy_role"), "{e}");
    }

    #[test]
    fn redshift_data_api_target() {
        let rs = MIN.replace(
            "kind = \"duckdb\"\npath = \"q.duckdb\"",
            "kind = \"redshift\"\nconnection = \"data-api\"\ndatabase = \"dev\"\n\
             workgroup = \"analytics\"\n\
             s3_staging = \"s3://stage-bucket/dynashift/\"\ncopy_role = \"arn:aws:iam::1:role/copy\"",
        );
        let c = parse(&rs).unwrap();
        let TargetConfig::Redshift(t) = &c.target else { panic!("not redshift") };
        assert_eq!((t.connection, t.statement_timeout_secs), (RedshiftConnection::DataApi, 900));
        let e = parse(&rs.replace("database = \"dev\"\n", "")).unwrap_err();
        assert!(e.contains("needs `database`"), "{e}");
        let e = parse(&rs.replace("workgroup = \"analytics\"", "cluster_identifier = \"c\"")).unwrap_err();
        assert!(e.contains("db_user") && e.contains("secret_arn"), "{e}");
        let ok = rs.replace("workgroup = \"analytics\"", "cluster_identifier = \"c\"\ndb_user = \"app\"");
        assert!(parse(&ok).is_ok());
        let e = parse(&rs.replace("workgroup = \"analytics\"", "")).unwrap_err();
        assert!(e.contains("cluster_identifier") && e.contains("workgroup"), "{e}");
        let e = parse(&format!("{rs}\nurl = \"host=h\"")).unwrap_err();
        assert!(e.contains("target.url is for connection = \"wire\""), "{e}");
        let e = parse(&rs.replace("data-api", "http")).unwrap_err();
        assert!(e.contains("http"), "{e}");
    }

    #[test]
    fn postgres_target() {
        let pg = MIN.replace(
            "kind = \"duckdb\"\npath = \"q.duckdb\"",
            "kind = \"postgres\"\nurl = \"postgres://app@db.example:5433/warehouse\"",
        );
        let c = parse(&pg).unwrap();
        let TargetConfig::Postgres(t) = &c.target else { panic!("not postgres") };
        assert_eq!((t.password_env.as_str(), c.target.schema()), ("PGPASSWORD", "dynamodb"));
        let e = parse(&pg.replace("postgres://app@db.example:5433/warehouse", "postgres://a@h:notaport/x"))
            .unwrap_err();
        assert!(e.contains("target.url"), "{e}");
        let e = parse(&pg.replace("url =", "uri =")).unwrap_err();
        assert!(e.contains("uri"), "{e}");
    }
}
