//! The statements a batch runs, built from a plan and a dialect. Identifiers are quoted by
//! the dialect; values travel only as bound parameters or staged data.

use std::fmt;

use crate::dialect::Dialect;
use crate::plan::{DeleteMode, TablePlan};
use crate::schema::{SystemType, TableSchema, SYSTEM_COLUMNS};

/// A value bound to one of a statement's placeholders.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// A string.
    Text(String),
    /// A 64-bit integer.
    Int(i64),
    /// Binary data (bound as hex text where `Dialect::bytes_from_hex_param` says so).
    Bytes(Vec<u8>),
}

/// One SQL statement and the values of its placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL text, with placeholders as the dialect spells them (`$1`, …).
    pub sql: String,
    /// The placeholders' values, the first for `$1`.
    pub params: Vec<Param>,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(sql: impl Into<String>) -> Statement {
        Statement { sql: sql.into(), params: Vec::new() }
    }

    /// A statement and its parameters.
    pub fn with(sql: impl Into<String>, params: Vec<Param>) -> Statement {
        Statement { sql: sql.into(), params }
    }
}

/// SQL followed by its parameters as a comment, for `plan` and `--dry-run`.
impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};", self.sql)?;
        if !self.params.is_empty() {
            let shown: Vec<String> = self
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let v = match p {
                        Param::Null => "NULL".to_string(),
                        Param::Text(s) if s.chars().count() > 80 => {
                            format!("{:?}…", s.chars().take(80).collect::<String>())
                        }
                        Param::Text(s) => format!("{s:?}"),
                        Param::Int(n) => n.to_string(),
                        Param::Bytes(b) => format!("<{} bytes>", b.len()),
                    };
                    format!("${} = {v}", i + 1)
                })
                .collect();
            write!(f, "  -- {}", shown.join(", "))?;
        }
        Ok(())
    }
}

/// Where things live in the warehouse.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Schema of the replicated tables (default `dynamodb`).
    pub target_schema: String,
    /// Schema of the control tables (`_dynashift`).
    pub control_schema: String,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout { target_schema: "dynamodb".into(), control_schema: "_dynashift".into() }
    }
}

/// Control tables: the product's whole state lives in the warehouse.
pub fn control_tables(d: &dyn Dialect, layout: &Layout) -> Vec<Statement> {
    let c = |t: &str| d.qualified(&layout.control_schema, t);
    let text = d.system_type(SystemType::Text);
    let ts = d.system_type(SystemType::Timestamp);
    let bigint = d.system_type(SystemType::BigInt);
    let boolean = d.system_type(SystemType::Bool);
    let mut out = vec![
        Statement::new(format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(&layout.control_schema))),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {} (source_table {text} NOT NULL, target_schema {text} NOT NULL, \
             target_name {text} NOT NULL, columns_mode {text} NOT NULL, naming {text} NOT NULL, \
             key_attributes {text} NOT NULL, created_at {ts} NOT NULL, changes_applied {bigint} NOT NULL, \
             deletes_applied {bigint} NOT NULL, expired_applied {bigint} NOT NULL, expired_kept {bigint} NOT NULL, \
             last_version {bigint} NOT NULL)",
            c("tables")
        )),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {} (source_table {text} NOT NULL, ordinal {bigint} NOT NULL, \
             attribute {text}, column_name {text} NOT NULL, column_type {text} NOT NULL, \
             is_variant {boolean} NOT NULL, added_at {ts} NOT NULL)",
            c("columns")
        )),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {} (source_table {text} NOT NULL, item_key {text} NOT NULL, \
             version {bigint} NOT NULL, sequence {text} NOT NULL, event {text} NOT NULL, deleted_at {ts} NOT NULL, \
             event_ids {text})",
            c("tombstones")
        )),
        Statement::new(format!("CREATE TABLE IF NOT EXISTS {} (name {text} NOT NULL, value {text} NOT NULL)", c("meta"))),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {} (source {text} NOT NULL, shard {text} NOT NULL, \
             sequence {text} NOT NULL, updated_at {ts} NOT NULL)",
            c("checkpoints")
        )),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {} (source {text} NOT NULL, shard {text} NOT NULL, sequence {text} NOT NULL, \
             table_name {text}, reason {text} NOT NULL, raw_text {text} NOT NULL, raw_bytes {}, rejected_at {ts} NOT NULL)",
            c("rejects"),
            d.column_type(crate::types::ColumnType::Blob)
        )),
        Statement::new(format!(
            "CREATE TABLE IF NOT EXISTS {} (committed_at {ts} NOT NULL, records {bigint} NOT NULL, \
             changes {bigint} NOT NULL, applied {bigint} NOT NULL, rejects {bigint} NOT NULL)",
            c("runs")
        )),
    ];
    out.extend(d.control_indexes(&layout.control_schema).into_iter().map(Statement::new));
    out
}

