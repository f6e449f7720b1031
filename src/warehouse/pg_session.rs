//! A session on a server that speaks PostgreSQL's wire protocol (PostgreSQL itself, or Redshift):
//! where and how to connect, the connection made on first use and again after a loss, and the
//! registry queries run on it. The warehouses over this protocol each hold one.

use std::sync::Arc;
use std::time::Duration;

use dynashift_core::dialect::Dialect;
use dynashift_core::sql::{Layout, Param};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use super::pg_bind::Bound;
use super::pg_sql::{is_transient, pg_message, query_error, run_sql};
use super::registry::{Field, Query};
use super::{Cause, WarehouseError};
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
        format!("{host}:{port}/{}", self.config.get_dbname().unwrap_or("(default database)"))
    }
}

/// Fetches a user and password for each new connection (Redshift's temporary IAM
/// credentials), given the session's runtime and database name; `None` keeps the connection
/// string's own.
pub type Login = Box<
    dyn Fn(&tokio::runtime::Runtime, Option<&str>) -> Result<Option<(String, String)>, WarehouseError> + Send,
>;

/// One server, one schema, one dialect; the connection is made on first use.
pub struct PgSession {
    /// The driver is async (`tokio-postgres`); the session owns a small runtime so that the
    /// warehouses present the same blocking interface as the others.
    runtime: tokio::runtime::Runtime,
    settings: PgSettings,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Option<Client>,
    login: Option<Login>,
    /// The server's kind, for messages ("PostgreSQL", "Redshift").
    server: &'static str,
    dialect: &'static dyn Dialect,
    layout: Layout,
}

