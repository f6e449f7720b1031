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
use std::time::{Duration, Instant};

use dynashift_core::dialect::{Dialect as _, Postgres};
use dynashift_core::literal::string_literal;
use dynashift_core::Position;

use super::view_server::ViewServer;
use super::RawRecord;
use crate::config::{LentConnection, MvSourceConfig};
use crate::warehouse::data_api::DataApiWarehouse;
use crate::warehouse::pg_session::{PgSession, PgSettings};
use crate::warehouse::WarehouseError;

/// The columns the source reads; a view without them is refused, naming the missing ones.
pub const REQUIRED_COLUMNS: [&str; 3] = ["shard_id", "sequence_number", "kinesis_data"];

/// The most of a record one row of a Data API result carries: a row holds at most 64 KB
/// ("Troubleshooting issues for Amazon Redshift Data API", Management Guide), and VARBYTE
/// travels as hex, two characters a byte.
const PIECE_BYTES: usize = 30_000;

/// The most record bytes one page asks of the Data API: a result holds at most 100 MB (500 MB
/// in newer text of the same page), and VARBYTE travels as hex.
const DATA_API_PAGE_BYTES: usize = 40 << 20;

#[derive(Debug, thiserror::Error)]
pub enum MvError {
    #[error("{0}")]
    Connection(#[from] WarehouseError),
    #[error("{view} lacks the column(s) {missing}, which dynashift reads: `dynashift setup --print` shows a view that has them")]
    MissingColumns { view: String, missing: String },
    #[error("{view}: {what}")]
    Row { view: String, what: String },
    #[error("{view} does not exist: create it with `dynashift setup` (which needs source.stream and source.iam_role), or see `dynashift setup --print`")]
    Absent { view: String },
    #[error("{0}: not a PostgreSQL connection string")]
    Url(String),
}

/// A record of the view: its sequence number and its bytes.
type Landed = (String, Vec<u8>);

pub struct MvSource {
    server: ViewServer,
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
    /// Empty reads in a row, and when the view is next asked after one (1 s, 2 s, 4 s … 10 s
    /// later).
    idle: u32,
    next_poll: Option<Instant>,
    cut: bool,
    /// Sent before each page's queries on the same connection (PostgreSQL's `bytea_output`).
    prefix: &'static str,
}

impl MvSource {
    /// Connects and checks the view's columns; `resume` maps shard → committed sequence.
    pub fn open(config: &MvSourceConfig, resume: HashMap<String, String>) -> Result<MvSource, MvError> {
        let mut source = MvSource::connect(config)?;
        source.last = resume.into_iter().filter(|(shard, _)| !shard.starts_with('@')).collect();
        source.check_columns()?;
        // PostgreSQL may print bytea in its escape form, which would pass for a text record:
        // a landing table there is read with bytea in hex.
        if matches!(source.server, ViewServer::Wire(_)) && source.setting("bytea_output")?.is_some() {
            source.prefix = "SET bytea_output = 'hex'; ";
        }
        Ok(source)
    }

    /// Prepares the connection (made on first use) without looking at the view, which `setup`
    /// may be about to create.
    pub fn connect(config: &MvSourceConfig) -> Result<MvSource, MvError> {
        let server = match (&config.url, &config.target_login) {
            (Some(url), _) => {
                let settings = PgSettings::parse(url, &config.password_env, "public")
                    .map_err(|_| MvError::Url(redacted(url)))?;
                ViewServer::Wire(Box::new(PgSession::new(settings, "the view's server", &Postgres)?))
            }
            (None, Some(lent)) => match lent.as_ref() {
                LentConnection::Wire(login) => {
                    // The Redshift target's connection, logged in as it is (IAM credentials
                    // afresh for every connection).
                    let session = PgSession::new(login.settings.clone(), "the view's server", &Postgres)?;
                    let sdk = session.runtime().block_on(crate::aws::sdk_config(&login.aws));
                    let auth = login.auth.clone();
                    let session = session.with_login(Box::new(move |runtime, db_name| {
                        runtime
                            .block_on(crate::warehouse::redshift::temporary_credentials(&auth, &sdk, db_name))
                    }));
                    ViewServer::Wire(Box::new(session))
                }
                LentConnection::DataApi(options) => {
                    ViewServer::DataApi(Box::new(DataApiWarehouse::open(options.clone())?))
                }
            },
            (None, None) => return Err(MvError::Url("no `url`".into())),
        };
        let relation = Postgres.qualified(&config.schema, &config.view);
        Ok(MvSource {
            server,
            relation,
            name: format!("{}.{}", config.schema, config.view),
            last: HashMap::new(),
            pass: Vec::new(),
            next: 0,
            page_rows: config.page_rows,
            read_bytes: super::file::READ_BYTES,
            refresh: config.refresh,
            idle: 0,
            next_poll: None,
            cut: false,
            prefix: "",
        })
    }

