//! The PostgreSQL warehouse: staging through binary `COPY … FROM STDIN`, apply in SQL, one
//! transaction per batch. The driver is async (`tokio-postgres`); this adapter owns a small
//! runtime and presents the same blocking `Warehouse` interface as the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dynashift_core::cells::CellRef;
use dynashift_core::dialect::{Dialect, Postgres, Redshift};
use dynashift_core::schema::Catalog;
use dynashift_core::sql::{
    applied_counts_query, counters_update, AppliedCounts, Layout, Param, StageControl,
};
use dynashift_core::types::ColumnType;
use dynashift_core::Position;
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};

use super::pg_bind::{stage_type, Bound, Value};
#[cfg(feature = "test-support")]
use super::pg_data_api::{apply_as_calls, DataApiOnPostgres};
use super::pg_nul::storable;
use super::pg_sql::{is_transient, pg_message, query_error, run_sql};
use super::redshift::{temporary_credentials, RedshiftAuth, RedshiftOptions, S3Loading, StagedBatch};
use super::registry::{self, Field, Query};
use super::s3_stage::S3Stager;
use super::steps::{batch_steps, describe_transaction, reject_statement, Step, STAGE};
use super::{Batch, Outcome, Reject, Status, Warehouse, WarehouseError};
use crate::aws::{s3_client, sdk_config};
use crate::text::short_sql;

/// Where and how to connect; built from the `[target]` section.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub config: tokio_postgres::Config,
    /// Extra trusted root certificates (PEM), beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
    pub schema: String,
}

