//! Shared test helpers: read a replicated DuckDB database back into logical values and
//! compare it with a model of the source tables.
#![allow(dead_code)]

use std::collections::BTreeMap;

pub mod counting_proxy;
pub mod data_api;
pub mod kinesalite;
pub mod moto;
pub mod oracle;
pub mod pg;
pub mod redshift_on_pg;
pub mod redshift_rules;
pub mod status_schema;
pub mod streaming_ddl;

use base64::Engine as _;
use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::pg_data_api::DataApiOnPostgresWarehouse;
use dynashift::warehouse::postgres::PostgresWarehouse;
use dynashift::warehouse::redshift_wire::RedshiftWireWarehouse;
use dynashift::warehouse::Warehouse;
use dynashift_core::dialect::{Dialect, DuckDb, Postgres};
use dynashift_core::schema::Catalog;
use dynashift_core::schema::TableSchema;
use dynashift_core::types::{ColumnMode, ColumnType};
use dynashift_core::value::{AttrValue, Item};
use oracle::{parse_json, Decimal, Json};

/// A loopback port bound and listening here, handed to a service as its file descriptor 3:
/// no other process can take the port between choosing it and the service using it.
pub fn listening_socket(port: u16) -> std::net::TcpListener {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot listen on 127.0.0.1:{port}: {e}"))
}

