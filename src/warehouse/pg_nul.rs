//! PostgreSQL's `text` and `jsonb` cannot hold the character U+0000, which DynamoDB strings
//! may contain. Such a value is stored with U+FFFD in its place and the original is recorded
//! as a reject, so the batch still commits and nothing is lost.

use dynashift_core::cells::CellRef;
use dynashift_core::plan::{StagedRow, TablePlan};
use dynashift_core::schema::TableSchema;
use dynashift_core::types::ColumnType;
use dynashift_core::Position;

use super::Reject;

/// What fixing one table plan's cells takes: each staged column's name, and whether it holds
/// JSON text.
pub struct StorableCells<'a> {
    table: &'a str,
    columns: Vec<(&'a str, bool)>,
}

impl<'a> StorableCells<'a> {
    pub fn new(plan: &'a TablePlan, schema: Option<&'a TableSchema>) -> StorableCells<'a> {
        let columns = (0..plan.staged.len())
            .map(|i| match schema.map(|s| &s.columns[plan.staged[i]]) {
                Some(c) => (c.name.as_str(), c.ty == ColumnType::Json),
                None => ("?", false),
            })
            .collect();
        StorableCells { table: &plan.source_table, columns }
    }

    /// Fills `fixed` with the value to store in place of each cell of `row` (`None` where
    /// the cell is stored as it is), and adds a reject keeping each replaced original.
    pub fn fix(&self, row: &StagedRow, fixed: &mut Vec<Option<String>>, rejects: &mut Vec<Reject>) {
        fixed.clear();
        for (i, cell) in row.cells.iter().enumerate() {
            let (name, json) = self.columns.get(i).copied().unwrap_or(("?", false));
            let replaced = match cell {
                CellRef::Text(original) => storable(original, json).inspect(|_| {
                    rejects.push(Reject {
                        position: Position::new("(unstorable value)", "0"),
                        table: Some(self.table.to_string()),
                        reason: format!(
                            "value of column `{name}` of key {} contains U+0000, which PostgreSQL cannot \
                             store: stored with U+FFFD in its place; the original value is kept here",
                            row.key_text
                        ),
                        raw: original.as_bytes().to_vec(),
                    })
                }),
                _ => None,
            };
            fixed.push(replaced);
        }
    }
}

/// The value PostgreSQL can store in place of `value`, or `None` when it needs no change.
/// `json` marks JSON text, where U+0000 appears as the escape `\u0000`.
pub fn storable(value: &str, json: bool) -> Option<String> {
    if !json {
        return value.contains('\0').then(|| value.replace('\0', "\u{FFFD}"));
    }
    let bytes = value.as_bytes();
    if !value.contains("\\u0000") {
        return None;
    }
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut changed = false;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            // An escape: two characters, or six for \uXXXX.
            if bytes[i + 1] == b'u' && value.get(i + 2..i + 6) == Some("0000") {
                out.push_str("\\ufffd");
                changed = true;
                i += 6;
            } else {
                out.push_str(&value[i..i + 2]);
                i += 2;
            }
            continue;
        }
        let ch = value[i..].chars().next().unwrap_or('\u{FFFD}');
        out.push(ch);
        i += ch.len_utf8();
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lose_only_nul() {
        assert_eq!(storable("a\0b", false).as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(storable("plain \\u0000 text", false), None, "text has no escapes");
        assert_eq!(storable(r#"{"k":"x\u0000y"}"#, true).as_deref(), Some(r#"{"k":"x\ufffdy"}"#));
        assert_eq!(storable(r#"{"k":"x\\u0000"}"#, true), None, "an escaped backslash, not U+0000");
        assert_eq!(storable(r#"["é\\\u0000"]"#, true).as_deref(), Some(r#"["é\\\ufffd"]"#));
        assert_eq!(storable(r#"{"k":1}"#, true), None);
    }
}
