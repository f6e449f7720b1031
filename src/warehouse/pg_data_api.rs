//! The Redshift Data API's way of running a batch, on PostgreSQL: the calls `data_api_calls`
//! packs, each its own transaction, every value a literal. Redshift cannot run here; this lets
//! the tests run the very statements and call boundaries the Data API would send — and stop
//! between two calls, as a crash would — against a real server.

use dynashift_core::cells::CellRef;
use dynashift_core::dialect::Dialect;
use dynashift_core::literal::redshift_literal;
use dynashift_core::sql::{Layout, Param};
use dynashift_core::value::hex_encode;
use tokio_postgres::Client;

use super::data_api_calls::data_api_calls_within;
use super::pg_session::{PgSession, PgSettings};
use super::pg_sql::{query_error, run_sql};
use super::steps::STAGE;
use super::{Batch, Outcome, Warehouse, WarehouseError};

/// How batches are cut into calls, and where to stop as if the process had died.
#[derive(Debug, Clone)]
pub struct DataApiOnPostgres {
    /// Statements per call (the Data API allows 40; smaller limits make more calls).
    pub max_statements: usize,
    /// Fail, before running it, every call whose running number is a multiple of this —
    /// except on the attempt right after a stop, so that a retried batch gets through.
    pub stop_every: Option<usize>,
    calls: usize,
    just_stopped: bool,
}

impl DataApiOnPostgres {
    pub fn new(max_statements: usize, stop_every: Option<usize>) -> DataApiOnPostgres {
        DataApiOnPostgres { max_statements, stop_every, calls: 0, just_stopped: false }
    }
}

/// The stage's rows as one `INSERT … VALUES` of literals, in the layout a Redshift COPY
/// loads (binary as hex text), standing in for the COPY from S3.
fn stage_insert(d: &dyn Dialect, batch: &Batch, index: usize, columns: &[(String, &'static str)]) -> String {
    let names: Vec<String> = columns.iter().map(|(n, _)| d.quote(n)).collect();
    let rows: Vec<String> = batch.tables[index]
        .rows
        .iter()
        .map(|row| {
            let mut values = vec![
                redshift_literal(&Param::Text(row.key_text.clone())),
                row.version.micros.to_string(),
                redshift_literal(&Param::Text(row.version.padded().to_string())),
                redshift_literal(&Param::Text(row.event.as_str().into())),
                redshift_literal(&Param::Text(row.op.code().into())),
                if row.deleted { "TRUE".into() } else { "FALSE".into() },
                row.event_ids
                    .as_deref()
                    .map_or("NULL".into(), |ids| redshift_literal(&Param::Text(ids.into()))),
            ];
            values.extend(row.cells.iter().map(|c| match c {
                CellRef::Null => "NULL".to_string(),
                CellRef::Int(i) => i.to_string(),
                CellRef::Text(s) => redshift_literal(&Param::Text(s.to_string())),
                CellRef::Bytes(b) => redshift_literal(&Param::Text(hex_encode(b))),
            }));
            format!("({})", values.join(", "))
        })
        .collect();
    format!("INSERT INTO {} ({}) VALUES {}", d.quote(STAGE), names.join(", "), rows.join(", "))
}

async fn apply_as_calls(
    d: &dyn Dialect,
    client: &mut Client,
    layout: &Layout,
    batch: &Batch,
    mode: &mut DataApiOnPostgres,
) -> Result<Outcome, WarehouseError> {
    let calls = data_api_calls_within(mode.max_statements, d, layout, batch, &[], |index, columns| {
        Ok(stage_insert(d, batch, index, columns))
    })?;
    let mut outcome = Outcome::default();
    let may_stop = !std::mem::take(&mut mode.just_stopped);
    for (n, call) in calls.iter().enumerate() {
        mode.calls += 1;
        if may_stop && mode.stop_every.is_some_and(|k| mode.calls.is_multiple_of(k)) {
            mode.just_stopped = true;
            return Err(WarehouseError::Query {
                context: format!("call {} of {} of a Data API batch", n + 1, calls.len()),
                cause: "stopped here, as a crash would".into(),
            });
        }
        let tx = client.transaction().await.map_err(|e| query_error("starting a transaction", e))?;
        for (i, sql) in call.sqls.iter().enumerate() {
            match call.counts.iter().find(|(at, _)| *at == i) {
                Some((_, table)) => {
                    let row =
                        tx.query_one(sql.as_str(), &[]).await.map_err(|e| query_error("counting", e))?;
                    let changes: i64 = row.try_get(0).map_err(|e| query_error("counting", e))?;
                    *outcome.applied.entry(table.clone()).or_default() += changes.max(0) as u64;
                }
                None => {
                    run_sql(&tx, sql, &[]).await?;
                }
            }
        }
        tx.commit().await.map_err(|e| query_error("committing a call", e))?;
    }
    Ok(outcome)
}

/// A warehouse that runs `dialect`'s plan on PostgreSQL as the Data API runs Redshift's.
pub struct DataApiOnPostgresWarehouse {
    session: PgSession,
    mode: DataApiOnPostgres,
}

impl DataApiOnPostgresWarehouse {
    pub fn open(
        settings: PgSettings,
        dialect: &'static dyn Dialect,
        mode: DataApiOnPostgres,
    ) -> Result<DataApiOnPostgresWarehouse, WarehouseError> {
        Ok(DataApiOnPostgresWarehouse { session: PgSession::new(settings, "Redshift", dialect)?, mode })
    }

    /// The session, for tools and tests (`query_text`).
    pub fn session(&self) -> &PgSession {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut PgSession {
        &mut self.session
    }
}

impl Warehouse for DataApiOnPostgresWarehouse {
    super::pg_session::session_warehouse_methods!();

    fn setup(&mut self) -> Result<(), WarehouseError> {
        self.session.create_control_tables(false)
    }

    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let mode = &mut self.mode;
        self.session.with_client(|runtime, dialect, layout, client| {
            runtime.block_on(apply_as_calls(dialect, client, layout, batch, mode))
        })
    }
}
