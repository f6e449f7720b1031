//! Where the `redshift-mv` source's queries go: a PostgreSQL-protocol session (Redshift's
//! wire, or PostgreSQL holding a landing table), read as text over the simple query protocol
//! as Redshift's own drivers read VARBYTE; or the Redshift Data API. Either way rows come back
//! as text and columns by name, and a query the server dropped is sent again a few times.

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use crate::warehouse::data_api::DataApiWarehouse;
use crate::warehouse::pg_session::PgSession;
use crate::warehouse::registry::{Field, Query};
use crate::warehouse::WarehouseError;

/// Attempts at a query the server dropped before the read gives up (and the run with it).
const ATTEMPTS: u32 = 5;

pub enum ViewServer {
    Wire(Box<PgSession>),
    DataApi(Box<DataApiWarehouse>),
}

impl ViewServer {
    /// The column names of `sql`'s result; `None` when a relation it reads does not exist.
    pub fn columns(&mut self, sql: &str) -> Result<Option<Vec<String>>, WarehouseError> {
        self.with_retry(sql, |server| match server {
            ViewServer::Wire(session) => session.with_client(|handle, _, _, client| {
                use tokio_postgres::error::SqlState;
                let messages = match handle.block_on(client.simple_query(sql)) {
                    Ok(messages) => messages,
                    Err(e)
                        if matches!(e.code(), Some(c) if *c == SqlState::UNDEFINED_TABLE
                            || *c == SqlState::INVALID_SCHEMA_NAME) =>
                    {
                        return Ok(None)
                    }
                    Err(e) => return Err(query_error(sql, e)),
                };
                Ok(Some(
                    messages
                        .iter()
                        .find_map(|m| match m {
                            SimpleQueryMessage::RowDescription(columns) => {
                                Some(columns.iter().map(|c| c.name().to_lowercase()).collect())
                            }
                            _ => None,
                        })
                        .unwrap_or_default(),
                ))
            }),
            ViewServer::DataApi(api) => api.result_columns(sql),
        })
    }

    /// Every row of `sql`, each field as text (`None` for NULL).
    pub fn text_rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        self.map_rows(sql, |fields| fields.iter().map(|f| f.map(str::to_string)).collect())
    }

    /// Every row of `sql` through `map`, which sees its fields as text where the driver holds
    /// them (a page of large records is not copied before it is decoded).
    pub fn map_rows<T>(
        &mut self,
        sql: &str,
        map: impl Fn(&[Option<&str>]) -> T,
    ) -> Result<Vec<T>, WarehouseError> {
        self.with_retry(sql, |server| match server {
            ViewServer::Wire(session) => session.with_client(|handle, _, _, client| {
                let messages = handle.block_on(client.simple_query(sql)).map_err(|e| query_error(sql, e))?;
                let mut fields: Vec<Option<&str>> = Vec::new();
                Ok(messages
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(row) => {
                            fields.clear();
                            fields.extend((0..row.len()).map(|i| row.get(i)));
                            Some(map(&fields))
                        }
                        _ => None,
                    })
                    .collect())
            }),
            ViewServer::DataApi(api) => Ok(api
                .rows(sql, &[])?
                .into_iter()
                .map(|row| {
                    let texts: Vec<Option<String>> = row
                        .into_iter()
                        .map(|field| match field {
                            Field::Null => None,
                            Field::Text(t) => Some(t),
                            Field::Int(i) => Some(i.to_string()),
                            Field::Bool(b) => Some(b.to_string()),
                        })
                        .collect();
                    let fields: Vec<Option<&str>> = texts.iter().map(|t| t.as_deref()).collect();
                    map(&fields)
                })
                .collect()),
        })
    }

    /// Runs one statement by itself (outside any transaction).
    pub fn execute(&mut self, sql: &str) -> Result<(), WarehouseError> {
        self.with_retry(sql, |server| match server {
            ViewServer::Wire(session) => session.with_client(|handle, _, _, client| {
                handle
                    .block_on(client.batch_execute(sql))
                    .map_err(|e| crate::warehouse::pg_sql::query_error(format!("running `{sql}`"), e))
            }),
            ViewServer::DataApi(api) => api.execute(sql),
        })
    }

    /// Runs `work`, again after a dropped connection or a passing Data API failure, a few times.
    fn with_retry<T>(
        &mut self,
        sql: &str,
        mut work: impl FnMut(&mut ViewServer) -> Result<T, WarehouseError>,
    ) -> Result<T, WarehouseError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match work(self) {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(attempt, query = %shortened(sql), "the view's server is unavailable, retrying: {e}");
                    std::thread::sleep(Duration::from_secs(1 << attempt.min(4)));
                }
                other => return other,
            }
        }
    }
}

/// The first words of a statement, for messages.
fn shortened(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().take(5).collect();
    format!("{} …", words.join(" "))
}

/// A failed query, transient when the connection was lost.
fn query_error(sql: &str, e: tokio_postgres::Error) -> WarehouseError {
    crate::warehouse::pg_sql::query_error(format!("reading the view ({})", shortened(sql)), e)
}