/// A connection string that neither URL nor `key=value` parsing accepts.
#[derive(Debug, thiserror::Error)]
#[error("not a PostgreSQL connection string")]
pub struct InvalidConnectionString(#[source] pub tokio_postgres::Error);

impl PgSettings {
    /// Parses a `postgres://…` URL or a libpq `key=value` string. A password missing from
    /// it is taken from the environment variable `password_env`, if set.
    pub fn parse(url: &str, password_env: &str, schema: &str) -> Result<PgSettings, InvalidConnectionString> {
        let mut config: tokio_postgres::Config = url.parse().map_err(InvalidConnectionString)?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var(password_env) {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("dynashift");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(PgSettings { config, ca_file: None, schema: schema.to_string() })
    }

    /// `host:port/dbname`, for messages: never the password.
    pub fn describe(&self) -> String {
        let host = self
            .config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("PostgreSQL at {host}:{port}/{}", self.config.get_dbname().unwrap_or("(default database)"))
    }
}

pub struct PostgresWarehouse {
    /// PostgreSQL's own, or another that PostgreSQL runs (tests run Redshift's apply here).
    dialect: &'static dyn Dialect,
    runtime: tokio::runtime::Runtime,
    settings: PgSettings,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Option<Client>,
    layout: Layout,
    /// Redshift: temporary credentials fetched for every connection.
    auth: Option<(RedshiftAuth, aws_config::SdkConfig)>,
    /// Redshift: bulk loading through S3 instead of `COPY … FROM STDIN`.
    loading: Option<S3Loading>,
    /// Batches run as the Redshift Data API runs them (tests; see `pg_data_api`).
    #[cfg(feature = "test-support")]
    data_api: Option<DataApiOnPostgres>,
    batches: u64,
}

fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, WarehouseError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot parse is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
            WarehouseError::Open { what: format!("CA file {}", path.display()), message: e.to_string() }
        })?;
        for cert in certs {
            let cert = cert.map_err(|e| WarehouseError::Open {
                what: format!("CA file {}", path.display()),
                message: e.to_string(),
            })?;
            roots.add(cert).map_err(|e| WarehouseError::Open {
                what: format!("CA file {}", path.display()),
                message: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WarehouseError::Open { what: "TLS settings".into(), message: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PostgresWarehouse {
    /// Prepares the warehouse; the connection is made on first use (and again after a loss).
    pub fn open(settings: PgSettings) -> Result<PostgresWarehouse, WarehouseError> {
        PostgresWarehouse::open_with_dialect(settings, &Postgres)
    }

    /// Like `open`, planning with `dialect`, which must produce SQL PostgreSQL runs.
    pub fn open_with_dialect(
        settings: PgSettings,
        dialect: &'static dyn Dialect,
    ) -> Result<PostgresWarehouse, WarehouseError> {
        let runtime = crate::runtime::background("dynashift-postgres").map_err(|e| WarehouseError::Open {
            what: "the PostgreSQL runtime".into(),
            message: e.to_string(),
        })?;
        let tls = tls_connector(settings.ca_file.as_deref())?;
        let layout = Layout { target_schema: settings.schema.clone(), ..Layout::default() };
        Ok(PostgresWarehouse {
            dialect,
            runtime,
            settings,
            tls,
            client: None,
            layout,
            auth: None,
            loading: None,
            #[cfg(feature = "test-support")]
            data_api: None,
            batches: 0,
        })
    }

    fn client(&mut self) -> Result<&mut Client, WarehouseError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(self.connect()?);
        }
        self.client.as_mut().ok_or_else(unreachable_client)
    }

    /// A Redshift warehouse over the PostgreSQL wire protocol, loading through S3. The AWS
    /// clients are built on this warehouse's runtime, where they are used.
    pub fn open_redshift(
        settings: PgSettings,
        options: RedshiftOptions,
    ) -> Result<PostgresWarehouse, WarehouseError> {
        let mut w = PostgresWarehouse::open_with_dialect(settings, &Redshift)?;
        let sdk = w.runtime.block_on(sdk_config(&options.aws));
        w.loading = Some(S3Loading {
            stager: S3Stager::new(s3_client(&sdk, &options.aws), options.staging),
            copy_role: options.copy_role,
            s3_region: options.s3_region,
            part_rows: options.part_rows,
        });
        w.auth = Some((options.auth, sdk));
        Ok(w)
    }

    /// Runs batches as the Redshift Data API would: packed into calls of literal-only SQL,
    /// each its own transaction (see `pg_data_api`).
    #[cfg(feature = "test-support")]
    pub fn as_data_api(mut self, mode: DataApiOnPostgres) -> PostgresWarehouse {
        self.data_api = Some(mode);
        self
    }

    /// Runs one batch on the connection as one transaction (tests: or as Data API calls).
    fn run_batch(
        &mut self,
        handle: &tokio::runtime::Handle,
        layout: &Layout,
        batch: &Batch,
        s3: Option<(&S3Loading, &StagedBatch)>,
    ) -> Result<Outcome, WarehouseError> {
        let dialect = self.dialect;
        #[cfg(feature = "test-support")]
        if let Some(mut mode) = self.data_api.take() {
            let result = self.client().and_then(|client| {
                handle.block_on(apply_as_calls(dialect, client, layout, batch, &mut mode))
            });
            self.data_api = Some(mode);
            return result;
        }
        let client = self.client()?;
        handle.block_on(apply_batch(dialect, client, layout, batch, s3))
    }

    fn connect(&mut self) -> Result<Client, WarehouseError> {
        let mut what = self.settings.describe();
        if self.dialect.name() == "redshift" {
            what = what.replacen("PostgreSQL", "Redshift", 1);
        }
        let mut config = self.settings.config.clone();
        if let Some((auth, sdk)) = &self.auth {
            let credentials = self.runtime.block_on(temporary_credentials(auth, sdk, config.get_dbname()))?;
            if let Some((user, password)) = credentials {
                config.user(user);
                config.password(password);
            }
        }
        let connect = config.connect(self.tls.clone());
        let (client, connection) = self.runtime.block_on(connect).map_err(|e| {
            let message = pg_message(&e);
            if is_transient(&e) || e.code().is_none() {
                WarehouseError::Unavailable { context: format!("cannot connect to {what}"), message }
            } else {
                WarehouseError::Open { what, message }
            }
        })?;
        self.runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Runs `sql` and returns its rows as text (NULL as `None`): for tools and tests.
    pub fn query_text(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        let rows = self.rows(sql, &[])?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|f| match f {
                        Field::Null => None,
                        Field::Text(s) => Some(s),
                        Field::Int(n) => Some(n.to_string()),
                        Field::Bool(b) => Some(b.to_string()),
                    })
                    .collect()
            })
            .collect())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The server process of the current session (for fault tests).
    pub fn backend_pid(&mut self) -> Result<i64, WarehouseError> {
        match self.rows("SELECT CAST(pg_backend_pid() AS BIGINT)", &[])?.pop().and_then(|mut r| r.pop()) {
            Some(Field::Int(pid)) => Ok(pid),
            _ => Err(WarehouseError::Corrupt("pg_backend_pid() returned no number".into())),
        }
    }
}

fn unreachable_client() -> WarehouseError {
    WarehouseError::Corrupt("connection vanished".into())
}