/// DDL for a plan's new table or columns, and their registry rows.
pub fn schema_changes(
    d: &dyn Dialect,
    layout: &Layout,
    schema: &TableSchema,
    plan: &TablePlan,
) -> Vec<Statement> {
    let mut out = Vec::new();
    let target = d.qualified(&layout.target_schema, &schema.name);
    let src = || Param::Text(schema.source_table.clone());
    if plan.create {
        out.push(Statement::new(format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(&layout.target_schema))));
        let mut cols: Vec<String> = plan
            .new_columns
            .iter()
            .map(|c| format!("{} {}", d.quote(&c.name), d.column_type(c.ty)))
            .collect();
        cols.extend(SYSTEM_COLUMNS.iter().map(|(n, t)| format!("{} {}", d.quote(n), d.system_type(*t))));
        out.push(Statement::new(format!("CREATE TABLE {target} ({}){}", cols.join(", "), d.table_suffix())));
        if let Some(index) = d.key_index(&layout.target_schema, &schema.name) {
            out.push(Statement::new(index));
        }
        let keys = serde_json::to_string(&schema.key_attributes).unwrap_or_else(|_| "[]".into());
        out.push(Statement::with(
            format!(
                "INSERT INTO {} (source_table, target_schema, target_name, columns_mode, naming, key_attributes, \
                 created_at, changes_applied, deletes_applied, expired_applied, expired_kept, last_version) \
                 VALUES ({}, {}, 0, 0, 0, 0, 0)",
                d.qualified(&layout.control_schema, "tables"),
                d.params(1, 6),
                d.now()
            ),
            vec![
                src(),
                Param::Text(layout.target_schema.clone()),
                Param::Text(schema.name.clone()),
                Param::Text(schema.mode.as_str().into()),
                Param::Text(schema.naming.as_str().into()),
                Param::Text(keys),
            ],
        ));
    } else {
        for c in &plan.new_columns {
            out.push(Statement::new(format!(
                "ALTER TABLE {target} ADD COLUMN {} {}",
                d.quote(&c.name),
                d.column_type(c.ty)
            )));
        }
    }
    let first_new = schema.columns.len() - plan.new_columns.len();
    for (offset, c) in plan.new_columns.iter().enumerate() {
        out.push(Statement::with(
            format!(
                "INSERT INTO {} (source_table, ordinal, attribute, column_name, column_type, is_variant, added_at) \
                 VALUES ({}, {}, {})",
                d.qualified(&layout.control_schema, "columns"),
                d.params(1, 5),
                if c.is_variant { "TRUE" } else { "FALSE" },
                d.now()
            ),
            vec![
                src(),
                Param::Int((first_new + offset) as i64),
                c.attribute.clone().map(Param::Text).unwrap_or(Param::Null),
                Param::Text(c.name.clone()),
                Param::Text(c.ty.code()),
            ],
        ));
    }
    out
}

/// The control columns that lead every stage, in their order. Each stage writer matches on
/// these (exhaustively), so a new control column cannot be forgotten by one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageControl {
    /// `_ddb_key`: the key as text.
    Key,
    /// `_ddb_version`: the change's creation time in microseconds.
    Version,
    /// `_ddb_sequence`: the record's sequence, zero-padded to compare as text.
    Sequence,
    /// `_ddb_event`: the kind of event (`INSERT`, `MODIFY`, `REMOVE`, `EXPIRE`).
    Event,
    /// `_ddb_op`: what the apply does with the row (upsert or delete).
    Op,
    /// `_ddb_deleted`: whether the row is a tombstone.
    Deleted,
    /// `_ddb_event_ids`: the change's eventID and those of changes it folded, or NULL.
    EventIds,
}

