//! Shared test helpers: read a replicated DuckDB database back into logical values and
//! compare it with a model of the source tables.
#![allow(dead_code)]

use std::collections::BTreeMap;

pub mod data_api;
pub mod kinesalite;
pub mod moto;
pub mod pg;
pub mod redshift_on_pg;
pub mod redshift_rules;

use base64::Engine as _;
use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::postgres::PostgresWarehouse;
use dynashift::warehouse::Warehouse;
use dynashift_core::dialect::{Dialect, DuckDb, Postgres};
use dynashift_core::number::Number;
use dynashift_core::schema::Catalog;
use dynashift_core::schema::TableSchema;
use dynashift_core::types::{text_form, ColumnMode, ColumnType};
use dynashift_core::value::{item_to_plain_json, AttrValue, Item};

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
    N(String),
    B(Vec<u8>),
    Bool(bool),
    Json(String),
    Text(String),
}

/// table → key text → attribute (or `item` in document mode) → value.
pub type Tables = BTreeMap<String, BTreeMap<String, BTreeMap<String, Logical>>>;

/// What the warehouse must hold for `model` in `mode`.
pub fn expected(
    model: &BTreeMap<String, BTreeMap<String, Item>>,
    mode: ColumnMode,
    keys: &BTreeMap<String, Vec<String>>,
) -> Tables {
    let mut out = Tables::new();
    for (table, items) in model {
        let rows = out.entry(table.clone()).or_default();
        for (key, item) in items {
            let mut row = BTreeMap::new();
            for (attr, v) in item {
                if matches!(v, AttrValue::Null) {
                    continue;
                }
                match mode {
                    ColumnMode::Typed => {
                        row.insert(attr.to_string(), typed_logical(v));
                    }
                    ColumnMode::Varchar => {
                        row.insert(attr.to_string(), Logical::Text(text_form(v).to_string()));
                    }
                    ColumnMode::Document => {
                        if keys.get(table).is_some_and(|k| k.iter().any(|n| n == attr)) {
                            row.insert(attr.to_string(), typed_logical(v));
                        }
                    }
                }
            }
            if mode == ColumnMode::Document {
                row.insert("\u{0}item".into(), Logical::Json(item_to_plain_json(item)));
            }
            rows.insert(key.clone(), row);
        }
    }
    out.retain(|_, rows| !rows.is_empty());
    out
}

