//! Known warehouse schema: target tables, their columns, and where each value goes.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use crate::limits::Limits;
use crate::naming::{styled, NameSet, NamingStyle};
use crate::types::{cell_for, text_form, Cell, ColumnMode, ColumnType};
use crate::value::{item_to_plain_json, write_json_string, AttrValue, Item};

/// Columns every replicated table has, in this order.
pub const SYSTEM_COLUMNS: [(&str, SystemType); 7] = [
    ("_ddb_key", SystemType::Text),
    ("_ddb_version", SystemType::BigInt),
    ("_ddb_sequence", SystemType::Text),
    ("_ddb_event", SystemType::Text),
    ("_ddb_deleted", SystemType::Bool),
    ("_ddb_synced_at", SystemType::Timestamp),
    ("_ddb_event_ids", SystemType::Text),
];

/// Type of a system or control column; each dialect names it (`Dialect::system_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemType {
    /// Text: keys, sequences, event names and ids.
    Text,
    /// A 64-bit integer: `_ddb_version`.
    BigInt,
    /// A boolean: `_ddb_deleted`.
    Bool,
    /// A timestamp: `_ddb_synced_at`.
    Timestamp,
}

/// Name of the whole-item column in `document` mode.
pub const DOCUMENT_COLUMN: &str = "item";

/// Name of the column that holds, in `reference` mode, the item's key as DynamoDB JSON (as
/// the reference design's `dist_key` does).
pub const REFERENCE_KEY_COLUMN: &str = "dist_key";

/// Name of the column holding, as one JSON object, the attributes of an item that found no
/// column because the table is at the warehouse's column limit.
pub const OVERFLOW_COLUMN: &str = "_ddb_overflow";

/// One column of a target table and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// The DynamoDB attribute; `None` for a column derived from the whole item (the
    /// document column, `dist_key`) and for the overflow column.
    pub attribute: Option<String>,
    /// The column's identifier in the warehouse.
    pub name: String,
    /// The column's logical type.
    pub ty: ColumnType,
    /// A variant column (`<column>__<type>`) rather than the attribute's main column; with
    /// no attribute, the overflow column rather than the document column.
    pub is_variant: bool,
}

impl ColumnDef {
    /// The column derived from the whole item: `item` in `document` mode, `dist_key` in
    /// `reference` mode.
    pub fn is_document(&self) -> bool {
        self.attribute.is_none() && !self.is_variant
    }

    /// The overflow column (see `OVERFLOW_COLUMN`).
    pub fn is_overflow(&self) -> bool {
        self.attribute.is_none() && self.is_variant
    }
}

/// One target table as the warehouse has it (or will, once pending DDL runs).
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// The DynamoDB table replicated into it.
    pub source_table: String,
    /// The target table's identifier in the warehouse.
    pub name: String,
    /// How attributes become columns.
    pub mode: ColumnMode,
    /// How attribute names become column names.
    pub naming: NamingStyle,
    /// The source table's key attribute names: they keep columns of their own in `document`
    /// mode, and take columns first near the column limit.
    pub key_attributes: Vec<String>,
    /// The columns beyond the system columns, in creation order; column indices point into
    /// this list.
    pub columns: Vec<ColumnDef>,
    /// What the warehouse allows this table to be.
    pub limits: Limits,
    names: NameSet,
    /// attribute → column indices, main column first, variants in creation order.
    by_attribute: HashMap<String, Vec<usize>>,
}

impl TableSchema {
    /// A table without attribute columns yet: the system column names and the warehouse's
    /// reserved names are taken, and in `document` mode the document column is added.
    pub fn new(
        source_table: &str,
        name: String,
        mode: ColumnMode,
        naming: NamingStyle,
        key_attributes: Vec<String>,
        limits: Limits,
    ) -> TableSchema {
        let naming = mode.naming(naming);
        let mut names = NameSet::new();
        for (sys, _) in SYSTEM_COLUMNS {
            names.reserve(sys);
        }
        for reserved in limits.reserved_names {
            names.reserve(reserved);
        }
        let mut schema = TableSchema {
            source_table: source_table.to_string(),
            name,
            mode,
            naming,
            key_attributes,
            columns: Vec::new(),
            limits,
            names,
            by_attribute: HashMap::new(),
        };
        let derived = match mode {
            ColumnMode::Document => Some((DOCUMENT_COLUMN, ColumnType::Json)),
            ColumnMode::Reference => Some((REFERENCE_KEY_COLUMN, ColumnType::Text)),
            ColumnMode::Typed | ColumnMode::Varchar => None,
        };
        if let Some((name, ty)) = derived {
            schema.names.reserve(name);
            schema.columns.push(ColumnDef { attribute: None, name: name.into(), ty, is_variant: false });
        }
        schema
    }

