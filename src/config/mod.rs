//! The TOML configuration: deserialized into raw sections (`raw`), converted once with
//! `TryFrom` into typed settings (`source`, `target`, `defaults`), then only used. A setting
//! that cannot be used is refused at load time, naming its key and the file.

mod defaults;
mod monitoring;
mod raw;
mod schedule;
mod source;
mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dynashift_core::plan::TableOptions;

use crate::text::one_line;

pub use self::defaults::{Defaults, TableFilter, DEFAULT_MEMORY};
pub use self::monitoring::{parse_listen_address, Monitoring};
pub use self::raw::TableOverride;
pub use self::schedule::Schedules;
pub use self::source::{
    ExportSourceConfig, FileSourceConfig, KinesisSourceConfig, LentConnection, MvSourceConfig,
    ScanSourceConfig, SourceConfig, StreamReading, StreamsSourceConfig,
};
pub use self::target::{DuckDbTargetConfig, RedshiftTargetConfig, TargetConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {}", one_line(error))]
    Syntax { path: PathBuf, error: toml::de::Error },
    #[error("config file {path}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: InvalidSetting,
    },
}

/// A setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum InvalidSetting {
    /// The value is wrong, for the reason given.
    #[error("{key}: {problem}")]
    Value { key: &'static str, problem: String },
    /// The value does not parse; the parser says why.
    #[error("{key}")]
    Parse {
        key: &'static str,
        #[source]
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl InvalidSetting {
    pub fn value(key: &'static str, problem: impl Into<String>) -> InvalidSetting {
        InvalidSetting::Value { key, problem: problem.into() }
    }

    pub fn parse(key: &'static str, cause: impl std::error::Error + Send + Sync + 'static) -> InvalidSetting {
        InvalidSetting::Parse { key, cause: Box::new(cause) }
    }
}

/// The whole configuration, typed.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceConfig,
    pub target: TargetConfig,
    pub defaults: Defaults,
    pub tables: BTreeMap<String, TableOverride>,
    pub schedules: Schedules,
    pub monitoring: Monitoring,
}

impl TryFrom<raw::RawConfig> for Config {
    type Error = InvalidSetting;

    fn try_from(raw: raw::RawConfig) -> Result<Config, InvalidSetting> {
        let schedules = schedule::schedules(&raw.defaults, &raw.tables, &raw.schedule)?;
        let monitoring = Monitoring::try_from(&raw.monitoring)?;
        let target: TargetConfig = raw.target.try_into()?;
        let mut source: SourceConfig = raw.source.try_into()?;
        if let SourceConfig::RedshiftMv(mv) = &mut source {
            if mv.url.is_none() {
                mv.target_login = Some(Box::new(target.lent_connection().ok_or_else(|| {
                    InvalidSetting::value(
                        "source.url",
                        "give the view's server: only a Redshift target lends its connection",
                    )
                })?));
            }
        }
        Ok(Config {
            monitoring,
            source,
            target,
            defaults: raw.defaults.try_into()?,
            tables: raw.tables,
            schedules,
        })
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|error| ConfigError::Syntax { path: path.to_path_buf(), error })?;
        Config::try_from(raw).map_err(|source| ConfigError::Invalid { path: path.to_path_buf(), source })
    }

    /// Records a batch folds at most (never fewer than `batch_size`). The embedded DuckDB
    /// takes whatever fits `max_batch_memory`: one transaction of millions of records costs
    /// it nothing, and each batch fewer is a rewrite of the keys they share saved.
    pub fn max_batch_records(&self) -> usize {
        let default = if self.target.is_embedded() { 10_000_000 } else { 500_000 };
        self.defaults.max_batch_records.unwrap_or(default).max(self.defaults.batch_size)
    }

    /// `defaults.memory` in bytes: 512 MB unless set. Its parts, when not set themselves:
    /// held changes a quarter with DuckDB, half with a server warehouse; DuckDB's own memory a
    /// quarter; each file read a thirty-second; each round of stream reads an eighth. The rest
    /// is the planned batch being applied, its staging, and the process itself.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.defaults.memory
    }

    /// `defaults.max_batch_memory` in bytes, or its share of the memory budget when unset.
    pub fn max_batch_memory_bytes(&self) -> usize {
        let bytes = self
            .defaults
            .max_batch_memory
            .unwrap_or(self.memory_budget_bytes() / self.target.batch_memory_divisor());
        bytes.min(usize::MAX as u64) as usize
    }

    /// The bounds of the run loop (`flow::Flow`). The batch being gathered (or planned and
    /// waiting) and the batch being applied (as planned rows, about 1.5 times its held
    /// changes) share half the budget with DuckDB, three quarters with a server warehouse,
    /// and never less than one batch's held changes.
    pub fn flow_limits(&self, max_batches: Option<u64>) -> crate::flow::FlowLimits {
        let batch_bytes = self.max_batch_memory_bytes();
        let share = if self.target.is_embedded() {
            self.memory_budget_bytes() / 2
        } else {
            self.memory_budget_bytes() / 4 * 3
        };
        crate::flow::FlowLimits {
            batch_records: self.max_batch_records() as u64,
            batch_bytes,
            total_bytes: (share.min(usize::MAX as u64) as usize).max(batch_bytes),
            max_batches,
            spill_bytes: self.spill_bytes(),
        }
    }

    /// Bytes of held changes a backlog may put on disk: `defaults.spill`; unset, 4 GB beside a
    /// DuckDB file or in a `spill_dir` that is set, and none otherwise (the system's temporary
    /// directory is often memory).
    pub fn spill_bytes(&self) -> u64 {
        match self.defaults.spill {
            Some(bytes) => bytes,
            None if self.duckdb_file_dir().is_some() || self.defaults.spill_dir.is_some() => {
                defaults::DEFAULT_SPILL
            }
            None => 0,
        }
    }

    /// Where a backlog's held changes go on disk: `defaults.spill_dir`, else beside the DuckDB
    /// file, else the system's temporary directory.
    pub fn spill_dir(&self) -> std::path::PathBuf {
        let set = self.defaults.spill_dir.clone();
        set.or_else(|| self.duckdb_file_dir()).unwrap_or_else(std::env::temp_dir)
    }

    /// The directory of the DuckDB file written to, if the target is one (not `:memory:`).
    fn duckdb_file_dir(&self) -> Option<std::path::PathBuf> {
        match &self.target {
            TargetConfig::Duckdb(DuckDbTargetConfig { path, .. }) if path.as_os_str() != ":memory:" => Some(
                path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
            ),
            _ => None,
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
        self.defaults.tables.includes(table)
    }

    /// Key attribute names given per table (to load DynamoDB export lines).
    pub fn key_attributes(&self) -> std::collections::HashMap<String, Vec<String>> {
        self.tables.iter().filter_map(|(t, o)| o.keys.clone().map(|k| (t.clone(), k))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::valid_size;
    use crate::warehouse::redshift::RedshiftAuth;
    use dynashift_core::plan::DeleteMode;
    use dynashift_core::types::ColumnMode;

    /// The error as the command line prints it: each cause once, outermost first.
    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("x.toml")).map_err(|e| format!("{:#}", anyhow::Error::from(e)))
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
        let wire = |toml: &str| match parse(toml).unwrap().target {
            TargetConfig::Redshift(t) => match *t {
                RedshiftTargetConfig::Wire { settings, options } => (settings, options),
                RedshiftTargetConfig::DataApi(_) => panic!("not wire"),
            },
            _ => panic!("not redshift"),
        };
        let (settings, options) = wire(&rs);
        assert!(matches!(options.auth, RedshiftAuth::Password));
        assert_eq!((options.part_rows, options.staging.bucket.as_str()), (100_000, "stage-bucket"));
        assert_eq!(settings.config.get_dbname(), Some("dev"));
        let e = parse(&format!("{rs}\nauth = \"cluster\"")).unwrap_err();
        assert!(e.contains("cluster_identifier"), "{e}");
        // Each login kind carries exactly its fields, taken from the config once.
        let (_, options) =
            wire(&format!("{rs}\nauth = \"cluster\"\ncluster_identifier = \"c1\"\ndb_user = \"app\""));
        assert!(matches!(
            options.auth,
            RedshiftAuth::Cluster { cluster_identifier, db_user, auto_create: false }
                if cluster_identifier == "c1" && db_user == "app"
        ));
        let (_, options) = wire(&format!("{rs}\nauth = \"serverless\"\nworkgroup = \"w\""));
        assert!(matches!(options.auth, RedshiftAuth::Serverless { workgroup } if workgroup == "w"));
        let e = parse(&format!("{rs}\nauth = \"serverless\"")).unwrap_err();
        assert!(e.contains("workgroup"), "{e}");
        let e = parse(&rs.replace("s3://stage-bucket/dynashift/", "stage-bucket")).unwrap_err();
        assert!(e.contains("target.s3_staging: `stage-bucket` is not an s3:// URL"), "{e}");
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
        let RedshiftTargetConfig::DataApi(options) = t.as_ref() else { panic!("not the Data API") };
        assert_eq!(options.target.statement_timeout, std::time::Duration::from_secs(900));
        assert_eq!((options.target.workgroup.as_deref(), c.target.schema()), (Some("analytics"), "dynamodb"));
        let e = parse(&rs.replace("database = \"dev\"\n", "")).unwrap_err();
        assert!(e.contains("needs `database`"), "{e}");
        let e = parse(&rs.replace("workgroup = \"analytics\"", "cluster_identifier = \"c\"")).unwrap_err();
        assert!(e.contains("db_user") && e.contains("secret_arn"), "{e}");
        let ok = rs.replace("workgroup = \"analytics\"", "cluster_identifier = \"c\"\ndb_user = \"app\"");
        assert!(parse(&ok).is_ok());
        let e = parse(&rs.replace("workgroup = \"analytics\"", "")).unwrap_err();
        assert!(e.contains("cluster_identifier") && e.contains("workgroup"), "{e}");
        let e = parse(&format!("{rs}\nurl = \"host=h\"")).unwrap_err();
        assert!(e.contains("target.url: is for connection = \"wire\""), "{e}");
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
        let TargetConfig::Postgres(settings) = &c.target else { panic!("not postgres") };
        assert_eq!((settings.config.get_ports(), c.target.schema()), (&[5433][..], "dynamodb"));
        let e = parse(&pg.replace("postgres://app@db.example:5433/warehouse", "postgres://a@h:notaport/x"))
            .unwrap_err();
        // Each cause once: the file, the key, the parser's reason.
        assert!(e.starts_with("config file x.toml: target.url: not a PostgreSQL connection string: "), "{e}");
        assert_eq!(e.matches("not a PostgreSQL").count(), 1, "{e}");
        let e = parse(&pg.replace("url =", "uri =")).unwrap_err();
        assert!(e.contains("uri"), "{e}");
    }
}
