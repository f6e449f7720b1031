//! Known warehouse schema: target tables, their columns, and where each value goes.

use std::collections::BTreeMap;

use foldhash::{HashMap, HashMapExt};

use crate::naming::{styled, NameSet, NamingStyle};
use crate::types::{cell_for, text_form, Cell, ColumnMode, ColumnType};
use crate::value::{item_to_plain_json, AttrValue, Item};

/// Columns every replicated table has, in this order.
pub const SYSTEM_COLUMNS: [(&str, SystemType); 6] = [
    ("_ddb_key", SystemType::Text),
    ("_ddb_version", SystemType::BigInt),
    ("_ddb_sequence", SystemType::Text),
    ("_ddb_event", SystemType::Text),
    ("_ddb_deleted", SystemType::Bool),
    ("_ddb_synced_at", SystemType::Timestamp),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemType {
    Text,
    BigInt,
    Bool,
    Timestamp,
}

/// Name of the whole-item column in `document` mode.
pub const DOCUMENT_COLUMN: &str = "item";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// The DynamoDB attribute; `None` for the document column.
    pub attribute: Option<String>,
    pub name: String,
    pub ty: ColumnType,
    /// A variant column (`<column>__<type>`) rather than the attribute's main column.
    pub is_variant: bool,
}

/// One target table as the warehouse has it (or will, once pending DDL runs).
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub source_table: String,
    pub name: String,
    pub mode: ColumnMode,
    pub naming: NamingStyle,
    pub key_attributes: Vec<String>,
    pub columns: Vec<ColumnDef>,
    /// Longest identifier the warehouse accepts.
    pub max_identifier: usize,
    names: NameSet,
    /// attribute → column indices, main column first, variants in creation order.
    by_attribute: HashMap<String, Vec<usize>>,
}

impl TableSchema {
    pub fn new(
        source_table: &str,
        name: String,
        mode: ColumnMode,
        naming: NamingStyle,
        key_attributes: Vec<String>,
        max_identifier: usize,
    ) -> TableSchema {
        let mut names = NameSet::new();
        for (sys, _) in SYSTEM_COLUMNS {
            names.reserve(sys);
        }
        let mut schema = TableSchema {
            source_table: source_table.to_string(),
            name,
            mode,
            naming,
            key_attributes,
            columns: Vec::new(),
            max_identifier,
            names,
            by_attribute: HashMap::new(),
        };
        if mode == ColumnMode::Document {
            schema.names.reserve(DOCUMENT_COLUMN);
            schema.columns.push(ColumnDef {
                attribute: None,
                name: DOCUMENT_COLUMN.into(),
                ty: ColumnType::Json,
                is_variant: false,
            });
        }
        schema
    }

    /// Restores a column read back from the registry.
    pub fn restore_column(&mut self, column: ColumnDef) {
        self.names.reserve(&column.name);
        if let Some(attr) = &column.attribute {
            self.by_attribute.entry(attr.clone()).or_default().push(self.columns.len());
        }
        if column.attribute.is_some() || !self.columns.iter().any(|c| c.attribute.is_none()) {
            self.columns.push(column);
        }
    }

    pub fn document_column(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.attribute.is_none())
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
        let name = self.names.allocate(&candidate, &original, self.max_identifier);
        let index = self.columns.len();
        self.columns.push(ColumnDef { attribute: Some(attribute.to_string()), name, ty, is_variant });
        self.by_attribute.entry(attribute.to_string()).or_default().push(index);
        index
    }

    /// The column that stores `value` of `attribute` exactly, adding a main or variant column
    /// when none does. `None` when the value is NULL (nothing to store beyond the column).
    pub fn place(&mut self, attribute: &str, value: &AttrValue) -> (usize, Cell) {
        if self.mode == ColumnMode::Varchar {
            let index = match self.by_attribute.get(attribute).and_then(|v| v.first()) {
                Some(&i) => i,
                None => self.add_column(attribute, ColumnType::Text, None),
            };
            let cell = match value {
                AttrValue::Null => Cell::Null,
                v => Cell::Text(text_form(v)),
            };
            return (index, cell);
        }
        // The common case, a column that already takes the value, allocates nothing.
        if let Some(&i) = self
            .by_attribute
            .get(attribute)
            .and_then(|cols| cols.iter().find(|&&i| self.columns[i].ty.accepts(value)))
        {
            return (i, cell_for(self.columns[i].ty, value));
        }
        let existing: Vec<usize> = self.by_attribute.get(attribute).cloned().unwrap_or_default();
        let main = existing.first().copied();
        let taken: Vec<&'static str> =
            existing.iter().map(|&i| self.columns[i].ty.variant_suffix()).collect();
        let candidates = ColumnType::candidates(value);
        let ty = candidates
            .iter()
            .copied()
            .find(|t| !taken.contains(&t.variant_suffix()))
            .or_else(|| candidates.last().copied())
            .unwrap_or(ColumnType::Text);
        let index = self.add_column(attribute, ty, main);
        (index, cell_for(ty, value))
    }

    /// Cells of one image, as (column index, cell) pairs.
    pub fn cells_for_image(&mut self, image: &Item) -> Vec<(usize, Cell)> {
        match self.mode {
            ColumnMode::Typed | ColumnMode::Varchar => {
                image.iter().map(|(attr, v)| self.place(attr, v)).collect()
            }
            ColumnMode::Document => {
                let mut cells: Vec<(usize, Cell)> = Vec::with_capacity(self.key_attributes.len() + 1);
                for key in self.key_attributes.clone() {
                    if let Some(v) = image.get(&key) {
                        cells.push(self.place(&key, v));
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
    pub tables: BTreeMap<String, TableSchema>,
    names: NameSet,
}

impl Catalog {
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
        TableSchema::new("T", "t".into(), mode, NamingStyle::SnakeCase, vec!["id".into()], 127)
    }

    fn n(s: &str) -> AttrValue {
        AttrValue::N(Number::parse(s).unwrap())
    }

    #[test]
    fn variants_never_lose_a_value() {
        let mut s = schema(ColumnMode::Typed);
        let (a, _) = s.place("price", &n("10"));
        let (b, cell) = s.place("price", &n("19.90"));
        let (c, _) = s.place("price", &AttrValue::S("free".into()));
        let (d, _) = s.place("price", &n("1E+100"));
        let (e, _) = s.place("price", &n("0.0000000000001"));
        let names: Vec<&str> = [a, b, c, d, e].iter().map(|&i| s.columns[i].name.as_str()).collect();
        assert_eq!(names, ["price", "price__decimal", "price__text", "price__number", "price__number"]);
        assert_eq!(cell, Cell::Text("19.9".into()));
        assert_eq!(s.place("price", &n("11")).0, a);
    }

    #[test]
    fn system_names_are_not_taken_by_attributes() {
        let mut s = schema(ColumnMode::Typed);
        let (i, _) = s.place("_ddb_version", &AttrValue::S("x".into()));
        assert_eq!(s.columns[i].name, "_ddb_version_2");
        let (j, _) = s.place("ItemCount", &AttrValue::S("x".into()));
        let (k, _) = s.place("itemCount", &AttrValue::S("x".into()));
        assert_eq!((s.columns[j].name.as_str(), s.columns[k].name.as_str()), ("item_count", "item_count_2"));
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
        assert_eq!(s.place("a", &n("1.50")).1, Cell::Text("1.5".into()));
        assert_eq!(s.place("a", &AttrValue::Bool(true)).1, Cell::Text("true".into()));
        assert_eq!(s.columns.len(), 1);
    }
}
