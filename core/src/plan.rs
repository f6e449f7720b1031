//! Planning a batch: reduced changes of one table → schema evolution + staged rows.

use serde::{Deserialize, Serialize};

use crate::cells::{Cells, SparseCells};
use crate::change::{Change, EventKind, Version};
use crate::limits::Limits;
use crate::naming::NamingStyle;
use crate::schema::{Catalog, ColumnDef, TableSchema};
use crate::types::{Cell, ColumnMode};

/// What deleting an item does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Deleted items' rows are removed.
    #[default]
    Hard,
    /// Deleted items' rows stay, with `_ddb_deleted = true`.
    Soft,
}

/// What a time-to-live expiry does to the item's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtlMode {
    /// A TTL expiry deletes like any other REMOVE (marked `EXPIRE`).
    #[default]
    Delete,
    /// Expired items stay in the warehouse; the expiry is only counted.
    Keep,
}

/// Settings that shape one target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// How attributes become columns.
    pub columns: ColumnMode,
    /// How table and attribute names become identifiers.
    pub naming: NamingStyle,
    /// What a delete does to the row.
    pub deletes: DeleteMode,
    /// What a TTL expiry does to the row.
    pub ttl_deletes: TtlMode,
}

/// What applying a staged row does to the target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOp {
    /// Replace the row with the staged image.
    Upsert,
    /// Remove the row (hard) or flag it deleted (soft).
    Delete,
}

impl RowOp {
    /// The one-letter code staged in `_ddb_op`: `U` or `D`.
    pub fn code(self) -> &'static str {
        match self {
            RowOp::Upsert => "U",
            RowOp::Delete => "D",
        }
    }
}

/// One reduced change, ready to stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedRow {
    /// Canonical text of the item's keys, stored in `_ddb_key`.
    pub key_text: String,
    /// The change's version, stored in `_ddb_version` and `_ddb_sequence`.
    pub version: Version,
    /// The event that produced the row, stored in `_ddb_event`.
    pub event: EventKind,
    /// Whether the row replaces or removes the target row.
    pub op: RowOp,
    /// Stored in `_ddb_deleted`: the change deletes the item, whether its row is removed or kept.
    pub deleted: bool,
    /// The change's own `eventID`, then those seen at its time, as stored (`EventIds`).
    pub event_ids: Option<String>,
    /// Aligned with `TablePlan::staged`.
    pub cells: Cells,
}

/// What a batch does to one table.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// The DynamoDB table planned.
    pub source_table: String,
    /// The target table does not exist yet.
    pub create: bool,
    /// Columns to add (all of them when `create`).
    pub new_columns: Vec<ColumnDef>,
    /// Column indices (into the schema) that the stage carries, in stage order.
    pub staged: Vec<usize>,
    /// The rows to stage: one per reduced change, except expiries left alone.
    pub rows: Vec<StagedRow>,
    /// The options the table was planned with.
    pub options: TableOptions,
    /// TTL expiries left alone because `ttl_deletes = "keep"`.
    pub expired_kept: u64,
}

impl StagedRow {
    /// Approximate memory this row holds, with its slot in the plan's vector.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<StagedRow>()
            + self.key_text.capacity()
            + self.version.heap_bytes()
            + self.event_ids.as_ref().map_or(0, String::capacity)
            + self.cells.heap_bytes()
    }
}

impl TablePlan {
    /// Approximate memory of the planned rows.
    pub fn weight(&self) -> usize {
        self.rows.iter().map(StagedRow::weight).sum()
    }

    /// Whether a key has more than one row: changes of one time that a change placed later
    /// superseded (see `Reducer`), of which the warehouse keeps one.
    pub fn has_repeated_keys(&self) -> bool {
        if self.rows.is_sorted_by(|a, b| a.key_text <= b.key_text) {
            self.rows.windows(2).any(|w| w[0].key_text == w[1].key_text)
        } else {
            let mut seen = std::collections::HashSet::new();
            !self.rows.iter().all(|r| seen.insert(r.key_text.as_str()))
        }
    }
}

/// Plans one table's reduced changes, evolving `catalog` (the caller keeps the evolved
/// catalog only once the batch commits).
pub fn plan_table(
    catalog: &mut Catalog,
    source_table: &str,
    changes: Vec<Change>,
    options: TableOptions,
    limits: Limits,
) -> TablePlan {
    let create = register_table(catalog, source_table, changes.first().map(|c| &c.keys), options, limits);
    let Some(schema) = catalog.tables.get_mut(source_table) else {
        unreachable!("register_table inserts the table")
    };
    plan_rows(schema, changes.into_iter(), options, create)
}