/// The target columns a row appended without its stage fills, in this order: the control
/// columns but `_ddb_op`, the staged cells' columns (`cells`), `_ddb_synced_at`.
pub fn append_columns<'a>(cells: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> =
        StageControl::ALL.iter().filter(|c| **c != StageControl::Op).map(|c| c.name()).collect();
    names.extend(cells);
    names.push("_ddb_synced_at");
    names
}

impl StageControl {
    /// Every control column, in stage order.
    pub const ALL: [StageControl; 7] = [
        StageControl::Key,
        StageControl::Version,
        StageControl::Sequence,
        StageControl::Event,
        StageControl::Op,
        StageControl::Deleted,
        StageControl::EventIds,
    ];

    /// The column's name in the stage.
    pub fn name(self) -> &'static str {
        match self {
            StageControl::Key => "_ddb_key",
            StageControl::Version => "_ddb_version",
            StageControl::Sequence => "_ddb_sequence",
            StageControl::Event => "_ddb_event",
            StageControl::Op => "_ddb_op",
            StageControl::Deleted => "_ddb_deleted",
            StageControl::EventIds => "_ddb_event_ids",
        }
    }

    /// The column's type, before a dialect names it.
    pub fn system_type(self) -> SystemType {
        match self {
            StageControl::Version => SystemType::BigInt,
            StageControl::Deleted => SystemType::Bool,
            _ => SystemType::Text,
        }
    }
}

/// How many control columns lead every stage (see `stage_columns`).
pub const STAGE_CONTROL_COLUMNS: usize = StageControl::ALL.len();