/// Loads plan `index`'s rows; returns the rejects recording values PostgreSQL could not
/// store exactly (see `pg_nul`).
async fn load_stage(
    d: &dyn Dialect,
    tx: &Transaction<'_>,
    batch: &Batch,
    index: usize,
    columns: &[(String, &'static str)],
) -> Result<Vec<Reject>, WarehouseError> {
    run_sql(tx, &d.create_stage(STAGE, columns), &[]).await?;
    let names: Vec<String> = columns.iter().map(|(n, _)| d.quote(n)).collect();
    let copy = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", d.quote(STAGE), names.join(", "));
    let types: Vec<Type> = columns.iter().map(|(_, t)| stage_type(t)).collect();
    let sink = tx.copy_in(copy.as_str()).await.map_err(|e| query_error("starting COPY into the stage", e))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let plan = &batch.tables[index];
    let schema = batch.catalog.tables.get(&plan.source_table);
    let column = |i: usize| schema.map(|s| &s.columns[plan.staged[i]]);
    let is_json: Vec<bool> =
        (0..plan.staged.len()).map(|i| column(i).is_some_and(|c| c.ty == ColumnType::Json)).collect();
    let mut rejects = Vec::new();
    for row in &plan.rows {
        let replaced: Vec<Option<String>> = row
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                CellRef::Text(s) => storable(s, is_json[i]),
                _ => None,
            })
            .collect();
        for ((i, fixed), cell) in replaced.iter().enumerate().zip(row.cells.iter()) {
            if let (Some(_), CellRef::Text(original)) = (fixed, cell) {
                let name = column(i).map_or("?", |c| c.name.as_str());
                rejects.push(Reject {
                    position: Position::new("(unstorable value)", "0"),
                    table: Some(plan.source_table.clone()),
                    reason: format!(
                        "value of column `{name}` of key {} contains U+0000, which PostgreSQL cannot store: \
                         stored with U+FFFD in its place; the original value is kept here",
                        row.key_text
                    ),
                    raw: original.as_bytes().to_vec(),
                });
            }
        }
        let sequence = row.version.padded().to_string();
        let mut values: Vec<Bound> = Vec::with_capacity(columns.len());
        values.extend(StageControl::ALL.iter().map(|control| {
            Bound(match control {
                StageControl::Key => Value::Text(&row.key_text),
                StageControl::Version => Value::Int(row.version.micros),
                StageControl::Sequence => Value::Text(&sequence),
                StageControl::Event => Value::Text(row.event.as_str()),
                StageControl::Op => Value::Text(row.op.code()),
                StageControl::Deleted => Value::Bool(row.deleted),
                StageControl::EventIds => row.event_ids.as_deref().map_or(Value::Null, Value::Text),
            })
        }));
        for (cell, fixed) in row.cells.iter().zip(&replaced) {
            values.push(match fixed {
                Some(text) => Bound(Value::Text(text)),
                None => Bound::from(cell),
            });
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&refs).await.map_err(|e| query_error("staging rows", e))?;
    }
    writer.finish().await.map_err(|e| query_error("staging rows", e))?;
    Ok(rejects)
}

async fn apply_batch(
    d: &dyn Dialect,
    client: &mut Client,
    layout: &Layout,
    batch: &Batch,
    s3: Option<(&S3Loading, &StagedBatch)>,
) -> Result<Outcome, WarehouseError> {
    let tx = client.transaction().await.map_err(|e| query_error("starting a transaction", e))?;
    let mut outcome = Outcome::default();
    let mut unstorable = Vec::new();
    for step in batch_steps(d, layout, batch) {
        match step {
            Step::Sql(s) | Step::Schema(s) => {
                run_sql(&tx, &s.sql, &s.params).await?;
            }
            Step::Together(statements) => {
                for s in statements {
                    run_sql(&tx, &s.sql, &s.params).await?;
                }
            }
            Step::LoadStage { index, columns } => match s3 {
                Some((loading, staged)) => {
                    run_sql(&tx, &d.create_stage(STAGE, &columns), &[]).await?;
                    run_sql(&tx, &loading.copy_statement(staged, index, STAGE, &columns)?, &[]).await?;
                }
                None => unstorable.extend(load_stage(d, &tx, batch, index, &columns).await?),
            },
            Step::CountApplied { index } => {
                let plan = &batch.tables[index];
                let row = tx
                    .query_one(applied_counts_query(d, STAGE).as_str(), &[])
                    .await
                    .map_err(|e| query_error("counting applied changes", e))?;
                let get = |i: usize| -> Result<i64, WarehouseError> {
                    row.try_get::<_, i64>(i).map_err(|e| query_error("counting applied changes", e))
                };
                let counts = AppliedCounts {
                    changes: get(0)?,
                    deletes: get(1)?,
                    expired: get(2)?,
                    newest_version: get(3)?,
                };
                let s = counters_update(d, layout, &plan.source_table, counts, plan.expired_kept);
                run_sql(&tx, &s.sql, &s.params).await?;
                *outcome.applied.entry(plan.source_table.clone()).or_default() += counts.changes as u64;
            }
        }
    }
    let staged_rejects = s3.map(|(_, staged)| staged.rejects.as_slice()).unwrap_or_default();
    for r in staged_rejects.iter().chain(&unstorable) {
        let s = reject_statement(d, layout, &batch.source, r);
        run_sql(&tx, &s.sql, &s.params).await?;
    }
    tx.commit().await.map_err(|e| query_error("committing the batch", e))?;
    Ok(outcome)
}