    /// Reads stop past `bytes` (a record larger than that is still read, alone).
    pub fn with_read_bytes(mut self, bytes: usize) -> MvSource {
        self.read_bytes = bytes.max(1);
        self
    }

    pub fn read_was_cut(&self) -> bool {
        self.cut
    }

    /// The view's columns, as a query of none of its rows describes them; `None` when there is
    /// no such relation (or schema).
    pub fn columns(&mut self) -> Result<Option<Vec<String>>, MvError> {
        Ok(self.server.columns(&format!("SELECT * FROM {} WHERE 1 = 0", self.relation))?)
    }

    /// Refuses a view that is absent or lacks a column the source reads, naming what is missing.
    pub fn check_columns(&mut self) -> Result<(), MvError> {
        let Some(columns) = self.columns()? else {
            return Err(MvError::Absent { view: self.name.clone() });
        };
        let missing: Vec<&str> =
            REQUIRED_COLUMNS.iter().copied().filter(|c| !columns.iter().any(|have| have == c)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(MvError::MissingColumns { view: self.name.clone(), missing: missing.join(", ") })
    }

    /// A setting of the view's server, as `SHOW` gives it; `None` if the server has no such
    /// setting (PostgreSQL has none of Redshift's own, Redshift not PostgreSQL's `bytea_output`).
    pub fn setting(&mut self, name: &str) -> Result<Option<String>, MvError> {
        match self.server.text_rows(&format!("SHOW {name}")) {
            Ok(rows) => Ok(rows.into_iter().next().and_then(|row| row.into_iter().next().flatten())),
            Err(e) if e.to_string().contains("unrecognized configuration parameter") => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs one statement of `setup` on the view's server, by itself (outside any transaction).
    pub fn execute(&mut self, sql: &str) -> Result<(), MvError> {
        Ok(self.server.execute(sql)?)
    }

    /// Up to `max` records, a page of one shard after another; empty when every shard is read
    /// to the view's end.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, MvError> {
        if let Some(at) = self.next_poll {
            // Nothing came last time: rest, at most a second per call so that a stop is
            // heard between calls, and ask the view again only once the rest is over.
            let now = Instant::now();
            if now < at {
                std::thread::sleep((at - now).min(Duration::from_secs(1)));
                if Instant::now() < at {
                    return Ok(Vec::new());
                }
            }
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        if self.next >= self.pass.len() {
            self.start_pass()?;
        }
        while out.len() < max && bytes < self.read_bytes && self.next < self.pass.len() {
            let shard = self.pass[self.next].clone();
            let want = self.page_rows.min(max - out.len());
            let mut budget = self.read_bytes.saturating_sub(bytes);
            if matches!(self.server, ViewServer::DataApi(_)) {
                // A Data API result holds at most 100 MB, and VARBYTE comes as hex.
                budget = budget.min(DATA_API_PAGE_BYTES);
            }
            let (page, more) = self.page(&shard, want, budget)?;
            for (sequence, data) in page {
                bytes += data.len();
                self.last.insert(shard.clone(), sequence.clone());
                out.push(RawRecord {
                    data,
                    position: Position::new(Arc::<str>::from(shard.as_str()), sequence),
                    problem: None,
                });
            }
            if !more {
                // This shard is read to the view's end for this pass.
                self.next += 1;
            }
        }
        self.cut = out.len() < max && bytes >= self.read_bytes;
        self.idle = if out.is_empty() { self.idle + 1 } else { 0 };
        self.next_poll = (self.idle > 0)
            .then(|| Instant::now() + Duration::from_secs((1u64 << (self.idle - 1).min(4)).min(10)));
        Ok(out)
    }

    /// Refreshes the view if asked, then lists its shards for a pass over them.
    fn start_pass(&mut self) -> Result<(), MvError> {
        if self.refresh {
            self.server.execute(&format!("REFRESH MATERIALIZED VIEW {}", self.relation))?;
        }
        let sql =
            format!("SELECT DISTINCT shard_id FROM {} WHERE shard_id IS NOT NULL ORDER BY 1", self.relation);
        // Redshift's CHAR(20) arrives padded where a shard id is shorter.
        let shards: Vec<String> = self
            .server
            .text_rows(&sql)?
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten().map(|s| s.trim_end().to_string()))
            .collect();
        // Kinesis names shards `shardId-…`; anything else cannot be a position to keep.
        if let Some(odd) = shards
            .iter()
            .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(MvError::Row {
                view: self.name.clone(),
                what: format!("shard_id {odd:?} is not a Kinesis shard id"),
            });
        }
        self.pass = shards;
        self.next = 0;
        Ok(())
    }

    /// Up to `rows` records of `shard` after its last one read, in sequence order, as many as
    /// fit `budget` bytes (at least one); and whether the shard may hold more.
    ///
    /// Read as text (the simple query protocol), as Redshift's own drivers read VARBYTE: its
    /// binary form is not documented, and a driver asking for it gets a type it cannot map.
    /// The literals are the shard's name, quoted, and a sequence number checked to be digits.
    fn page(&mut self, shard: &str, rows: usize, budget: usize) -> Result<(Vec<Landed>, bool), MvError> {
        let after = self.last.get(shard).cloned().unwrap_or_default();
        if !after.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.row_error(format!(
                "the committed position of shard {shard} is {after:?}, not a sequence number"
            )));
        }
        // The sizes first, without the records: a page is planned from them, so a burst of
        // large records after small ones cannot make a page larger than the budget.
        let sizes = self.ranged(shard, &after, rows, "OCTET_LENGTH(kinesis_data)", |f| size_at(f, 1))?;
        let (mut take, mut used) = (0, 0);
        for (_, size) in &sizes {
            if take > 0 && used + size > budget {
                break;
            }
            used += size;
            take += 1;
        }
        let more = take < sizes.len() || sizes.len() >= rows;
        if take == 0 {
            return Ok((Vec::new(), false));
        }
        // Through the Data API a row of a result holds at most 64 KB, and VARBYTE travels as
        // hex: larger records come in pieces, by SUBSTRING.
        let data = match self.server {
            ViewServer::Wire(_) => "kinesis_data".to_string(),
            ViewServer::DataApi(_) => {
                format!("CASE WHEN OCTET_LENGTH(kinesis_data) <= {PIECE_BYTES} THEN kinesis_data END")
            }
        };
        let found =
            self.ranged(shard, &after, take, &format!("{data}, OCTET_LENGTH(kinesis_data)"), |f| {
                (f.get(1).copied().flatten().map(record_bytes), size_at(f, 2))
            })?;
        let mut page = Vec::with_capacity(found.len());
        for (sequence, (data, length)) in found {
            let sequence = match sequence {
                Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s,
                other => {
                    return Err(self.row_error(format!(
                        "shard {shard} holds a row whose sequence_number is {other:?}, not a decimal \
                         number: positions cannot be kept past it"
                    )))
                }
            };
            let data = match data {
                Some(data) => data,
                None if length > PIECE_BYTES => self.record_in_pieces(shard, &sequence, length),
                None => Ok(Vec::new()),
            };
            let data = data.map_err(|why| {
                self.row_error(format!("shard {shard}, sequence number {sequence}: kinesis_data {why}"))
            })?;
            page.push((sequence, data));
        }
        Ok((page, more))
    }