/// Staging columns: fixed control columns, then `c0, c1, …` for the staged data columns.
pub fn stage_columns(d: &dyn Dialect, schema: &TableSchema, plan: &TablePlan) -> Vec<(String, &'static str)> {
    let mut cols: Vec<(String, &'static str)> =
        StageControl::ALL.iter().map(|c| (c.name().to_string(), d.system_type(c.system_type()))).collect();
    for (i, &col) in plan.staged.iter().enumerate() {
        cols.push((format!("c{i}"), d.stage_type(schema.columns[col].ty)));
    }
    cols
}

/// The set-based apply of one table's staged rows: drop stale changes (older than the row
/// or its tombstone), replace rows, record tombstones, count. Runs inside the batch's
/// transaction, after the stage is loaded.
pub fn apply_statements(
    d: &dyn Dialect,
    layout: &Layout,
    schema: &TableSchema,
    plan: &TablePlan,
    stage: &str,
) -> Vec<Statement> {
    let t = d.qualified(&layout.target_schema, &schema.name);
    let s = d.quote(stage);
    let q = |n: &str| d.quote(n);
    let tomb = d.qualified(&layout.control_schema, "tombstones");
    let src = || Param::Text(schema.source_table.clone());
    // Not newer: an older time; or the same time and an earlier or equal place in the
    // shard, or an `eventID` already applied at that time (a re-delivery, see `EventIds`;
    // the stage's own id is the first of its `_ddb_event_ids`).
    let newer_or_same = |alias: &str, v: &str, seq: &str, ids: &str| {
        format!(
            "({a}.{v} > {s}.{sv} OR ({a}.{v} = {s}.{sv} AND ({a}.{seq} >= {s}.{ss} \
             OR POSITION(',' || NULLIF(SPLIT_PART({s}.{own}, ',', 2), '') || ',' IN {a}.{ids}) > 0)))",
            a = alias,
            v = q(v),
            seq = q(seq),
            ids = q(ids),
            s = s,
            sv = q("_ddb_version"),
            ss = q("_ddb_sequence"),
            own = q("_ddb_event_ids"),
        )
    };
    let key = q("_ddb_key");
    // Changes not newer than the row they would replace, or than the key's tombstone, lose.
    let row_guard = format!(
        "EXISTS (SELECT 1 FROM {t} AS cur WHERE cur.{key} = {s}.{key} AND {})",
        newer_or_same("cur", "_ddb_version", "_ddb_sequence", "_ddb_event_ids")
    );
    let tomb_guard = format!(
        "EXISTS (SELECT 1 FROM {tomb} AS tomb WHERE tomb.source_table = {} AND tomb.item_key = {s}.{key} AND {})",
        d.param(1),
        newer_or_same("tomb", "version", "sequence", "event_ids")
    );
    let mut out = if d.separate_guards() {
        vec![
            Statement::new(format!("DELETE FROM {s} WHERE {row_guard}")),
            Statement::with(format!("DELETE FROM {s} WHERE {tomb_guard}"), vec![src()]),
        ]
    } else {
        vec![Statement::with(format!("DELETE FROM {s} WHERE {row_guard} OR {tomb_guard}"), vec![src()])]
    };
    if plan.has_repeated_keys() {
        // Of one key's staged changes of one time (see `Reducer`), the one placed last among
        // those the guards kept wins: the last placed may have been a re-delivery.
        out.push(Statement::new(format!(
            "DELETE FROM {s} WHERE EXISTS (SELECT 1 FROM {s} AS later WHERE later.{key} = {s}.{key} \
             AND (later.{v} > {s}.{v} OR (later.{v} = {s}.{v} AND later.{seq} > {s}.{seq})))",
            v = q("_ddb_version"),
            seq = q("_ddb_sequence"),
        )));
    }
    // A winner of the same time as the row or tombstone it replaces keeps their `eventID`s
    // too, so a later re-delivery of any of them is recognised (bounded: past 2,000
    // characters only the batch's own are kept).
    let ids = q("_ddb_event_ids");
    let merge_ids = |from: &str, alias: &str, v: &str, a_ids: &str, extra: &str| {
        format!(
            "UPDATE {s} SET {ids} = {alias}.{a_ids} || {s}.{ids} FROM {from} AS {alias} \
             WHERE {alias}.{k} = {s}.{key} AND {alias}.{v} = {s}.{sv} AND {alias}.{a_ids} IS NOT NULL \
             AND {s}.{ids} IS NOT NULL AND LENGTH({alias}.{a_ids}) < 2000{extra}",
            a_ids = q(a_ids),
            v = q(v),
            k = if alias == "cur" { key.clone() } else { q("item_key") },
            sv = q("_ddb_version"),
        )
    };
    out.push(Statement::new(merge_ids(&t, "cur", "_ddb_version", "_ddb_event_ids", "")));
    out.push(Statement::with(
        merge_ids(&tomb, "tomb", "version", "event_ids", &format!(" AND tomb.source_table = {}", d.param(1))),
        vec![src()],
    ));
    let soft = plan.options.deletes == DeleteMode::Soft;
    out.push(Statement::new(if soft {
        format!("DELETE FROM {t} WHERE {key} IN (SELECT {key} FROM {s} WHERE {} = 'U')", q("_ddb_op"))
    } else {
        format!("DELETE FROM {t} WHERE {key} IN (SELECT {key} FROM {s})")
    }));
    let insert = |filter: &str| insert_from_stage(d, layout, schema, plan, stage, filter);
    out.push(Statement::new(insert(&format!("{s}.{} = 'U'", q("_ddb_op")))));
    if soft {
        // No alias on the target: Redshift's UPDATE documents none ("UPDATE").
        out.push(Statement::new(format!(
            "UPDATE {t} SET {del} = TRUE, {v} = {s}.{v}, {seq} = {s}.{seq}, {ev} = {s}.{ev}, {ids} = {s}.{ids}, \
             {at} = {now} FROM {s} WHERE {t}.{key} = {s}.{key} AND {s}.{op} = 'D'",
            del = q("_ddb_deleted"),
            v = q("_ddb_version"),
            seq = q("_ddb_sequence"),
            ev = q("_ddb_event"),
            at = q("_ddb_synced_at"),
            now = d.now(),
            op = q("_ddb_op"),
        )));
        out.push(Statement::new(insert(&format!(
            "{s}.{} = 'D' AND NOT EXISTS (SELECT 1 FROM {t} AS cur WHERE cur.{key} = {s}.{key})",
            q("_ddb_op")
        ))));
    }
    out.push(Statement::with(
        format!(
            "DELETE FROM {tomb} WHERE source_table = {} AND item_key IN (SELECT {key} FROM {s})",
            d.param(1)
        ),
        vec![src()],
    ));
    out.push(Statement::with(
        format!(
            "INSERT INTO {tomb} (source_table, item_key, version, sequence, event, deleted_at, event_ids) \
             SELECT CAST({} AS {}), {key}, {v}, {seq}, {ev}, {}, {ids} FROM {s} WHERE {s}.{del}",
            d.param(1),
            d.text_cast(),
            d.now(),
            v = q("_ddb_version"),
            seq = q("_ddb_sequence"),
            ev = q("_ddb_event"),
            del = q("_ddb_deleted"),
        ),
        vec![src()],
    ));
    out
}

/// `INSERT INTO` the table `SELECT` the stage's rows matching `filter`, each staged cell cast
/// to its column's type.
fn insert_from_stage(
    d: &dyn Dialect,
    layout: &Layout,
    schema: &TableSchema,
    plan: &TablePlan,
    stage: &str,
    filter: &str,
) -> String {
    let q = |n: &str| d.quote(n);
    let s = d.quote(stage);
    let mut target_cols: Vec<String> = plan.staged.iter().map(|&i| q(&schema.columns[i].name)).collect();
    let mut source_exprs: Vec<String> = plan
        .staged
        .iter()
        .enumerate()
        .map(|(pos, &i)| d.cast_from_stage(&format!("{s}.{}", q(&format!("c{pos}"))), schema.columns[i].ty))
        .collect();
    for sys in ["_ddb_key", "_ddb_version", "_ddb_sequence", "_ddb_event", "_ddb_deleted", "_ddb_event_ids"] {
        target_cols.push(q(sys));
        source_exprs.push(format!("{s}.{}", q(sys)));
    }
    target_cols.push(q("_ddb_synced_at"));
    source_exprs.push(d.now().to_string());
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {s} WHERE {filter}",
        d.qualified(&layout.target_schema, &schema.name),
        target_cols.join(", "),
        source_exprs.join(", ")
    )
}

