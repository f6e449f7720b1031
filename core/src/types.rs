//! Column types and which DynamoDB values each can hold exactly.

use serde::{Deserialize, Serialize};

use crate::number::Number;
use crate::value::{base64_encode, AttrValue, Text};
use compact_str::ToCompactString as _;

/// How a table's attributes become columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnMode {
    /// One typed column per attribute, variant columns for values that do not fit.
    #[default]
    Typed,
    /// One text column per attribute (the reference design's layout).
    Varchar,
    /// Key columns plus one JSON column `item` holding the whole item.
    Document,
    /// The reference design's own layout, so its users' queries keep working: one text
    /// column per attribute, lower-cased names, and `dist_key` holding the item's key.
    Reference,
}

impl ColumnMode {
    /// The mode's name, as configured and stored in the table registry.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnMode::Typed => "typed",
            ColumnMode::Varchar => "varchar",
            ColumnMode::Document => "document",
            ColumnMode::Reference => "reference",
        }
    }

    /// The naming a table in this mode uses: the reference layout's names are always the
    /// source's own, lower-cased, as its users' queries expect.
    pub fn naming(self, configured: crate::naming::NamingStyle) -> crate::naming::NamingStyle {
        match self {
            ColumnMode::Reference => crate::naming::NamingStyle::Lower,
            _ => configured,
        }
    }
}

/// A column's logical type; each dialect names it in SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Text: strings, and every value in `varchar` mode.
    Text,
    /// A 64-bit integer.
    BigInt,
    /// `DECIMAL(38, scale)`.
    Decimal(u32),
    /// A boolean.
    Bool,
    /// Binary data (`B` values).
    Blob,
    /// Plain JSON (maps, lists, sets).
    Json,
    /// A number too large or too precise for DECIMAL(38, s), kept as its exact text.
    NumberText,
}

/// Scale given to a new DECIMAL column when the first value leaves room for it, so later
/// prices and rates with more digits still fit.
const PREFERRED_SCALE: u32 = 9;

impl ColumnType {
    /// Suffix of a variant column holding values of this type: `price__text`.
    pub fn variant_suffix(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::BigInt => "bigint",
            ColumnType::Decimal(_) => "decimal",
            ColumnType::Bool => "bool",
            ColumnType::Blob => "blob",
            ColumnType::Json => "json",
            ColumnType::NumberText => "number",
        }
    }

    /// Stable text form stored in the column registry.
    pub fn code(self) -> String {
        match self {
            ColumnType::Decimal(s) => format!("decimal({s})"),
            other => other.variant_suffix().to_string(),
        }
    }

    /// The type `code` names (see `code`); `None` for any other text.
    pub fn from_code(code: &str) -> Option<ColumnType> {
        Some(match code {
            "text" => ColumnType::Text,
            "bigint" => ColumnType::BigInt,
            "bool" => ColumnType::Bool,
            "blob" => ColumnType::Blob,
            "json" => ColumnType::Json,
            "number" => ColumnType::NumberText,
            other => {
                let scale = other.strip_prefix("decimal(")?.strip_suffix(')')?.parse().ok()?;
                ColumnType::Decimal(scale)
            }
        })
    }

    /// Whether the column stores `value` exactly. NULL fits everywhere.
    pub fn accepts(self, value: &AttrValue) -> bool {
        match (self, value) {
            (_, AttrValue::Null) => true,
            (ColumnType::Text, AttrValue::S(_)) => true,
            (ColumnType::BigInt, AttrValue::N(n)) => n.to_i64().is_some(),
            (ColumnType::Decimal(s), AttrValue::N(n)) => n.fits_decimal(s),
            (ColumnType::NumberText, AttrValue::N(_)) => true,
            (ColumnType::Bool, AttrValue::Bool(_)) => true,
            (ColumnType::Blob, AttrValue::B(_)) => true,
            (
                ColumnType::Json,
                AttrValue::M(_) | AttrValue::L(_) | AttrValue::Ss(_) | AttrValue::Ns(_) | AttrValue::Bs(_),
            ) => true,
            _ => false,
        }
    }

    /// Types a new column could take for `value`, most specific first, with DECIMAL scales
    /// up to `max_scale`. The last one always accepts the value, so a value never lacks a home.
    pub fn candidates(value: &AttrValue, max_scale: u32) -> Vec<ColumnType> {
        match value {
            AttrValue::S(_) | AttrValue::Null => vec![ColumnType::Text],
            AttrValue::N(n) => number_candidates(n, max_scale),
            AttrValue::Bool(_) => vec![ColumnType::Bool],
            AttrValue::B(_) => vec![ColumnType::Blob],
            _ => vec![ColumnType::Json],
        }
    }
}