    /// Restores a column read back from the registry.
    pub fn restore_column(&mut self, column: ColumnDef) {
        self.names.reserve(&column.name);
        if let Some(attr) = &column.attribute {
            self.by_attribute.entry(attr.clone()).or_default().push(self.columns.len());
        }
        let kind = |c: &ColumnDef| (c.is_document(), c.is_overflow());
        if column.attribute.is_some() || !self.columns.iter().any(|c| kind(c) == kind(&column)) {
            self.columns.push(column);
        }
    }

    /// Index of the `dist_key` column, in `reference` mode.
    pub fn reference_key_column(&self) -> Option<usize> {
        (self.mode == ColumnMode::Reference).then(|| self.document_column()).flatten()
    }

    /// Index of the document column, in `document` mode.
    pub fn document_column(&self) -> Option<usize> {
        self.columns.iter().position(ColumnDef::is_document)
    }

    /// Index of the overflow column, once one was added.
    pub fn overflow_column(&self) -> Option<usize> {
        self.columns.iter().position(ColumnDef::is_overflow)
    }

    /// Whether one more attribute column fits under the column limit, keeping a place for
    /// the overflow column.
    fn has_room(&self) -> bool {
        let overflow_slot = usize::from(self.overflow_column().is_none());
        self.columns.len() + SYSTEM_COLUMNS.len() + overflow_slot < self.limits.max_columns
    }

    /// The overflow column, added when first needed.
    fn overflow_column_or_add(&mut self) -> usize {
        if let Some(i) = self.overflow_column() {
            return i;
        }
        let name = self.names.allocate(OVERFLOW_COLUMN, "\u{0}overflow", self.limits.max_identifier);
        self.columns.push(ColumnDef { attribute: None, name, ty: ColumnType::Json, is_variant: true });
        self.columns.len() - 1
    }

    fn add_column(&mut self, attribute: &str, ty: ColumnType, main: Option<usize>) -> usize {
        let (candidate, is_variant) = match main {
            None => (styled(attribute, self.naming), false),
            Some(i) => (format!("{}__{}", self.columns[i].name, ty.variant_suffix()), true),
        };
        let original = match main {
            None => attribute.to_string(),
            Some(_) => format!("{attribute}\u{0}{}", ty.variant_suffix()),
        };
        let name = self.names.allocate(&candidate, &original, self.limits.max_identifier);
        let index = self.columns.len();
        self.columns.push(ColumnDef { attribute: Some(attribute.to_string()), name, ty, is_variant });
        self.by_attribute.entry(attribute.to_string()).or_default().push(index);
        index
    }

    /// The column that stores `value` of `attribute` exactly, adding a main or variant column
    /// when none does; `None` when a column would be needed and the table is at its limit.
    pub fn place(&mut self, attribute: &str, value: &AttrValue) -> Option<(usize, Cell)> {
        if matches!(self.mode, ColumnMode::Varchar | ColumnMode::Reference) {
            let index = match self.by_attribute.get(attribute).and_then(|v| v.first()) {
                Some(&i) => i,
                None if self.has_room() => self.add_column(attribute, ColumnType::Text, None),
                None => return None,
            };
            let cell = match value {
                AttrValue::Null => Cell::Null,
                v => Cell::Text(text_form(v)),
            };
            return Some((index, cell));
        }
        // The common case, a column that already takes the value, allocates nothing.
        if let Some(&i) = self
            .by_attribute
            .get(attribute)
            .and_then(|cols| cols.iter().find(|&&i| self.columns[i].ty.accepts(value)))
        {
            return Some((i, cell_for(self.columns[i].ty, value)));
        }
        if !self.has_room() {
            return None;
        }
        let existing: Vec<usize> = self.by_attribute.get(attribute).cloned().unwrap_or_default();
        let main = existing.first().copied();
        let taken: Vec<&'static str> =
            existing.iter().map(|&i| self.columns[i].ty.variant_suffix()).collect();
        let candidates = ColumnType::candidates(value, self.limits.max_decimal_scale);
        let ty = candidates
            .iter()
            .copied()
            .find(|t| !taken.contains(&t.variant_suffix()))
            .or_else(|| candidates.last().copied())
            .unwrap_or(ColumnType::Text);
        let index = self.add_column(attribute, ty, main);
        Some((index, cell_for(ty, value)))
    }