/// The first step of planning a table: a table the catalog does not know yet is named and
/// registered, with the key attributes of `keys` (any change's keys); returns whether the
/// batch creates it. Tables share the catalog's name space, so this step runs one table at a
/// time; `plan_rows` then touches only its own table and can run for several tables at once.
pub fn register_table(
    catalog: &mut Catalog,
    source_table: &str,
    keys: Option<&crate::value::Item>,
    options: TableOptions,
    limits: Limits,
) -> bool {
    if catalog.tables.contains_key(source_table) {
        return false;
    }
    let name = catalog.allocate_table_name(
        source_table,
        options.columns.naming(options.naming),
        limits.max_identifier,
    );
    let keys = keys.map(|k| k.keys().map(|k| k.to_string()).collect()).unwrap_or_default();
    let table = TableSchema::new(source_table, name, options.columns, options.naming, keys, limits);
    catalog.restore_table(table);
    true
}

/// The second step: the table's columns evolve to hold the changes, which become staged rows.
/// `create` is what `register_table` returned for this batch. Changes are taken one at a
/// time, so a caller can build each just before it is planned.
pub fn plan_rows(
    schema: &mut TableSchema,
    changes: impl ExactSizeIterator<Item = Change>,
    options: TableOptions,
    create: bool,
) -> TablePlan {
    let known = known_columns(schema, create);
    let run = plan_run(schema, changes, options);
    finish_plan(schema, known, create, options, vec![run])
}

/// The columns of `schema` that a batch planned from here on does not add (none when the
/// batch creates the table): what `finish_plan` takes as `known`.
pub fn known_columns(schema: &TableSchema, create: bool) -> usize {
    if create {
        0
    } else {
        schema.columns.len()
    }
}

/// Consecutive changes of one table planned against its schema, before the batch's staged
/// columns are known. A run planned on a copy of the schema that it did not grow is exactly
/// what planning it on the schema itself gives, which lets a caller plan one table's runs on
/// several cores (see `plan_rows` for the one-run case).
#[derive(Default)]
pub struct PlannedRun {
    rows: Vec<(StagedRow, SparseCells)>,
    /// Columns some row has a cell for.
    used: Vec<bool>,
    expired_kept: u64,
}

/// Plans `changes` in order, growing `schema` as rows bring new attributes.
pub fn plan_run(
    schema: &mut TableSchema,
    changes: impl Iterator<Item = Change>,
    options: TableOptions,
) -> PlannedRun {
    let mut run = PlannedRun { rows: Vec::with_capacity(changes.size_hint().0), ..Default::default() };
    for change in changes {
        let keep_expired = change.event == EventKind::Expire && options.ttl_deletes == TtlMode::Keep;
        if keep_expired && change.old_image.is_none() {
            // Nothing to restore from: the row stays as it is.
            run.expired_kept += 1;
            continue;
        }
        let (op, deleted, image) = match (&change.new_image, change.event.is_delete(), options.deletes) {
            (Some(image), false, _) => (RowOp::Upsert, false, image),
            // An expired item that is kept: its last image, marked EXPIRE, not deleted.
            (_, _, _) if keep_expired => {
                (RowOp::Upsert, false, change.old_image.as_ref().unwrap_or(&change.keys))
            }
            (_, _, DeleteMode::Soft) if change.old_image.is_some() => {
                (RowOp::Upsert, true, change.old_image.as_ref().unwrap_or(&change.keys))
            }
            _ => (RowOp::Delete, true, &change.keys),
        };
        let mut cells = schema.cells_for_image(image);
        if let Some(dist_key) = schema.reference_key_column() {
            cells.push((dist_key, Cell::Text(change.key_text.as_str().into())));
        }
        for (i, _) in &cells {
            if *i >= run.used.len() {
                run.used.resize(i + 1, false);
            }
            run.used[*i] = true;
        }
        let cells = SparseCells::new(cells);
        let row = StagedRow {
            key_text: change.key_text,
            version: change.version,
            event: change.event,
            op,
            deleted,
            event_ids: change.ids.stored(),
            cells: Cells::default(),
        };
        run.rows.push((row, cells));
    }
    run
}

