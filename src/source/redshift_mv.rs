//! The `redshift-mv` source: the Kinesis stream's records as Redshift's streaming ingestion
//! keeps them, in a materialized view (or any relation with its columns: `shard_id`,
//! `sequence_number`, `kinesis_data`), read over the PostgreSQL wire protocol.
//!
//! Each shard is read in order of its sequence numbers, compared as numbers (they are decimal
//! text of varying length, so by length, then as text), in pages of `page_rows`; a shard's
//! position is the last sequence number read, committed with the rows as for Kinesis. The raw
//! `kinesis_data` bytes go to the same decoder as Kinesis records, so a record that is not JSON
//! becomes a reject instead of vanishing (as a view that keeps only `CAN_JSON_PARSE` rows would
//! make it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dynashift_core::dialect::Postgres;
use dynashift_core::Position;

use super::RawRecord;
use crate::config::MvSourceConfig;
use crate::warehouse::pg_session::{PgSession, PgSettings};
use crate::warehouse::WarehouseError;

/// The columns the source reads; a view without them is refused, naming the missing ones.
pub const REQUIRED_COLUMNS: [&str; 3] = ["shard_id", "sequence_number", "kinesis_data"];

/// Attempts at a query the server dropped before the read gives up (and the run with it).
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum MvError {
    #[error("{0}")]
    Connection(#[from] WarehouseError),
    #[error("{view} lacks the column(s) {missing}, which dynashift reads: `dynashift setup --print` shows a view that has them")]
    MissingColumns { view: String, missing: String },
    #[error("{view}: {what}")]
    Row { view: String, what: String },
    #[error("{0}: not a PostgreSQL connection string")]
    Url(String),
}

pub struct MvSource {
    session: PgSession,
    /// `"schema"."view"`, quoted.
    relation: String,
    /// For messages.
    name: String,
    /// Last sequence number read of each shard (committed, then as read).
    last: HashMap<String, String>,
    /// The shards of the current pass, and the next to read.
    pass: Vec<String>,
    next: usize,
    page_rows: usize,
    read_bytes: usize,
    refresh: bool,
    /// Empty reads in a row: the next waits a little longer (1 s … 10 s).
    idle: u32,
    cut: bool,
}

impl MvSource {
    /// Connects and checks the view's columns; `resume` maps shard → committed sequence.
    pub fn open(config: &MvSourceConfig, resume: HashMap<String, String>) -> Result<MvSource, MvError> {
        let settings = PgSettings::parse(&config.url, &config.password_env, "public")
            .map_err(|_| MvError::Url(redacted(&config.url)))?;
        let session = PgSession::new(settings, "the view's server", &Postgres)?;
        let relation = format!("{}.{}", quote(&config.schema), quote(&config.view));
        let mut source = MvSource {
            session,
            relation,
            name: format!("{}.{}", config.schema, config.view),
            last: resume.into_iter().filter(|(shard, _)| !shard.starts_with('@')).collect(),
            pass: Vec::new(),
            next: 0,
            page_rows: config.page_rows,
            read_bytes: super::file::READ_BYTES,
            refresh: config.refresh,
            idle: 0,
            cut: false,
        };
        source.check_columns()?;
        Ok(source)
    }

    /// Reads stop past `bytes` (a record larger than that is still read, alone).
    pub fn with_read_bytes(mut self, bytes: usize) -> MvSource {
        self.read_bytes = bytes.max(1);
        self
    }

    pub fn read_was_cut(&self) -> bool {
        self.cut
    }

    /// The view's columns, as a query of none of its rows describes them.
    fn check_columns(&mut self) -> Result<(), MvError> {
        let sql = format!("SELECT * FROM {} WHERE 1 = 0", self.relation);
        let columns: Vec<String> = self.session.with_client(|handle, _, _, client| {
            let statement = handle.block_on(client.prepare(&sql)).map_err(|e| query_error(&sql, e))?;
            Ok(statement.columns().iter().map(|c| c.name().to_lowercase()).collect())
        })?;
        let missing: Vec<&str> =
            REQUIRED_COLUMNS.iter().copied().filter(|c| !columns.iter().any(|have| have == c)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(MvError::MissingColumns { view: self.name.clone(), missing: missing.join(", ") })
    }

    /// Up to `max` records, a page of one shard after another; empty when every shard is read
    /// to the view's end.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, MvError> {
        if self.idle > 0 {
            // Nothing came last time: ask again after a rest, not at once.
            std::thread::sleep(Duration::from_secs(u64::from(self.idle.min(10))));
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if self.next >= self.pass.len() {
            self.start_pass()?;
        }
        while out.len() < max && bytes < self.read_bytes && self.next < self.pass.len() {
            let shard = self.pass[self.next].clone();
            let want = self.page_rows.min(max - out.len());
            let page = self.page(&shard, want)?;
            let full = page.len() >= want;
            for (sequence, data) in page {
                bytes += data.len();
                self.last.insert(shard.clone(), sequence.clone());
                out.push(RawRecord {
                    data,
                    position: Position::new(Arc::<str>::from(shard.as_str()), sequence),
                    problem: None,
                });
            }
            if !full {
                // This shard is read to the view's end for this pass.
                self.next += 1;
            }
        }
        self.cut = out.len() < max && bytes >= self.read_bytes;
        self.idle = if out.is_empty() { self.idle + 1 } else { 0 };
        Ok(out)
    }

    /// Refreshes the view if asked, then lists its shards for a pass over them.
    fn start_pass(&mut self) -> Result<(), MvError> {
        if self.refresh {
            let sql = format!("REFRESH MATERIALIZED VIEW {}", self.relation);
            self.with_retry(&sql, |handle, client, sql| {
                handle.block_on(client.batch_execute(sql)).map_err(|e| query_error(sql, e))
            })?;
        }
        let sql =
            format!("SELECT DISTINCT shard_id FROM {} WHERE shard_id IS NOT NULL ORDER BY 1", self.relation);
        let shards = self.with_retry(&sql, |handle, client, sql| {
            let rows = handle.block_on(client.query(sql, &[])).map_err(|e| query_error(sql, e))?;
            rows.iter().map(|r| r.try_get::<_, String>(0).map_err(|e| query_error(sql, e))).collect()
        })?;
        self.pass = shards;
        self.next = 0;
        Ok(())
    }

    /// Up to `rows` records of `shard` after its last one read, in sequence order.
    fn page(&mut self, shard: &str, rows: usize) -> Result<Vec<(String, Vec<u8>)>, MvError> {
        // Sequence numbers are decimal text of varying length: a longer one is larger.
        let after = self.last.get(shard).cloned().unwrap_or_default();
        let sql = format!(
            "SELECT sequence_number, kinesis_data FROM {} WHERE shard_id = $1 AND (LENGTH(sequence_number) > $2 \
             OR (LENGTH(sequence_number) = $2 AND sequence_number > $3)) \
             ORDER BY LENGTH(sequence_number), sequence_number LIMIT {rows}",
            self.relation
        );
        let length = after.len() as i32;
        let name = self.name.clone();
        let found = self.with_retry(&sql, |handle, client, sql| {
            let rows = handle
                .block_on(client.query(sql, &[&shard, &length, &after]))
                .map_err(|e| query_error(sql, e))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let sequence: Option<String> = r.try_get(0).ok().flatten();
                    // `kinesis_data` is VARBYTE in Redshift (bytea in PostgreSQL); a text
                    // column of a landing table is read as its bytes.
                    let data: Option<Vec<u8>> = r
                        .try_get::<_, Option<Vec<u8>>>(1)
                        .or_else(|_| r.try_get::<_, Option<String>>(1).map(|t| t.map(String::into_bytes)))
                        .ok()
                        .flatten();
                    (sequence, data)
                })
                .collect::<Vec<_>>())
        })?;
        found
            .into_iter()
            .map(|(sequence, data)| match sequence {
                Some(sequence) if !sequence.is_empty() && sequence.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok((sequence, data.unwrap_or_default()))
                }
                other => Err(MvError::Row {
                    view: name.clone(),
                    what: format!(
                        "shard {shard} holds a row whose sequence_number is {other:?}, not a decimal number: \
                         positions cannot be kept past it"
                    ),
                }),
            })
            .collect()
    }

    /// Runs `work` on the connection, connecting again after a dropped one, a few times.
    fn with_retry<T>(
        &mut self,
        sql: &str,
        work: impl Fn(&tokio::runtime::Handle, &mut tokio_postgres::Client, &str) -> Result<T, WarehouseError>,
    ) -> Result<T, MvError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.session.with_client(|handle, _, _, client| work(handle, client, sql)) {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(
                        view = self.name,
                        attempt,
                        "the view's server is unavailable, retrying: {e}"
                    );
                    std::thread::sleep(Duration::from_secs(1 << attempt.min(4)));
                }
                other => return other.map_err(MvError::from),
            }
        }
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A connection string for messages, without what follows the first `@` or `password=`.
fn redacted(url: &str) -> String {
    if url.contains("password") {
        return "the source's `url`".into();
    }
    match url.split_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => url.to_string(),
    }
}

/// A failed query, transient when the connection was lost.
fn query_error(sql: &str, e: tokio_postgres::Error) -> WarehouseError {
    let words: Vec<&str> = sql.split_whitespace().take(4).collect();
    crate::warehouse::pg_sql::query_error(format!("reading the view ({} …)", words.join(" ")), e)
}