    /// Cells of one image, as (column index, cell) pairs. Attributes that found no column
    /// (the table is at its column limit) go, as plain JSON, into the overflow column.
    pub fn cells_for_image(&mut self, image: &Item) -> Vec<(usize, Cell)> {
        match self.mode {
            ColumnMode::Typed | ColumnMode::Varchar | ColumnMode::Reference => {
                let mut cells = Vec::with_capacity(image.len());
                let mut overflow = String::new();
                // Near the column limit the key attributes take their columns first, so a key
                // never lands in the overflow column.
                let near_limit =
                    self.columns.len() + image.len() + SYSTEM_COLUMNS.len() + 1 >= self.limits.max_columns;
                if near_limit {
                    for key in self.key_attributes.clone() {
                        if let Some(cell) = image.get(&key).and_then(|v| self.place(&key, v)) {
                            cells.push(cell);
                        }
                    }
                }
                for (attr, v) in image.iter() {
                    if near_limit && self.key_attributes.iter().any(|k| k == attr) {
                        continue;
                    }
                    match self.place(attr, v) {
                        Some(cell) => cells.push(cell),
                        None => {
                            overflow.push(if overflow.is_empty() { '{' } else { ',' });
                            write_json_string(&mut overflow, attr);
                            overflow.push(':');
                            v.write_plain_json(&mut overflow);
                        }
                    }
                }
                if !overflow.is_empty() {
                    overflow.push('}');
                    cells.push((self.overflow_column_or_add(), Cell::Text(overflow.into())));
                }
                cells
            }
            ColumnMode::Document => {
                let mut cells: Vec<(usize, Cell)> = Vec::with_capacity(self.key_attributes.len() + 1);
                for key in self.key_attributes.clone() {
                    if let Some(cell) = image.get(&key).and_then(|v| self.place(&key, v)) {
                        cells.push(cell);
                    }
                }
                if let Some(doc) = self.document_column() {
                    cells.push((doc, Cell::Text(item_to_plain_json(image).into())));
                }
                cells
            }
        }
    }

    /// Attribute → its columns, for readers that rebuild items.
    pub fn columns_by_attribute(&self) -> BTreeMap<&str, Vec<&ColumnDef>> {
        let mut out: BTreeMap<&str, Vec<&ColumnDef>> = BTreeMap::new();
        for c in &self.columns {
            if let Some(a) = &c.attribute {
                out.entry(a.as_str()).or_default().push(c);
            }
        }
        out
    }
}

/// Every target table of one warehouse schema, and the table names in use there.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Target tables by source table name.
    pub tables: BTreeMap<String, TableSchema>,
    names: NameSet,
}

impl Catalog {
    /// Adds a table (read back from the registry, or newly registered), reserving its name.
    pub fn restore_table(&mut self, table: TableSchema) {
        self.names.reserve(&table.name);
        self.tables.insert(table.source_table.clone(), table);
    }