fn number_candidates(n: &Number, max_scale: u32) -> Vec<ColumnType> {
    let mut out = Vec::with_capacity(3);
    if n.to_i64().is_some() {
        out.push(ColumnType::BigInt);
    }
    let preferred = n.scale().max(PREFERRED_SCALE).min(max_scale);
    let scale = if n.fits_decimal(preferred) { preferred } else { n.scale() };
    if scale <= max_scale && n.fits_decimal(scale) {
        out.push(ColumnType::Decimal(scale));
    }
    out.push(ColumnType::NumberText);
    out
}

/// A value as staged for loading: text (cast by SQL to the column type), integer or bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// Text, cast by SQL to its column's type.
    Text(Text),
    /// A 64-bit integer, for BIGINT columns.
    Int(i64),
    /// Binary data, for binary columns.
    Bytes(Vec<u8>),
}

impl Cell {
    /// Heap memory the cell holds (none for inline text and numbers).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Cell::Text(t) => crate::text::text_heap_bytes(t),
            Cell::Bytes(b) => b.capacity(),
            Cell::Null | Cell::Int(_) => 0,
        }
    }
}

/// The staged form of `value` for a column of type `ty` (which must accept it).
pub fn cell_for(ty: ColumnType, value: &AttrValue) -> Cell {
    match (ty, value) {
        (_, AttrValue::Null) => Cell::Null,
        (ColumnType::BigInt, AttrValue::N(n)) => n.to_i64().map(Cell::Int).unwrap_or(Cell::Null),
        (ColumnType::Decimal(_), AttrValue::N(n)) => Cell::Text(n.to_plain()),
        (ColumnType::Blob, AttrValue::B(b)) => Cell::Bytes(b.clone()),
        (ColumnType::Text, AttrValue::S(s)) => Cell::Text(s.clone()),
        (_, v) => Cell::Text(text_form(v)),
    }
}

/// The text a `varchar`-mode column holds for a value; `None` for NULL.
pub fn text_form(value: &AttrValue) -> Text {
    match value {
        AttrValue::S(s) => s.clone(),
        AttrValue::N(n) => n.to_compact_string(),
        AttrValue::Bool(b) => Text::const_new(if *b { "true" } else { "false" }),
        AttrValue::B(b) => base64_encode(b).into(),
        other => other.to_plain_json().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> AttrValue {
        AttrValue::N(Number::parse(s).unwrap())
    }

    #[test]
    fn number_columns() {
        let c = |s: &str| ColumnType::candidates(&n(s), 38);
        assert_eq!(c("42")[0], ColumnType::BigInt);
        assert_eq!(c("19.90")[0], ColumnType::Decimal(9));
        assert_eq!(c("1.0000000000001")[0], ColumnType::Decimal(13));
        assert_eq!(c("1E+100"), vec![ColumnType::NumberText]);
        assert_eq!(
            c("123456789012345678901234567890.5"),
            vec![ColumnType::Decimal(1), ColumnType::NumberText]
        );
        // Redshift's largest scale is 37: a number with 38 decimals is kept as text there.
        let tiny = "0.00000000000000000000000000000000000001";
        assert_eq!(c(tiny), vec![ColumnType::Decimal(38), ColumnType::NumberText]);
        assert_eq!(ColumnType::candidates(&n(tiny), 37), vec![ColumnType::NumberText]);
        assert_eq!(ColumnType::candidates(&n("0.5"), 37)[0], ColumnType::Decimal(9));
        assert!(!ColumnType::BigInt.accepts(&n("1.5")));
        assert!(ColumnType::Decimal(2).accepts(&n("10")));
        assert!(!ColumnType::Decimal(2).accepts(&n("0.001")));
        assert!(!ColumnType::Text.accepts(&n("1")));
    }

    #[test]
    fn codes_round_trip() {
        for t in [
            ColumnType::Text,
            ColumnType::BigInt,
            ColumnType::Decimal(7),
            ColumnType::Bool,
            ColumnType::Blob,
            ColumnType::Json,
            ColumnType::NumberText,
        ] {
            assert_eq!(ColumnType::from_code(&t.code()), Some(t));
        }
    }

    #[test]
    fn cells() {
        assert_eq!(cell_for(ColumnType::BigInt, &n("7")), Cell::Int(7));
        assert_eq!(cell_for(ColumnType::Decimal(9), &n("1.5E-3")), Cell::Text("0.0015".into()));
        assert_eq!(cell_for(ColumnType::Bool, &AttrValue::Bool(true)), Cell::Text("true".into()));
        assert_eq!(cell_for(ColumnType::Text, &AttrValue::Null), Cell::Null);
    }
}