fn typed_logical(v: &AttrValue) -> Logical {
    match v {
        AttrValue::S(s) => Logical::S(s.to_string()),
        AttrValue::N(n) => Logical::N(n.to_string()),
        AttrValue::B(b) => Logical::B(b.clone()),
        AttrValue::Bool(b) => Logical::Bool(*b),
        other => Logical::Json(other.to_plain_json()),
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
    /// The warehouse's own text form of a JSON value (PostgreSQL's jsonb reorders keys).
    fn json_text(&mut self, json: &str) -> String {
        json.to_string()
    }
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

impl ReadBack for PostgresWarehouse {
    fn catalog(&mut self) -> Catalog {
        self.load_catalog().expect("catalog")
    }
    fn target_schema(&self) -> String {
        self.layout().target_schema.clone()
    }
    fn dialect(&self) -> &'static dyn Dialect {
        &Postgres
    }
    fn base64(&self, column: &str) -> String {
        // encode() wraps base64 at 76 characters.
        format!("translate(encode({column}, 'base64'), E'\\n', '')")
    }
    fn text_rows(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.query_text(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
    fn json_text(&mut self, json: &str) -> String {
        let literal = json.replace('\'', "''");
        let rows = self.text_rows(&format!("SELECT CAST(CAST('{literal}' AS JSONB) AS TEXT)"));
        rows[0][0].clone().expect("json text")
    }
}

/// Reads every replicated table of `warehouse` back (live rows only).
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

/// `expected`, with its JSON values in the warehouse's own text form.
pub fn normalized(warehouse: &mut dyn ReadBack, mut tables: Tables) -> Tables {
    for rows in tables.values_mut() {
        for row in rows.values_mut() {
            for v in row.values_mut() {
                if let Logical::Json(j) = v {
                    *j = warehouse.json_text(j);
                }
            }
        }
    }
    tables
}

fn read_table(w: &mut dyn ReadBack, table: &TableSchema) -> BTreeMap<String, BTreeMap<String, Logical>> {
    let d = w.dialect();
    let exprs: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Blob => w.base64(&d.quote(&c.name)),
            _ => format!("CAST({} AS VARCHAR)", d.quote(&c.name)),
        })
        .collect();
    let sql = format!(
        "SELECT \"_ddb_key\"{}{} FROM {} WHERE NOT \"_ddb_deleted\"",
        if exprs.is_empty() { "" } else { ", " },
        exprs.join(", "),
        d.qualified(&w.target_schema(), &table.name)
    );
    let mut out = BTreeMap::new();
    for mut vals in w.text_rows(&sql) {
        let key = vals.remove(0).expect("key");
        let mut row = BTreeMap::new();
        for (c, v) in table.columns.iter().zip(vals) {
            let Some(v) = v else { continue };
            let (attr, logical) = match &c.attribute {
                None => ("\u{0}item".to_string(), Logical::Json(v)),
                Some(a) if table.mode == ColumnMode::Varchar => (a.clone(), Logical::Text(v)),
                Some(a) => (a.clone(), stored_logical(c.ty, &v)),
            };
            let previous = row.insert(attr.clone(), logical);
            assert!(previous.is_none(), "attribute {attr:?} of {key} stored in two columns");
        }
        assert!(out.insert(key.clone(), row).is_none(), "key {key} appears twice in {}", table.name);
    }
    out
}

fn stored_logical(ty: ColumnType, v: &str) -> Logical {
    match ty {
        ColumnType::Text => Logical::S(v.to_string()),
        ColumnType::BigInt | ColumnType::Decimal(_) | ColumnType::NumberText => {
            Logical::N(Number::parse(v).unwrap_or_else(|e| panic!("stored number {v}: {e}")).to_string())
        }
        ColumnType::Bool => Logical::Bool(v == "true"),
        ColumnType::Blob => Logical::B(base64::engine::general_purpose::STANDARD.decode(v).expect("base64")),
        ColumnType::Json => Logical::Json(v.to_string()),
    }
}

/// Compares and, on a difference, names the first differing table, key and attribute.
pub fn assert_tables_equal(actual: &Tables, expected: &Tables) {
    for (table, rows) in expected {
        let got = actual.get(table).cloned().unwrap_or_default();
        for (key, row) in rows {
            match got.get(key) {
                None => panic!("{table}: row {key} missing; expected {row:?}"),
                Some(g) if g != row => {
                    panic!("{table}: row {key} differs\n  got      {g:?}\n  expected {row:?}")
                }
                _ => {}
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

/// Starts `dynashift run --config config` `rounds` times, SIGKILLing each run that is still
/// going after a random 100 ms + up to `spread_ms`; a run that ends by itself must succeed.
/// Returns how many runs were killed mid-run.
pub fn kill_and_restart(
    bin: &str,
    config: &std::path::Path,
    rounds: usize,
    spread_ms: u64,
    seed: u64,
) -> usize {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut rng = dynashift::workload::Rng::new(seed);
    let mut killed_mid_run = 0;
    for round in 0..rounds {
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dynashift");
        let deadline = Instant::now() + Duration::from_millis(100 + rng.below(spread_ms));
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("polling dynashift") {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match finished {
            Some(status) => {
                let out = child.wait_with_output().expect("dynashift output");
                assert!(status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
            }
            None => {
                child.kill().expect("SIGKILL");
                child.wait().expect("reaping dynashift");
                killed_mid_run += 1;
            }
        }
    }
    killed_mid_run
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