/// Makes `listener` the child's file descriptor 3 (the parent's copy may be dropped once
/// the child is spawned).
pub fn pass_as_fd3(command: &mut std::process::Command, listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::process::CommandExt as _;
    let fd = listener.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl) are made.
    unsafe {
        command.pre_exec(move || {
            let done = if fd == 3 { libc::fcntl(3, libc::F_SETFD, 0) } else { libc::dup2(fd, 3) };
            if done < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs the shell line `command` in `dir` under `script` (util-linux), which gives it a
/// pseudo-terminal of 160 columns and records what it draws, escape sequences and all.
pub fn on_a_terminal(dir: &std::path::Path, command: &str) -> std::process::Output {
    let command = format!("stty cols 160 rows 40; {command}");
    std::process::Command::new("script")
        .current_dir(dir)
        .args(["-qec", &command, "/dev/null"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `script` (util-linux) to give a command a terminal: {e}"))
}

/// `lines` as records of shard `s`, numbered from 1.
pub fn records(lines: &[String]) -> Vec<dynashift::source::RawRecord> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| dynashift::source::RawRecord {
            data: l.clone().into_bytes(),
            position: dynashift_core::Position::new("s", (i + 1).to_string()),
            problem: None,
        })
        .collect()
}

/// A stored value, as comparable across column layouts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Logical {
    S(String),
    N(Decimal),
    B(Vec<u8>),
    Bool(bool),
    Json(Json),
    /// A `varchar`-mode cell: compared as text, or as JSON where a document is expected.
    Text(String),
}

impl Logical {
    /// Whether the stored `self` holds what `expected` says.
    fn holds(&self, expected: &Logical) -> bool {
        match (self, expected) {
            (Logical::Text(t), Logical::Json(j)) => parse_json(t).as_ref() == Some(j),
            _ => self == expected,
        }
    }
}

/// One row: its cells by attribute (`\0item` for the document column) and its system
/// columns. In an expected row, `None` means "not checked".
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: BTreeMap<String, Logical>,
    pub deleted: bool,
    pub event: Option<String>,
    pub version: Option<i64>,
    /// The `_ddb_sequence` values (digits, no padding) the row may hold: every copy of the
    /// winning record was read at a place of its own, and any of them may be the one kept.
    pub sequences: Option<Vec<String>>,
}

impl Row {
    pub fn live(cells: BTreeMap<String, Logical>) -> Row {
        Row { cells, deleted: false, event: None, version: None, sequences: None }
    }
}

/// table → key (as `oracle::key_name` renders it) → row.
pub type Tables = BTreeMap<String, BTreeMap<String, Row>>;

/// The cells the warehouse must hold for `item` in `mode` (`keys`: the key attribute names,
/// which document mode keeps as columns).
pub fn expected_cells(item: &Item, mode: ColumnMode, keys: &[String]) -> BTreeMap<String, Logical> {
    let mut row = BTreeMap::new();
    for (attr, v) in item {
        if matches!(v, AttrValue::Null) {
            continue;
        }
        match mode {
            ColumnMode::Typed => {
                row.insert(attr.to_string(), typed_logical(v));
            }
            ColumnMode::Varchar | ColumnMode::Reference => {
                row.insert(attr.to_string(), varchar_logical(v));
            }
            ColumnMode::Document => {
                if keys.iter().any(|n| n == attr) {
                    row.insert(attr.to_string(), typed_logical(v));
                }
            }
        }
    }
    if mode == ColumnMode::Document {
        row.insert("\u{0}item".into(), Logical::Json(oracle::item_json(item)));
    }
    if mode == ColumnMode::Reference {
        // `dist_key`: the key attributes as typed JSON (compared in canonical form).
        let key: Item = item
            .iter()
            .filter(|(k, _)| keys.iter().any(|n| n == k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            key.len(),
            keys.len(),
            "the reference layout's expected dist_key needs the key attributes"
        );
        row.insert("\u{0}dist_key".into(), Logical::Text(oracle::key_name(&key)));
    }
    row
}

/// A landing table `schema.name` with the columns and types of Redshift's streaming view,
/// `kinesis_data` of type `data` (BYTEA, a domain, TEXT), in database `db`.
pub fn create_mv_landing(server: &pg::PgServer, db: &str, relation: &str, data: &str) {
    let schema = relation.split('.').next().unwrap_or(relation);
    server.exec(
        db,
        &format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE TABLE {relation} (approximate_arrival_timestamp TIMESTAMP, \
             partition_key VARCHAR(256), shard_id CHAR(20), sequence_number VARCHAR(128), \
             refresh_time TIMESTAMP, kinesis_data {data})"
        ),
    );
}

/// The row name of a model item: from its key attributes when their names are known,
/// else from the model's own key text.
pub fn row_name(model_key: &str, item: &Item, keys: Option<&Vec<String>>) -> String {
    let from_model = oracle::stored_key_name(model_key);
    if let Some(names) = keys {
        let key: Item = item
            .iter()
            .filter(|(k, _)| names.iter().any(|n| n == k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let named = oracle::key_name(&key);
        assert_eq!(named, from_model, "the model's key text and its key attributes disagree");
    }
    from_model
}

/// What the warehouse must hold for `model` in `mode`: every row live; system columns not
/// checked (see `Row`).
pub fn expected(
    model: &BTreeMap<String, BTreeMap<String, Item>>,
    mode: ColumnMode,
    keys: &BTreeMap<String, Vec<String>>,
) -> Tables {
    let mut out = Tables::new();
    for (table, items) in model {
        let names = keys.get(table);
        let rows = out.entry(table.clone()).or_default();
        for (key, item) in items {
            let cells = expected_cells(item, mode, names.map_or(&[][..], |n| &n[..]));
            rows.insert(row_name(key, item, names), Row::live(cells));
        }
    }
    out.retain(|_, rows| !rows.is_empty());
    out
}

/// A generated workload (`dynashift_testkit`), its records written by the tests' own
/// writer in varied spellings (a re-delivery re-spelled, with its original's `eventID`).
pub fn generate(
    spec: &dynashift_testkit::WorkloadSpec,
    micros_precision: bool,
) -> (Vec<String>, dynashift_testkit::Model) {
    let (events, model) = dynashift_testkit::generate_events(spec, micros_precision);
    let mut rng = dynashift_testkit::Rng::new(spec.seed ^ 0x5eed);
    let lines = events
        .iter()
        .map(|(event, id)| {
            oracle::RecordWriter { rng: &mut rng }.kinesis_record(event, micros_precision, *id)
        })
        .collect();
    (lines, model)
}

/// What the warehouse must hold for a generated workload's model (hard deletes, typed
/// columns): its items, each with the time and kind of its last change.
pub fn expected_model(model: &dynashift_testkit::Model) -> Tables {
    with_last_changes(expected(&model.tables, ColumnMode::Typed, &BTreeMap::new()), model)
}

/// `expected` rows of a generated workload, given the time and kind of each item's last
/// change.
pub fn with_last_changes(mut out: Tables, model: &dynashift_testkit::Model) -> Tables {
    for (table, rows) in &mut out {
        let last: BTreeMap<String, _> =
            model.last_change[table].iter().map(|(k, last)| (oracle::stored_key_name(k), *last)).collect();
        for (key, row) in rows.iter_mut() {
            let (micros, kind) =
                *last.get(key).unwrap_or_else(|| panic!("{table}: no last change for {key}"));
            row.version = Some(micros);
            row.event = Some(oracle::stored_event(kind).to_string());
        }
    }
    out
}

fn typed_logical(v: &AttrValue) -> Logical {
    match v {
        AttrValue::S(s) => Logical::S(s.to_string()),
        AttrValue::N(n) => Logical::N(Decimal::of(n)),
        AttrValue::B(b) => Logical::B(b.clone()),
        AttrValue::Bool(b) => Logical::Bool(*b),
        other => Logical::Json(oracle::plain_json(other)),
    }
}

/// `varchar` mode: strings as they are, numbers in their documented text form, booleans as
/// `true`/`false`, binary as base64, documents as plain JSON.
fn varchar_logical(v: &AttrValue) -> Logical {
    match v {
        AttrValue::S(s) => Logical::Text(s.to_string()),
        AttrValue::N(n) => Logical::Text(Decimal::of(n).canonical()),
        AttrValue::B(b) => Logical::Text(base64::engine::general_purpose::STANDARD.encode(b)),
        AttrValue::Bool(b) => Logical::Text(b.to_string()),
        other => Logical::Json(oracle::plain_json(other)),
    }
}

/// What reading a warehouse back needs from it.
pub trait ReadBack {
    fn catalog(&mut self) -> Catalog;
    fn target_schema(&self) -> String;
    fn dialect(&self) -> &'static dyn Dialect;
    /// SQL expression giving a BLOB column's base64 text.
    fn base64(&self, column: &str) -> String;
    /// Every row of `sql`, every column as text.
    fn text_rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>>;
}

impl ReadBack for DuckDbWarehouse {
    fn catalog(&mut self) -> Catalog {
        self.load_catalog().expect("catalog")
    }
    fn target_schema(&self) -> String {
        self.layout().target_schema.clone()
    }
    fn dialect(&self) -> &'static dyn Dialect {
        &DuckDb
    }
    fn base64(&self, column: &str) -> String {
        format!("base64({column})")
    }
    fn text_rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let conn = self.connection();
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut rows = stmt.query([]).expect("query");
        let mut out = Vec::new();
        while let Some(row) = rows.next().expect("row") {
            let n = row.as_ref().column_count();
            out.push((0..n).map(|i| row.get::<_, Option<String>>(i).expect("text")).collect());
        }
        out
    }
}

/// `ReadBack` for the warehouses on a PostgreSQL session (PostgreSQL's own, and Redshift's
/// plans run on PostgreSQL): they read back alike, in PostgreSQL's SQL.
macro_rules! read_back_on_postgres {
    ($($warehouse:ty),*) => {$(
        impl ReadBack for $warehouse {
            fn catalog(&mut self) -> Catalog {
                self.load_catalog().expect("catalog")
            }
            fn target_schema(&self) -> String {
                self.session().layout().target_schema.clone()
            }
            fn dialect(&self) -> &'static dyn Dialect {
                &Postgres
            }
            fn base64(&self, column: &str) -> String {
                // encode() wraps base64 at 76 characters.
                format!("translate(encode({column}, 'base64'), E'\\n', '')")
            }
            fn text_rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
                self.session_mut().query_text(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        }
    )*};
}

read_back_on_postgres!(PostgresWarehouse, RedshiftWireWarehouse, DataApiOnPostgresWarehouse);

/// Reads every row of every replicated table of `warehouse` back, soft-deleted ones too,
/// with their system columns.
pub fn read_back(warehouse: &mut dyn ReadBack) -> Tables {
    let catalog = warehouse.catalog();
    let mut out = Tables::new();
    for (source, table) in &catalog.tables {
        let rows = read_table(warehouse, table);
        if !rows.is_empty() {
            out.insert(source.clone(), rows);
        }
    }
    out
}

/// The system columns read back, before the attribute columns.
const SYSTEM: [&str; 5] = ["_ddb_key", "_ddb_deleted", "_ddb_event", "_ddb_version", "_ddb_sequence"];

fn read_table(w: &mut dyn ReadBack, table: &TableSchema) -> BTreeMap<String, Row> {
    let d = w.dialect();
    let exprs: Vec<String> = SYSTEM
        .iter()
        .map(|c| format!("CAST({} AS VARCHAR)", d.quote(c)))
        .chain(table.columns.iter().map(|c| match c.ty {
            ColumnType::Blob => w.base64(&d.quote(&c.name)),
            _ => format!("CAST({} AS VARCHAR)", d.quote(&c.name)),
        }))
        .collect();
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), d.qualified(&w.target_schema(), &table.name));
    let mut out = BTreeMap::new();
    for vals in w.text_rows(&sql) {
        let (system, cells) = vals.split_at(SYSTEM.len());
        let text =
            |i: usize| system[i].clone().unwrap_or_else(|| panic!("{} is NULL in {}", SYSTEM[i], table.name));
        let key = oracle::stored_key_name(&text(0));
        let deleted = match text(1).as_str() {
            "true" => true,
            "false" => false,
            other => panic!("_ddb_deleted is {other:?}"),
        };
        let version = text(3).parse::<i64>().unwrap_or_else(|e| panic!("_ddb_version {}: {e}", text(3)));
        let sequence = text(4);
        let digits = sequence.trim_start_matches('0');
        let mut row = Row {
            cells: BTreeMap::new(),
            deleted,
            event: Some(text(2)),
            version: Some(version),
            sequences: Some(vec![if digits.is_empty() { "0".into() } else { digits.into() }]),
        };
        for (c, v) in table.columns.iter().zip(cells) {
            let Some(v) = v.clone() else { continue };
            let (attr, logical) = match &c.attribute {
                None if table.mode == ColumnMode::Reference => {
                    assert_eq!(c.name, "dist_key", "the reference layout's key column");
                    ("\u{0}dist_key".to_string(), Logical::Text(oracle::stored_key_name(&v)))
                }
                None => ("\u{0}item".to_string(), Logical::Json(json_cell(&v))),
                Some(a) if matches!(table.mode, ColumnMode::Varchar | ColumnMode::Reference) => {
                    if table.mode == ColumnMode::Reference {
                        assert!(
                            !c.name.chars().any(char::is_uppercase),
                            "reference columns are lower-cased: {}",
                            c.name
                        );
                    }
                    (a.clone(), Logical::Text(v))
                }
                Some(a) => (a.clone(), stored_logical(c.ty, &v)),
            };
            let previous = row.cells.insert(attr.clone(), logical);
            assert!(previous.is_none(), "attribute {attr:?} of {key} stored in two columns");
        }
        assert!(out.insert(key.clone(), row).is_none(), "key {key} appears twice in {}", table.name);
    }
    out
}