/// The unguarded apply of a snapshot load's stage into a table that holds nothing but earlier
/// rows of the same load (every staged row an upsert): one `INSERT … SELECT`. Where the
/// table has a unique key index, a key already in (an export that listed an item twice)
/// keeps the row loaded first instead of failing the batch on every retry.
pub fn append_statement(
    d: &dyn Dialect,
    layout: &Layout,
    schema: &TableSchema,
    plan: &TablePlan,
    stage: &str,
) -> Statement {
    let mut sql = insert_from_stage(d, layout, schema, plan, stage, "TRUE");
    if d.key_index(&layout.target_schema, &schema.name).is_some() {
        sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", d.quote("_ddb_key")));
    }
    Statement::new(sql)
}

/// What survived the version guards in one table's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppliedCounts {
    /// Staged rows applied.
    pub changes: i64,
    /// Of those, deletes (`REMOVE` events).
    pub deletes: i64,
    /// Of those, time-to-live expiries (`EXPIRE` events).
    pub expired: i64,
    /// The greatest `_ddb_version` applied (µs since the epoch), 0 when none was.
    pub newest_version: i64,
}

/// Query returning `AppliedCounts` (in field order) for the stage, run after the apply.
pub fn applied_counts_query(d: &dyn Dialect, stage: &str) -> String {
    let s = d.quote(stage);
    let ev = d.quote("_ddb_event");
    format!(
        "SELECT COUNT(*) AS changes, \
         CAST(COALESCE(SUM(CASE WHEN {ev} = 'REMOVE' THEN 1 ELSE 0 END), 0) AS BIGINT) AS deletes, \
         CAST(COALESCE(SUM(CASE WHEN {ev} = 'EXPIRE' THEN 1 ELSE 0 END), 0) AS BIGINT) AS expired, \
         COALESCE(MAX({}), 0) AS newest FROM {s}",
        d.quote("_ddb_version")
    )
}