    /// Picks a name for a new target table.
    pub fn allocate_table_name(&mut self, source_table: &str, naming: NamingStyle, max: usize) -> String {
        self.names.allocate(&styled(source_table, naming), source_table, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::Number;

    fn schema(mode: ColumnMode) -> TableSchema {
        TableSchema::new("T", "t".into(), mode, NamingStyle::SnakeCase, vec!["id".into()], Limits::default())
    }

    fn n(s: &str) -> AttrValue {
        AttrValue::N(Number::parse(s).unwrap())
    }

    #[test]
    fn variants_never_lose_a_value() {
        let mut s = schema(ColumnMode::Typed);
        let (a, _) = s.place("price", &n("10")).unwrap();
        let (b, cell) = s.place("price", &n("19.90")).unwrap();
        let (c, _) = s.place("price", &AttrValue::S("free".into())).unwrap();
        let (d, _) = s.place("price", &n("1E+100")).unwrap();
        let (e, _) = s.place("price", &n("0.0000000000001")).unwrap();
        let names: Vec<&str> = [a, b, c, d, e].iter().map(|&i| s.columns[i].name.as_str()).collect();
        assert_eq!(names, ["price", "price__decimal", "price__text", "price__number", "price__number"]);
        assert_eq!(cell, Cell::Text("19.9".into()));
        assert_eq!(s.place("price", &n("11")).unwrap().0, a);
    }

    #[test]
    fn system_names_are_not_taken_by_attributes() {
        let mut s = schema(ColumnMode::Typed);
        let (i, _) = s.place("_ddb_version", &AttrValue::S("x".into())).unwrap();
        assert_eq!(s.columns[i].name, "_ddb_version_2");
        let (j, _) = s.place("ItemCount", &AttrValue::S("x".into())).unwrap();
        let (k, _) = s.place("itemCount", &AttrValue::S("x".into())).unwrap();
        assert_eq!((s.columns[j].name.as_str(), s.columns[k].name.as_str()), ("item_count", "item_count_2"));
    }

    #[test]
    fn reserved_names_are_not_taken_by_attributes() {
        let limits = Limits { reserved_names: crate::limits::POSTGRES_SYSTEM_COLUMNS, ..Limits::default() };
        let mut s =
            TableSchema::new("T", "t".into(), ColumnMode::Typed, NamingStyle::Preserve, vec![], limits);
        let names: Vec<String> = ["xmin", "CTID", "oid", "Oid2"]
            .iter()
            .map(|a| s.place(a, &AttrValue::S("x".into())).map(|(i, _)| s.columns[i].name.clone()).unwrap())
            .collect();
        assert_eq!(names, ["xmin_2", "CTID_2", "oid_2", "Oid2"]);
    }

    #[test]
    fn attributes_past_the_column_limit_share_the_overflow_column() {
        // 7 system columns + 3 attribute columns + the overflow column = 11.
        let limits = Limits { max_columns: 11, ..Limits::default() };
        let mut s = TableSchema::new(
            "T",
            "t".into(),
            ColumnMode::Typed,
            NamingStyle::SnakeCase,
            vec!["z".into()],
            limits,
        );
        let mut image = Item::new();
        image.insert("z".into(), n("0"));
        for (i, a) in ["a", "b", "c"].iter().enumerate() {
            image.insert((*a).into(), n(&i.to_string()));
        }
        image.insert("f".into(), AttrValue::S("x\"y".into()));
        let cells = s.cells_for_image(&image);
        assert_eq!(s.columns.len() + SYSTEM_COLUMNS.len(), 11);
        let overflow = s.overflow_column().unwrap();
        assert_eq!(s.columns[overflow].name, OVERFLOW_COLUMN);
        assert_eq!(s.columns[0].attribute.as_deref(), Some("z"), "the key takes its column first");
        assert_eq!(cells.last().unwrap(), &(overflow, Cell::Text(r#"{"c":2,"f":"x\"y"}"#.into())));
        // A value needing a variant column overflows too; one that fits its column does not.
        let mut next = Item::new();
        next.insert("a".into(), AttrValue::S("text now".into()));
        next.insert("b".into(), n("7"));
        next.insert("z".into(), n("1"));
        let cells = s.cells_for_image(&next);
        assert_eq!(cells.len(), 3);
        assert_eq!(cells[2], (overflow, Cell::Text(r#"{"a":"text now"}"#.into())));
        assert_eq!(s.columns.len() + SYSTEM_COLUMNS.len(), 11, "the limit holds");
    }

    #[test]
    fn document_mode_keeps_keys_and_item() {
        let mut s = schema(ColumnMode::Document);
        let mut image = Item::new();
        image.insert("id".into(), n("1"));
        image.insert("item".into(), AttrValue::S("x".into()));
        let cells = s.cells_for_image(&image);
        assert_eq!(cells.len(), 2);
        assert_eq!(s.columns.len(), 2);
        assert_eq!(cells[1].1, Cell::Text(r#"{"id":1,"item":"x"}"#.into()));
    }

    #[test]
    fn varchar_mode_is_all_text() {
        let mut s = schema(ColumnMode::Varchar);
        assert_eq!(s.place("a", &n("1.50")).unwrap().1, Cell::Text("1.5".into()));
        assert_eq!(s.place("a", &AttrValue::Bool(true)).unwrap().1, Cell::Text("true".into()));
        assert_eq!(s.columns.len(), 1);
    }

    #[test]
    fn reference_mode_has_dist_key_and_lower_cased_text_columns() {
        let mut s = schema(ColumnMode::Reference);
        assert_eq!(s.reference_key_column(), Some(0));
        assert_eq!(s.columns[0].name, REFERENCE_KEY_COLUMN);
        let (i, cell) = s.place("customerId", &n("7")).unwrap();
        assert_eq!((s.columns[i].name.as_str(), cell), ("customerid", Cell::Text("7".into())));
        // An attribute of the key column's name gets a name of its own.
        let (j, _) = s.place("dist_key", &AttrValue::S("x".into())).unwrap();
        assert_ne!(s.columns[j].name, REFERENCE_KEY_COLUMN);
        assert_eq!(schema(ColumnMode::Varchar).reference_key_column(), None);
    }
}