fn json_cell(v: &str) -> Json {
    parse_json(v).unwrap_or_else(|| panic!("stored JSON {v:?} does not parse"))
}

fn stored_logical(ty: ColumnType, v: &str) -> Logical {
    match ty {
        ColumnType::Text => Logical::S(v.to_string()),
        ColumnType::BigInt | ColumnType::Decimal(_) | ColumnType::NumberText => {
            Logical::N(Decimal::parse(v).unwrap_or_else(|| panic!("stored number {v:?} is not a number")))
        }
        ColumnType::Bool => Logical::Bool(match v {
            "true" => true,
            "false" => false,
            other => panic!("stored boolean {other:?}"),
        }),
        ColumnType::Blob => Logical::B(base64::engine::general_purpose::STANDARD.decode(v).expect("base64")),
        ColumnType::Json => Logical::Json(json_cell(v)),
    }
}

/// Compares and, on a difference, names the first differing table, key and attribute.
pub fn assert_tables_equal(actual: &Tables, expected: &Tables) {
    for (table, rows) in expected {
        let got = actual.get(table).cloned().unwrap_or_default();
        for (key, row) in rows {
            let Some(g) = got.get(key) else { panic!("{table}: row {key} missing; expected {row:?}") };
            let differs = |what: &str| -> ! {
                panic!("{table}: row {key} differs in {what}\n  got      {g:?}\n  expected {row:?}")
            };
            if g.cells.len() != row.cells.len()
                || row.cells.iter().any(|(attr, e)| g.cells.get(attr).is_none_or(|a| !a.holds(e)))
            {
                differs("its cells");
            }
            if g.deleted != row.deleted {
                differs("_ddb_deleted");
            }
            if row.event.is_some() && g.event != row.event {
                differs("_ddb_event");
            }
            if row.version.is_some() && g.version != row.version {
                differs("_ddb_version");
            }
            if let (Some(allowed), Some([stored])) = (&row.sequences, g.sequences.as_deref()) {
                if !allowed.contains(stored) {
                    differs("_ddb_sequence");
                }
            }
        }
        for key in got.keys() {
            assert!(rows.contains_key(key), "{table}: unexpected row {key}: {:?}", got[key]);
        }
    }
    for table in actual.keys() {
        assert!(expected.contains_key(table), "unexpected rows in {table}: {:?}", actual[table]);
    }
}

