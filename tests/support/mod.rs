//! Shared test helpers: read a replicated DuckDB database back into logical values and
//! compare it with a model of the source tables.
#![allow(dead_code)]

use std::collections::BTreeMap;

use base64::Engine as _;
use duckdb::Connection;
use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::Warehouse;
use dynashift_core::dialect::{Dialect, DuckDb};
use dynashift_core::number::Number;
use dynashift_core::schema::TableSchema;
use dynashift_core::types::{text_form, ColumnMode, ColumnType};
use dynashift_core::value::{item_to_plain_json, AttrValue, Item};

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
                        row.insert(attr.clone(), typed_logical(v));
                    }
                    ColumnMode::Varchar => {
                        row.insert(attr.clone(), Logical::Text(text_form(v)));
                    }
                    ColumnMode::Document => {
                        if keys.get(table).is_some_and(|k| k.contains(attr)) {
                            row.insert(attr.clone(), typed_logical(v));
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
        AttrValue::S(s) => Logical::S(s.clone()),
        AttrValue::N(n) => Logical::N(n.to_string()),
        AttrValue::B(b) => Logical::B(b.clone()),
        AttrValue::Bool(b) => Logical::Bool(*b),
        other => Logical::Json(other.to_plain_json()),
    }
}

/// Reads every replicated table of `warehouse` back (live rows only).
pub fn read_back(warehouse: &mut DuckDbWarehouse) -> Tables {
    let catalog = warehouse.load_catalog().expect("catalog");
    let schema_name = warehouse.layout().target_schema.clone();
    let conn = warehouse.connection();
    let mut out = Tables::new();
    for (source, table) in &catalog.tables {
        let rows = read_table(conn, &schema_name, table);
        if !rows.is_empty() {
            out.insert(source.clone(), rows);
        }
    }
    out
}

fn read_table(
    conn: &Connection,
    schema: &str,
    table: &TableSchema,
) -> BTreeMap<String, BTreeMap<String, Logical>> {
    let d = DuckDb;
    let exprs: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Blob => format!("base64({})", d.quote(&c.name)),
            _ => format!("CAST({} AS VARCHAR)", d.quote(&c.name)),
        })
        .collect();
    let sql = format!(
        "SELECT \"_ddb_key\"{}{} FROM {} WHERE NOT \"_ddb_deleted\"",
        if exprs.is_empty() { "" } else { ", " },
        exprs.join(", "),
        d.qualified(schema, &table.name)
    );
    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = table.columns.len();
    let rows: Vec<(String, Vec<Option<String>>)> = stmt
        .query_map([], |r| {
            let key: String = r.get(0)?;
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(r.get::<_, Option<String>>(i + 1)?);
            }
            Ok((key, vals))
        })
        .and_then(|rows| rows.collect())
        .expect("read rows");
    let mut out = BTreeMap::new();
    for (key, vals) in rows {
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