    /// Up to `rows` rows of `shard` after `after`, in sequence order: the sequence number and
    /// `columns` through `map`. Two ranges, each one index range on (shard_id,
    /// LENGTH(sequence_number), sequence_number) where a landing table has that index: the
    /// rest of this length, then, at a shard's end, longer numbers (a single condition joining
    /// them with OR walks every row already read).
    fn ranged<T>(
        &mut self,
        shard: &str,
        after: &str,
        rows: usize,
        columns: &str,
        map: impl Fn(&[Option<&str>]) -> T,
    ) -> Result<Vec<(Option<String>, T)>, MvError> {
        let shard = string_literal("shard_id", shard).map_err(|e| self.row_error(e.to_string()))?;
        let select =
            format!("SELECT sequence_number, {columns} FROM {} WHERE shard_id = {shard}", self.relation);
        let row =
            |f: &[Option<&str>]| (f.first().copied().flatten().map(|s| s.trim_end().to_string()), map(f));
        let len = after.len();
        let mut found = Vec::new();
        if len > 0 {
            let same_length = format!(
                "{select} AND LENGTH(sequence_number) = {len} AND sequence_number > '{after}' \
                 ORDER BY sequence_number LIMIT {rows}"
            );
            found = self.server.map_rows(&format!("{}{same_length}", self.prefix), row)?;
        }
        if found.len() < rows {
            let longer = format!(
                "{select} AND LENGTH(sequence_number) > {len} ORDER BY LENGTH(sequence_number), sequence_number \
                 LIMIT {}",
                rows - found.len()
            );
            found.extend(self.server.map_rows(&format!("{}{longer}", self.prefix), row)?);
        }
        Ok(found)
    }