fn field(row: &tokio_postgres::Row, i: usize) -> Result<Field, tokio_postgres::Error> {
    Ok(match *row.columns()[i].type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Field::Null, Field::Int),
        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map_or(Field::Null, |n| Field::Int(n.into())),
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map_or(Field::Null, Field::Bool),
        _ => row.try_get::<_, Option<String>>(i)?.map_or(Field::Null, Field::Text),
    })
}

impl Query for PostgresWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        self.dialect
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Field>>, WarehouseError> {
        let bound: Vec<Bound> = params.iter().map(Bound::from).collect();
        let runtime_handle = self.runtime.handle().clone();
        let client = self.client()?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let rows =
            runtime_handle.block_on(client.query(sql, &refs)).map_err(|e| query_error(short_sql(sql), e))?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| field(r, i)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| query_error(short_sql(sql), e))
    }

    fn execute(&mut self, sql: &str) -> Result<(), WarehouseError> {
        let runtime_handle = self.runtime.handle().clone();
        let client = self.client()?;
        runtime_handle.block_on(client.execute(sql, &[])).map_err(|e| query_error(short_sql(sql), e))?;
        Ok(())
    }
}

impl Warehouse for PostgresWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        self.dialect
    }

    fn is_set_up(&mut self) -> Result<bool, WarehouseError> {
        super::registry::control_tables_exist(self)
    }

    fn setup(&mut self) -> Result<(), WarehouseError> {
        let statements = dynashift_core::sql::control_tables(self.dialect, &self.layout);
        let dialect = self.dialect;
        let handle = self.runtime.handle().clone();
        let client = self.client()?;
        handle.block_on(async {
            // Serialised by a transaction-scoped advisory lock: two processes starting at
            // once must not race on CREATE … IF NOT EXISTS.
            let tx =
                client.transaction().await.map_err(|e| query_error("preparing the control tables", e))?;
            if dialect.name() == "postgres" {
                run_sql(&tx, "SELECT pg_advisory_xact_lock(7345001)", &[]).await?;
            }
            for s in &statements {
                run_sql(&tx, &s.sql, &s.params).await?;
            }
            tx.commit().await.map_err(|e| query_error("preparing the control tables", e))
        })?;
        super::upgrade::upgrade_layout(self)
    }

    fn load_catalog(&mut self) -> Result<Catalog, WarehouseError> {
        registry::load_catalog(self)
    }

    fn load_checkpoints(&mut self, source: &str) -> Result<HashMap<String, String>, WarehouseError> {
        registry::load_checkpoints(self, source)
    }

    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let handle = self.runtime.handle().clone();
        let layout = self.layout.clone();
        self.batches += 1;
        let (staged, kept) = match &self.loading {
            Some(loading) => {
                let (staged, kept) = handle.block_on(loading.prepare(batch, self.batches))?;
                (Some(staged), kept)
            }
            None => (None, None),
        };
        let batch = kept.as_ref().unwrap_or(batch);
        let loading = self.loading.take();
        let s3 = loading.as_ref().zip(staged.as_ref());
        let result = self.run_batch(&handle, &layout, batch, s3);
        if let (Some(loading), Some(staged)) = (&loading, &staged) {
            handle.block_on(loading.clean_up(staged));
        }
        self.loading = loading;
        if matches!(result, Err(WarehouseError::Unavailable { .. })) {
            // The session is gone or unusable; the next call connects afresh.
            self.client = None;
        }
        result
    }

    fn describe(&self, batch: &Batch) -> Vec<String> {
        describe_transaction(self.dialect, &self.layout, batch)
    }

    fn status(&mut self) -> Result<Status, WarehouseError> {
        registry::status(self)
    }

    fn reconnect(&mut self) -> Result<(), WarehouseError> {
        self.client = None;
        self.client().map(|_| ())
    }
}
