//! `[target]`: the warehouse, as typed settings ready to open it.

use std::path::PathBuf;
use std::time::Duration;

use super::raw::{
    RawDuckDbTarget, RawPostgresTarget, RawRedshiftAuth, RawRedshiftConnection, RawRedshiftTarget, RawTarget,
};
use super::InvalidSetting;
use crate::aws::AwsSettings;
use crate::size::valid_size;
use crate::warehouse::data_api::{DataApiOptions, DataApiTarget};
use crate::warehouse::postgres::PgSettings;
use crate::warehouse::redshift::{RedshiftAuth, RedshiftOptions};
use crate::warehouse::s3_stage::S3Location;

#[derive(Debug, Clone)]
pub enum TargetConfig {
    Duckdb(DuckDbTargetConfig),
    Postgres(Box<PgSettings>),
    Redshift(Box<RedshiftTargetConfig>),
}

#[derive(Debug, Clone)]
pub struct DuckDbTargetConfig {
    pub path: PathBuf,
    pub schema: String,
    /// DuckDB's own memory budget as set (a size DuckDB reads, checked); unset, a quarter of
    /// the memory budget (`Config::duckdb_memory_limit`).
    pub memory_limit: Option<String>,
}

/// How dynashift reaches Redshift, each way with exactly what it needs.
#[derive(Debug, Clone)]
pub enum RedshiftTargetConfig {
    /// The PostgreSQL wire protocol to the cluster's endpoint.
    Wire { settings: PgSettings, options: RedshiftOptions },
    /// The Redshift Data API over HTTPS.
    DataApi(DataApiOptions),
}

impl TargetConfig {
    /// The share of the memory budget that held changes get when `max_batch_memory` is
    /// unset: the embedded DuckDB's own buffers share the process, so it gets a quarter;
    /// with a server warehouse the process holds only batches, which get half (larger ones
    /// fold more changes to a key into one row).
    pub fn batch_memory_divisor(&self) -> u64 {
        if self.is_embedded() {
            4
        } else {
            2
        }
    }

    pub fn is_redshift(&self) -> bool {
        matches!(self, TargetConfig::Redshift(_))
    }

    /// Whether the warehouse runs inside this process (DuckDB) rather than on a server.
    pub fn is_embedded(&self) -> bool {
        matches!(self, TargetConfig::Duckdb(_))
    }

    /// A Redshift target's connection and login, for a `redshift-mv` source without a `url`
    /// of its own.
    pub fn lent_connection(&self) -> Option<super::source::LentConnection> {
        use super::source::{LentConnection, TargetLogin};
        let TargetConfig::Redshift(t) = self else { return None };
        Some(match t.as_ref() {
            RedshiftTargetConfig::Wire { settings, options } => LentConnection::Wire(TargetLogin {
                settings: settings.clone(),
                auth: options.auth.clone(),
                aws: options.aws.clone(),
            }),
            RedshiftTargetConfig::DataApi(options) => LentConnection::DataApi(options.clone()),
        })
    }

    /// The SQL dialect the target speaks.
    pub fn dialect(&self) -> &'static dyn dynashift_core::dialect::Dialect {
        match self {
            TargetConfig::Duckdb(_) => &dynashift_core::dialect::DuckDb,
            TargetConfig::Postgres(_) => &dynashift_core::dialect::Postgres,
            TargetConfig::Redshift(_) => &dynashift_core::dialect::Redshift,
        }
    }

    /// Schema of the replicated tables.
    pub fn schema(&self) -> &str {
        match self {
            TargetConfig::Duckdb(t) => &t.schema,
            TargetConfig::Postgres(settings) => &settings.schema,
            TargetConfig::Redshift(t) => match t.as_ref() {
                RedshiftTargetConfig::Wire { settings, .. } => &settings.schema,
                RedshiftTargetConfig::DataApi(options) => &options.target.schema,
            },
        }
    }
}

impl TryFrom<RawTarget> for TargetConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawTarget) -> Result<TargetConfig, InvalidSetting> {
        Ok(match raw {
            RawTarget::Duckdb(t) => TargetConfig::Duckdb(t.try_into()?),
            RawTarget::Postgres(t) => TargetConfig::Postgres(Box::new(t.try_into()?)),
            RawTarget::Redshift(t) => TargetConfig::Redshift(Box::new((*t).try_into()?)),
        })
    }
}

impl TryFrom<RawDuckDbTarget> for DuckDbTargetConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawDuckDbTarget) -> Result<DuckDbTargetConfig, InvalidSetting> {
        if let Some(limit) = raw.memory_limit.as_deref().filter(|l| !valid_size(l)) {
            return Err(InvalidSetting::value(
                "target.memory_limit",
                format!("`{limit}` is not a size such as \"256MB\""),
            ));
        }
        Ok(DuckDbTargetConfig { path: raw.path, schema: raw.schema, memory_limit: raw.memory_limit })
    }
}