/// The whole number just before the first `word` in `text` (`count_before("12 records",
/// " records") == Some(12)`; a bare substring check would take "12 records" for "2 records").
/// Memory a run may take past its configured budget (`defaults.memory`), as documented in
/// docs/configuration.md: the process itself, and DuckDB's working memory past its limit.
pub const MEMORY_PAST_BUDGET_MB: u64 = 160;

/// `count` inserts of items of `bytes` bytes each (one string attribute), as change lines.
pub fn large_item_lines(count: usize, bytes: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                r#"{{"eventID":"e{i}","eventName":"INSERT","tableName":"Large","dynamodb":{{"ApproximateCreationDateTime":{},"Keys":{{"id":{{"S":"k{i}"}}}},"NewImage":{{"id":{{"S":"k{i}"}},"body":{{"S":"{}"}}}}}}}}"#,
                1_764_000_000_000u64 + i as u64,
                char::from(b'a' + (i % 26) as u8).to_string().repeat(bytes)
            )
        })
        .collect()
}

/// The peak memory a run printed (`peak memory N MB`).
pub fn peak_memory_mb(output: &str) -> u64 {
    output
        .split("peak memory ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|mb| mb.parse().ok())
        .unwrap_or_else(|| panic!("the run printed no peak memory: {output}"))
}

pub fn count_before(text: &str, word: &str) -> Option<u64> {
    let at = text.find(word)?;
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// A `dynashift` process whose debug log is watched for committed batches.
pub struct Watched {
    pub child: std::process::Child,
    commits: std::sync::mpsc::Receiver<()>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Watched {
    /// Starts `command` with debug logging and its standard error read line by line.
    pub fn start(mut command: std::process::Command) -> Watched {
        use std::io::BufRead as _;
        use std::process::Stdio;
        let mut child = command
            .env("DYNASHIFT_LOG", "warn,dynashift::run=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dynashift");
        let stderr = child.stderr.take().expect("piped standard error");
        let mut stdout = child.stdout.take().expect("piped standard output");
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let printed = out.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            printed.lock().unwrap_or_else(|p| p.into_inner()).push_str(&text);
        });
        let (tx, commits) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("batch committed") {
                    let _ = tx.send(());
                }
                let mut log = kept.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Watched { child, commits, log, out }
    }

    /// Waits until the process has logged `n` more committed batches: false if it ended
    /// first. Gives up after two minutes.
    pub fn wait_commits(&mut self, n: usize) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        for _ in 0..n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.commits.recv_timeout(left) {
                Ok(()) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no batch committed within two minutes:\n{}", self.log())
                }
            }
        }
        true
    }

    /// SIGKILL, and the exit status (a run that ended before the signal keeps its own).
    pub fn kill(&mut self) -> std::process::ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reaping dynashift")
    }

    /// SIGKILLs the process if it is still running (true), or checks that it ended by
    /// itself with success (false): a run that failed on its own is never taken for a kill.
    pub fn kill_or_check_ended(&mut self, round: usize) -> bool {
        use std::os::unix::process::ExitStatusExt as _;
        if self.child.try_wait().expect("polling dynashift").is_none() {
            let status = self.kill();
            if status.signal() == Some(libc::SIGKILL) {
                return true;
            }
            assert!(status.success(), "round {round}: {status}\n{}", self.log());
            return false;
        }
        let (status, log) = self.wait();
        assert!(status.success(), "round {round}: {status}\n{log}");
        false
    }

    /// Waits for the process to end by itself: its status and its log.
    pub fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().expect("waiting for dynashift");
        // The reader thread ends with the pipe; give it a moment to take the last lines.
        for _ in 0..100 {
            if self.commits.recv_timeout(std::time::Duration::from_millis(10))
                == Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
            {
                break;
            }
        }
        (status, self.log())
    }

    /// Stops the process with SIGINT once it catches signals, and checks that it stopped
    /// cleanly within five seconds; returns its log.
    pub fn interrupt_promptly(&mut self) -> String {
        wait_until_signals_are_caught(&mut self.child);
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let started = std::time::Instant::now();
        let (status, log) = self.wait();
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "stopping took too long");
        assert!(status.success(), "{log}");
        log
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What the process printed on standard output (complete once it has ended and been
    /// waited for).
    pub fn stdout(&self) -> String {
        for _ in 0..100 {
            if std::sync::Arc::strong_count(&self.out) == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.out.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Starts `dynashift run --config config` `rounds` times and SIGKILLs each run a random
/// 0–20 ms after it logged its first committed batch; a run that ends by itself must
/// succeed. After each round, `progress` reads the committed progress (records consumed,
/// out of `total`). Returns how many kills landed in the work: progress strictly between
/// none and all, and moved since the round before.
pub fn kill_and_restart(
    bin: &str,
    config: &std::path::Path,
    rounds: usize,
    seed: u64,
    total: usize,
    progress: &mut dyn FnMut() -> usize,
) -> usize {
    let command = || {
        let mut command = std::process::Command::new(bin);
        command.args(["run", "--config"]).arg(config);
        command
    };
    kill_and_restart_command(&command, rounds, seed, total, progress)
}

/// `kill_and_restart` for any command `make` builds (a `backfill`, say).
pub fn kill_and_restart_command(
    make: &dyn Fn() -> std::process::Command,
    rounds: usize,
    seed: u64,
    total: usize,
    progress: &mut dyn FnMut() -> usize,
) -> usize {
    let mut rng = dynashift_testkit::Rng::new(seed);
    let mut landed = 0;
    let mut before = progress();
    for round in 0..rounds {
        let mut run = Watched::start(make());
        let killed = if run.wait_commits(1) {
            std::thread::sleep(std::time::Duration::from_millis(rng.below(20)));
            run.kill_or_check_ended(round)
        } else {
            let (status, log) = run.wait();
            assert!(status.success(), "round {round}: {log}");
            false
        };
        let now = progress();
        assert!(now >= before, "round {round}: committed progress went back from {before} to {now}");
        assert!(now <= total, "round {round}: {now} records consumed of {total}");
        if killed && now > before && now < total {
            landed += 1;
        }
        before = now;
    }
    landed
}

/// Waits until `child` catches SIGINT and SIGTERM (its handlers are installed), so that a
/// signal sent next exercises the clean stop rather than racing the process's start-up. Reads
/// the caught-signal mask from `/proc` (the tests run on Linux).
pub fn wait_until_signals_are_caught(child: &mut std::process::Child) {
    let wanted: u64 = (1 << (libc::SIGINT - 1)) | (1 << (libc::SIGTERM - 1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process {} ended ({status}) before it installed its signal handlers", child.id());
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(0);
        if caught & wanted == wanted {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {} never installed its signal handlers",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