/// Adds the stage's surviving rows to the table registry in SQL alone, for transports that
/// cannot read a result in the middle of a transaction (the Redshift Data API).
pub fn counters_update_from_stage(
    d: &dyn Dialect,
    layout: &Layout,
    source_table: &str,
    stage: &str,
    expired_kept: u64,
) -> Statement {
    Statement::with(
        format!(
            "UPDATE {} SET changes_applied = changes_applied + c.changes, \
             deletes_applied = deletes_applied + c.deletes, expired_applied = expired_applied + c.expired, \
             expired_kept = expired_kept + {}, last_version = GREATEST(last_version, c.newest) \
             FROM ({}) AS c WHERE source_table = {}",
            d.qualified(&layout.control_schema, "tables"),
            d.param(1),
            applied_counts_query(d, stage),
            d.param(2),
        ),
        vec![Param::Int(expired_kept as i64), Param::Text(source_table.to_string())],
    )
}

/// Adds a batch's counts to the table registry.
pub fn counters_update(
    d: &dyn Dialect,
    layout: &Layout,
    source_table: &str,
    counts: AppliedCounts,
    expired_kept: u64,
) -> Statement {
    Statement::with(
        format!(
            "UPDATE {} SET changes_applied = changes_applied + {}, deletes_applied = deletes_applied + {}, \
             expired_applied = expired_applied + {}, expired_kept = expired_kept + {}, \
             last_version = GREATEST(last_version, CAST({} AS BIGINT)) WHERE source_table = {}",
            d.qualified(&layout.control_schema, "tables"),
            d.param(1),
            d.param(2),
            d.param(3),
            d.param(4),
            d.param(5),
            d.param(6),
        ),
        vec![
            Param::Int(counts.changes),
            Param::Int(counts.deletes),
            Param::Int(counts.expired),
            Param::Int(expired_kept as i64),
            Param::Int(counts.newest_version),
            Param::Text(source_table.to_string()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Change, EventKind, Position, Version};
    use crate::dialect::DuckDb;
    use crate::limits::Limits;
    use crate::plan::{plan_table, TableOptions};
    use crate::schema::Catalog;
    use crate::value::{key_text, AttrValue, Item};

    #[test]
    fn hostile_names_are_quoted() {
        let mut cat = Catalog::default();
        let mut keys = Item::new();
        keys.insert("id\"; DROP TABLE x; --".into(), AttrValue::S("v'1".into()));
        let change = Change {
            table: "Evil\"Table".into(),
            key_text: key_text(&keys),
            new_image: Some(keys.clone()),
            keys,
            old_image: None,
            event: EventKind::Insert,
            version: Version::new(1, None),
            position: Position::new("f", "1"),
            ids: Default::default(),
        };
        let opts = TableOptions { naming: crate::naming::NamingStyle::Preserve, ..Default::default() };
        let plan = plan_table(&mut cat, "Evil\"Table", vec![change], opts, Limits::default());
        let schema = &cat.tables["Evil\"Table"];
        let ddl = schema_changes(&DuckDb, &Layout::default(), schema, &plan);
        assert!(ddl[1]
            .sql
            .starts_with(r#"CREATE TABLE "dynamodb"."Evil""Table" ("id""; DROP TABLE x; --" VARCHAR"#));
        let all: Vec<String> = apply_statements(&DuckDb, &Layout::default(), schema, &plan, "stage")
            .iter()
            .map(|s| s.sql.clone())
            .collect();
        assert!(all.iter().all(|s| !s.contains("v'1")), "values are never in SQL text");
    }
}

/// Pins the exact SQL of a representative batch: a typed table with a variant column, soft
/// deletes, tombstones and counters. A change here is a change to what users' warehouses run.
#[cfg(test)]
mod snapshot {
    use super::*;
    use crate::change::{Change, EventKind, Position, Version};
    use crate::dialect::DuckDb;
    use crate::limits::Limits;
    use crate::number::Number;
    use crate::plan::{plan_table, DeleteMode, TableOptions};
    use crate::schema::Catalog;
    use crate::value::{key_text, AttrValue, Item};

    fn change(id: &str, attrs: Vec<(&str, AttrValue)>, event: EventKind) -> Change {
        let mut keys = Item::new();
        keys.insert("orderId".into(), AttrValue::S(id.into()));
        let mut image = keys.clone();
        image.extend(attrs.into_iter().map(|(k, v)| (k.to_string(), v)));
        Change {
            table: "Orders".into(),
            key_text: key_text(&keys),
            keys,
            new_image: (!event.is_delete()).then(|| image.clone()),
            old_image: None,
            event,
            version: Version::new(1_764_000_000_000_000, None),
            position: Position::new("f", "1"),
            ids: Default::default(),
        }
    }

    /// Redshift: DISTKEY/SORTKEY, case-sensitive keys, hex-staged binary, booleans from text,
    /// JSON_PARSE, GETDATE(), the COPY from S3.
    #[test]
    fn redshift_typed_batch() {
        use crate::dialect::{copy_from_manifest, Redshift};
        let n = |s: &str| AttrValue::N(Number::parse(s).unwrap());
        let mut cat = Catalog::default();
        let changes = vec![
            change(
                "o-1",
                vec![
                    ("totalPrice", n("19.90")),
                    ("payload", AttrValue::B(vec![0, 255])),
                    ("tags", AttrValue::Ss(vec!["a".into()])),
                    ("paid", AttrValue::Bool(true)),
                ],
                EventKind::Insert,
            ),
            change("o-2", vec![], EventKind::Remove),
        ];
        let plan = plan_table(&mut cat, "Orders", changes, TableOptions::default(), Limits::default());
        let schema = &cat.tables["Orders"];
        let layout = Layout::default();
        let mut all: Vec<String> =
            schema_changes(&Redshift, &layout, schema, &plan).iter().map(|s| s.to_string()).collect();
        let stage = stage_columns(&Redshift, schema, &plan);
        all.push(Redshift.create_stage("stage", &stage));
        let manifest = "s3://stage-bucket/dynashift/run/00000001/0000/manifest.json";
        all.push(
            copy_from_manifest("stage", &stage, manifest, "arn:aws:iam::123456789012:role/copy", None)
                .unwrap(),
        );
        all.extend(
            apply_statements(&Redshift, &layout, schema, &plan, "stage").iter().map(|s| s.to_string()),
        );
        check_snapshot("redshift_typed_batch.sql", &all.join("\n"));
    }

    fn check_snapshot(name: &str, got: &str) {
        let path = format!("{}/tests/snapshots/{name}", env!("CARGO_MANIFEST_DIR"));
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        if got.trim() != expected.trim() {
            let new = format!("{path}.new");
            let _ = std::fs::write(&new, got);
            panic!("SQL changed; the new text is in {new}:\n{got}");
        }
    }

    #[test]
    fn duckdb_soft_delete_batch() {
        let n = |s: &str| AttrValue::N(Number::parse(s).unwrap());
        let mut cat = Catalog::default();
        let opts = TableOptions { deletes: DeleteMode::Soft, ..Default::default() };
        let changes = vec![
            change("o-1", vec![("totalPrice", n("10")), ("paid", AttrValue::Bool(true))], EventKind::Insert),
            change("o-2", vec![("totalPrice", n("19.90"))], EventKind::Modify),
            change("o-3", vec![], EventKind::Remove),
        ];
        let plan = plan_table(&mut cat, "Orders", changes, opts, Limits::default());
        let schema = &cat.tables["Orders"];
        let layout = Layout::default();
        let mut all: Vec<String> =
            schema_changes(&DuckDb, &layout, schema, &plan).iter().map(|s| s.to_string()).collect();
        all.push(DuckDb.create_stage("stage", &stage_columns(&DuckDb, schema, &plan)));
        all.extend(apply_statements(&DuckDb, &layout, schema, &plan, "stage").iter().map(|s| s.to_string()));
        all.push(applied_counts_query(&DuckDb, "stage"));
        let got = all.join("\n");
        let expected = include_str!("../tests/snapshots/duckdb_soft_delete_batch.sql");
        if got.trim() != expected.trim() {
            let path =
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/duckdb_soft_delete_batch.sql.new");
            let _ = std::fs::write(path, &got);
            panic!("SQL changed; the new text is in {path}:\n{got}");
        }
    }
}