fn connection(
    url: &str,
    password_env: &str,
    schema: &str,
    ca_file: Option<PathBuf>,
) -> Result<PgSettings, InvalidSetting> {
    let mut settings =
        PgSettings::parse(url, password_env, schema).map_err(|e| InvalidSetting::parse("target.url", e))?;
    settings.ca_file = ca_file;
    Ok(settings)
}

impl TryFrom<RawPostgresTarget> for PgSettings {
    type Error = InvalidSetting;

    fn try_from(raw: RawPostgresTarget) -> Result<PgSettings, InvalidSetting> {
        connection(&raw.url, &raw.password_env, &raw.schema, raw.ca_file)
    }
}

/// How a wire connection logs in, each kind with exactly the fields it needs.
fn wire_auth(raw: &RawRedshiftTarget) -> Result<RedshiftAuth, InvalidSetting> {
    match (raw.auth, &raw.cluster_identifier, &raw.db_user, &raw.workgroup) {
        (RawRedshiftAuth::Password, ..) => Ok(RedshiftAuth::Password),
        (RawRedshiftAuth::Cluster, Some(cluster), Some(user), _) => Ok(RedshiftAuth::Cluster {
            cluster_identifier: cluster.clone(),
            db_user: user.clone(),
            auto_create: raw.auto_create_user,
        }),
        (RawRedshiftAuth::Cluster, ..) => {
            Err(InvalidSetting::value("target.auth", "\"cluster\" needs cluster_identifier and db_user"))
        }
        (RawRedshiftAuth::Serverless, _, _, Some(workgroup)) => {
            Ok(RedshiftAuth::Serverless { workgroup: workgroup.clone() })
        }
        (RawRedshiftAuth::Serverless, ..) => {
            Err(InvalidSetting::value("target.auth", "\"serverless\" needs workgroup"))
        }
    }
}

/// Where the Data API runs statements, and as whom.
fn data_api_target(raw: &RawRedshiftTarget) -> Result<DataApiTarget, InvalidSetting> {
    let needs = |problem: &str| Err(InvalidSetting::value("target", problem));
    let Some(database) = raw.database.clone() else {
        return needs("connection = \"data-api\" needs `database`");
    };
    if !raw.url.is_empty() {
        return Err(InvalidSetting::value(
            "target.url",
            "is for connection = \"wire\"; the Data API takes `database` and `cluster_identifier` or `workgroup`",
        ));
    }
    match (&raw.cluster_identifier, &raw.workgroup) {
        (Some(_), Some(_)) => return needs("set `cluster_identifier` or `workgroup`, not both"),
        (None, None) => {
            return needs(
                "connection = \"data-api\" needs `cluster_identifier` (a provisioned cluster) or \
                 `workgroup` (Redshift Serverless)",
            )
        }
        (Some(_), None) if raw.db_user.is_none() && raw.secret_arn.is_none() => {
            return needs(
                "connection = \"data-api\" with a cluster needs `db_user` (temporary credentials) or \
                 `secret_arn`",
            )
        }
        _ => {}
    }
    Ok(DataApiTarget {
        database,
        cluster_identifier: raw.cluster_identifier.clone(),
        workgroup: raw.workgroup.clone(),
        db_user: raw.db_user.clone(),
        secret_arn: raw.secret_arn.clone(),
        schema: raw.schema.clone(),
        statement_timeout: Duration::from_secs(raw.statement_timeout_secs.max(1)),
    })
}

impl TryFrom<RawRedshiftTarget> for RedshiftTargetConfig {
    type Error = InvalidSetting;

    fn try_from(raw: RawRedshiftTarget) -> Result<RedshiftTargetConfig, InvalidSetting> {
        let staging =
            S3Location::parse(&raw.s3_staging).map_err(|e| InvalidSetting::parse("target.s3_staging", e))?;
        dynashift_core::literal::string_literal("target.copy_role", &raw.copy_role)
            .map_err(|e| InvalidSetting::parse("target.copy_role", e))?;
        if !raw.copy_role.starts_with("arn:") {
            return Err(InvalidSetting::value(
                "target.copy_role",
                format!("`{}` is not an IAM role ARN", raw.copy_role),
            ));
        }
        if raw.part_rows == 0 {
            return Err(InvalidSetting::value("target.part_rows", "must be at least 1"));
        }
        let aws = AwsSettings::from_config(&raw.region, &raw.endpoint_url, &raw.profile);
        Ok(match raw.connection {
            RawRedshiftConnection::Wire => RedshiftTargetConfig::Wire {
                settings: connection(&raw.url, &raw.password_env, &raw.schema, raw.ca_file.clone())?,
                options: RedshiftOptions {
                    auth: wire_auth(&raw)?,
                    aws,
                    staging,
                    copy_role: raw.copy_role,
                    s3_region: raw.s3_region,
                    part_rows: raw.part_rows,
                },
            },
            RawRedshiftConnection::DataApi => RedshiftTargetConfig::DataApi(DataApiOptions {
                target: data_api_target(&raw)?,
                aws,
                data_api_endpoint_url: raw.data_api_endpoint_url,
                staging,
                copy_role: raw.copy_role,
                s3_region: raw.s3_region,
                part_rows: raw.part_rows,
            }),
        })
    }
}