fn ca_error(path: &std::path::Path, e: impl std::error::Error + Send + Sync + 'static) -> WarehouseError {
    WarehouseError::Open { what: format!("CA file {}", path.display()), cause: Cause::of(e) }
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
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| ca_error(path, e))?;
        for cert in certs {
            roots.add(cert.map_err(|e| ca_error(path, e))?).map_err(|e| ca_error(path, e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WarehouseError::Open { what: "TLS settings".into(), cause: Cause::of(e) })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgSession {
    /// Prepares a session on `settings`' server that plans with `dialect`; nothing is
    /// connected yet.
    pub fn new(
        settings: PgSettings,
        server: &'static str,
        dialect: &'static dyn Dialect,
    ) -> Result<PgSession, WarehouseError> {
        let runtime = crate::runtime::background("dynashift-postgres").map_err(|e| WarehouseError::Open {
            what: format!("the {server} runtime"),
            cause: Cause::of(e),
        })?;
        let tls = tls_connector(settings.ca_file.as_deref())?;
        let layout = Layout { target_schema: settings.schema.clone(), ..Layout::default() };
        Ok(PgSession { runtime, settings, tls, client: None, login: None, server, dialect, layout })
    }

    /// Logs in with the credentials `login` fetches, for every connection.
    pub fn with_login(mut self, login: Login) -> PgSession {
        self.login = Some(login);
        self
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    pub fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The open connection, made now if there is none or the last one was lost.
    pub fn client(&mut self) -> Result<&mut Client, WarehouseError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() {
            self.client = Some(self.connect()?);
        }
        self.client.as_mut().ok_or_else(|| WarehouseError::Corrupt("connection vanished".into()))
    }

    /// Runs `work` with the session's runtime, dialect, layout and connection (made now if
    /// there is none); when the session is lost on the way, the next call connects afresh.
    pub fn with_client<T>(
        &mut self,
        work: impl FnOnce(
            &tokio::runtime::Handle,
            &'static dyn Dialect,
            &Layout,
            &mut Client,
        ) -> Result<T, WarehouseError>,
    ) -> Result<T, WarehouseError> {
        self.client()?;
        let client =
            self.client.as_mut().ok_or_else(|| WarehouseError::Corrupt("connection vanished".into()))?;
        let result = work(self.runtime.handle(), self.dialect, &self.layout, client);
        if matches!(result, Err(WarehouseError::Unavailable { .. })) {
            self.client = None;
        }
        result
    }

    /// Forgets the connection: the next call connects afresh.
    pub fn disconnect(&mut self) {
        self.client = None;
    }

    fn connect(&mut self) -> Result<Client, WarehouseError> {
        let what = format!("{} at {}", self.server, self.settings.describe());
        let mut config = self.settings.config.clone();
        if let Some(login) = &self.login {
            if let Some((user, password)) = login(&self.runtime, config.get_dbname())? {
                config.user(user);
                config.password(password);
            }
        }
        let connect = config.connect(self.tls.clone());
        let (client, connection) = self.runtime.block_on(connect).map_err(|e| {
            let transient = is_transient(&e) || e.code().is_none();
            let cause = Cause::with_message(pg_message(&e), e);
            if transient {
                WarehouseError::Unavailable { context: format!("cannot connect to {what}"), cause }
            } else {
                WarehouseError::Open { what, cause }
            }
        })?;
        self.runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Creates the control tables in one transaction; with `serialise`, under a
    /// transaction-scoped advisory lock, so that two processes starting at once do not race on
    /// `CREATE … IF NOT EXISTS` (PostgreSQL has such locks, Redshift not).
    pub fn create_control_tables(&mut self, serialise: bool) -> Result<(), WarehouseError> {
        let statements = dynashift_core::sql::control_tables(self.dialect, &self.layout);
        let handle = self.runtime.handle().clone();
        let client = self.client()?;
        handle.block_on(async {
            let tx =
                client.transaction().await.map_err(|e| query_error("preparing the control tables", e))?;
            if serialise {
                run_sql(&tx, "SELECT pg_advisory_xact_lock(7345001)", &[]).await?;
            }
            for s in &statements {
                run_sql(&tx, &s.sql, &s.params).await?;
            }
            tx.commit().await.map_err(|e| query_error("preparing the control tables", e))
        })?;
        super::upgrade::upgrade_layout(self)
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
}

/// The `Warehouse` methods every warehouse on a `PgSession` (in a field named `session`)
/// answers the same way: the registry queries, the plan's text, reconnecting.
macro_rules! session_warehouse_methods {
    () => {
        fn dialect(&self) -> &dyn dynashift_core::dialect::Dialect {
            self.session.dialect()
        }

        fn is_set_up(&mut self) -> Result<bool, $crate::warehouse::WarehouseError> {
            $crate::warehouse::registry::control_tables_exist(&mut self.session)
        }

        fn load_catalog(
            &mut self,
        ) -> Result<dynashift_core::schema::Catalog, $crate::warehouse::WarehouseError> {
            $crate::warehouse::registry::load_catalog(&mut self.session)
        }

        fn load_checkpoints(
            &mut self,
            source: &str,
        ) -> Result<std::collections::HashMap<String, String>, $crate::warehouse::WarehouseError> {
            $crate::warehouse::registry::load_checkpoints(&mut self.session, source)
        }

        fn describe(&self, batch: &$crate::warehouse::Batch) -> Vec<String> {
            $crate::warehouse::steps::describe_transaction(
                self.session.dialect(),
                self.session.layout(),
                batch,
            )
        }

        fn status(&mut self) -> Result<$crate::warehouse::Status, $crate::warehouse::WarehouseError> {
            $crate::warehouse::registry::status(&mut self.session)
        }

        fn reconnect(&mut self) -> Result<(), $crate::warehouse::WarehouseError> {
            self.session.disconnect();
            self.session.client().map(|_| ())
        }
    };
}
pub(crate) use session_warehouse_methods;

fn field(row: &tokio_postgres::Row, i: usize) -> Result<Field, tokio_postgres::Error> {
    Ok(match *row.columns()[i].type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Field::Null, Field::Int),
        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map_or(Field::Null, |n| Field::Int(n.into())),
        Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map_or(Field::Null, Field::Bool),
        _ => row.try_get::<_, Option<String>>(i)?.map_or(Field::Null, Field::Text),
    })
}

impl Query for PgSession {
    fn dialect(&self) -> &dyn Dialect {
        self.dialect
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Field>>, WarehouseError> {
        let bound: Vec<Bound> = params.iter().map(Bound::from).collect();
        let handle = self.runtime.handle().clone();
        let client = self.client()?;
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        let rows = handle.block_on(client.query(sql, &refs)).map_err(|e| query_error(short_sql(sql), e))?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| field(r, i)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| query_error(short_sql(sql), e))
    }

    fn execute(&mut self, sql: &str) -> Result<(), WarehouseError> {
        let handle = self.runtime.handle().clone();
        let client = self.client()?;
        handle.block_on(client.execute(sql, &[])).map_err(|e| query_error(short_sql(sql), e))?;
        Ok(())
    }
}