    /// A record too large for one row of a Data API result, read `PIECE_BYTES` at a time.
    fn record_in_pieces(&mut self, shard: &str, sequence: &str, length: usize) -> Result<Vec<u8>, String> {
        let shard = string_literal("shard_id", shard).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(length);
        while out.len() < length {
            let sql = format!(
                "SELECT SUBSTRING(kinesis_data, {}, {PIECE_BYTES}) FROM {} WHERE shard_id = {} AND sequence_number = '{sequence}'",
                out.len() + 1,
                self.relation,
                shard
            );
            let piece = self
                .server
                .map_rows(&sql, |f| f.first().copied().flatten().map(record_bytes))
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .flatten()
                .ok_or_else(|| "was gone when read in pieces".to_string())??;
            if piece.is_empty() {
                return Err(format!("ended after {} of its {length} bytes", out.len()));
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    fn row_error(&self, what: String) -> MvError {
        MvError::Row { view: self.name.clone(), what }
    }
}

/// The byte count in field `i` of a row (0 for NULL).
fn size_at(fields: &[Option<&str>], i: usize) -> usize {
    fields.get(i).copied().flatten().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The bytes of a record from `kinesis_data`'s text form: VARBYTE prints as hex, PostgreSQL's
/// bytea as `\x` and hex; a text column of a landing table is the record itself. (A record
/// from DynamoDB is JSON, never all hex digits.)
fn record_bytes(text: &str) -> Result<Vec<u8>, String> {
    if let Some(hex) = text.strip_prefix("\\x") {
        return decode_hex(hex).ok_or_else(|| "is neither hex nor text the decoder can read".to_string());
    }
    match decode_hex(text) {
        Some(bytes) if !text.is_empty() => Ok(bytes),
        _ => Ok(text.as_bytes().to_vec()),
    }
}

/// The bytes of hex digits; `None` at the first character that is not one, or an odd count
/// (a JSON record fails at its first character).
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    /// Each byte's value as a hex digit, 0xff for any other byte.
    const VALUE: [u8; 256] = {
        let mut table = [0xff; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            table[b'a' as usize + i] = 10 + i as u8;
            table[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        table
    };
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(hex.len() / 2);
    let mut bad = 0u8;
    for pair in hex.as_bytes().chunks_exact(2) {
        let (high, low) = (VALUE[usize::from(pair[0])], VALUE[usize::from(pair[1])]);
        bad |= high | low;
        out.push(high << 4 | (low & 15));
    }
    // A record fails as a whole: checked once, after the loop, to keep the loop branch-free.
    (bad <= 15).then_some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_from_hex_bytea_or_text() {
        assert_eq!(record_bytes("\\x7b7d"), Ok(b"{}".to_vec()), "PostgreSQL's bytea");
        assert_eq!(record_bytes("7B7d"), Ok(b"{}".to_vec()), "Redshift's VARBYTE");
        assert_eq!(record_bytes("{\"a\":1}"), Ok(b"{\"a\":1}".to_vec()), "a text column");
        assert_eq!(record_bytes("not json"), Ok(b"not json".to_vec()));
        assert!(record_bytes("\\x7g").is_err());
        assert!(record_bytes("\\x7").is_err());
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(string_literal("shard_id", "shardId-000000000001").unwrap(), "'shardId-000000000001'");
        assert_eq!(string_literal("shard_id", "a'b").unwrap(), "'a''b'");
    }
}
