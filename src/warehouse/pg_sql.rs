//! Statements on a PostgreSQL session, and how the driver's errors are sorted: a lost session
//! or a lost serialization race may be retried on a new connection; anything else stops.

use dynashift_core::sql::Param;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::pg_bind::Bound;
use super::redshift::is_serialization_conflict;
use super::{Cause, WarehouseError};
use crate::text::{one_line, short_sql};

/// Errors that a new connection may cure: the session was cut, the server restarts, or a
/// transaction lost a serialization race.
pub(super) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if e.as_db_error().is_some_and(|db| is_serialization_conflict(db.message())) {
        return true;
    }
    match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
        }
        // No server error code: an I/O failure on the way (a connect timeout is one too:
        // tokio-postgres reports it as an I/O error of kind `TimedOut`).
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// The server's own message (with its severity and detail), or the driver's and its cause.
pub(super) fn pg_message(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(" ({detail})"));
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    };
    one_line(text)
}

pub(crate) fn query_error(context: impl Into<String>, e: tokio_postgres::Error) -> WarehouseError {
    let context = context.into();
    let transient = is_transient(&e);
    let cause = Cause::with_message(pg_message(&e), e);
    if transient {
        WarehouseError::Unavailable { context, cause }
    } else {
        WarehouseError::Query { context, cause }
    }
}

pub(super) async fn run_sql(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[Param],
) -> Result<u64, WarehouseError> {
    let started = std::time::Instant::now();
    let result = if params.is_empty() {
        tx.batch_execute(sql).await.map(|_| 0)
    } else {
        let bound: Vec<Bound> = params.iter().map(Bound::from).collect();
        let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        tx.execute(sql, &refs).await
    };
    tracing::trace!(ms = started.elapsed().as_millis() as u64, sql = %short_sql(sql), "statement");
    result.map_err(|e| query_error(short_sql(sql), e))
}