/// The table's plan from its runs, in order: the batch stages the columns some row has a
/// cell for. `known` is `known_columns` before the first run was planned.
pub fn finish_plan(
    schema: &TableSchema,
    known: usize,
    create: bool,
    options: TableOptions,
    runs: Vec<PlannedRun>,
) -> TablePlan {
    let mut used = vec![false; schema.columns.len()];
    for run in &runs {
        for (i, &u) in run.used.iter().enumerate() {
            // Every run was planned on this schema or on a copy that it became.
            debug_assert!(i < used.len(), "a run used a column its schema does not have");
            if let Some(used) = used.get_mut(i) {
                *used |= u;
            }
        }
    }
    let staged: Vec<usize> = (0..schema.columns.len()).filter(|&i| used[i]).collect();
    let mut slot = vec![usize::MAX; schema.columns.len()];
    for (pos, &i) in staged.iter().enumerate() {
        slot[i] = pos;
    }
    let expired_kept = runs.iter().map(|r| r.expired_kept).sum();
    let mut rows = Vec::with_capacity(runs.iter().map(|r| r.rows.len()).sum());
    for run in runs {
        rows.extend(run.rows.into_iter().map(|(mut row, cells)| {
            row.cells = Cells::place(&cells, &slot, staged.len());
            row
        }));
    }
    TablePlan {
        source_table: schema.source_table.clone(),
        create,
        new_columns: schema.columns[known..].to_vec(),
        staged,
        rows,
        options,
        expired_kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Position;
    use crate::value::{key_text, AttrValue, Item};

    fn change(key: &str, event: EventKind, attrs: &[(&str, AttrValue)]) -> Change {
        let mut keys = Item::new();
        keys.insert("id".into(), AttrValue::S(key.into()));
        let mut image = keys.clone();
        for (k, v) in attrs {
            image.insert((*k).into(), v.clone());
        }
        Change {
            table: "T".into(),
            key_text: key_text(&keys),
            keys,
            new_image: (!event.is_delete()).then(|| image.clone()),
            old_image: event.is_delete().then_some(image),
            event,
            version: Version::new(1, None),
            position: Position::new("s", "1"),
            ids: Default::default(),
        }
    }

    #[test]
    fn new_table_then_new_column() {
        let mut cat = Catalog::default();
        let opts = TableOptions::default();
        let p = plan_table(
            &mut cat,
            "T",
            vec![change("a", EventKind::Insert, &[("x", AttrValue::Bool(true))])],
            opts,
            Limits::default(),
        );
        assert!(p.create);
        assert_eq!(p.new_columns.len(), 2);
        let p2 = plan_table(
            &mut cat,
            "T",
            vec![change("a", EventKind::Modify, &[("y", AttrValue::S("s".into()))])],
            opts,
            Limits::default(),
        );
        assert!(!p2.create);
        assert_eq!(p2.new_columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["y"]);
        assert_eq!(p2.staged.len(), 2, "only the columns this batch writes are staged");
    }

    #[test]
    fn deletes_by_mode() {
        let mut cat = Catalog::default();
        let ch = || vec![change("a", EventKind::Remove, &[("x", AttrValue::Bool(true))])];
        let hard = plan_table(&mut cat, "T", ch(), TableOptions::default(), Limits::default());
        assert_eq!((hard.rows[0].op, hard.rows[0].deleted), (RowOp::Delete, true));
        let soft = TableOptions { deletes: DeleteMode::Soft, ..Default::default() };
        let p = plan_table(&mut cat, "T", ch(), soft, Limits::default());
        assert_eq!((p.rows[0].op, p.rows[0].deleted), (RowOp::Upsert, true));
        let keep = TableOptions { ttl_deletes: TtlMode::Keep, ..Default::default() };
        let p = plan_table(&mut cat, "T", vec![change("a", EventKind::Expire, &[])], keep, Limits::default());
        assert_eq!((p.rows[0].op, p.rows[0].deleted, p.expired_kept), (RowOp::Upsert, false, 0));
        let mut no_old = change("b", EventKind::Expire, &[]);
        no_old.old_image = None;
        let p = plan_table(&mut cat, "T", vec![no_old], keep, Limits::default());
        assert_eq!((p.rows.len(), p.expired_kept), (0, 1));
    }
}
