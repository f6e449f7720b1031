//! Bringing a warehouse written by an earlier version to the current layout, once, at setup.
//!
//! Layout 2 (this version) widened the stored stream sequence from 40 to 64 digits, so that
//! Kinesis sequence numbers (56 digits) decide ties of equal creation times, and added the
//! `eventID`s by which re-delivered records are recognised. Earlier rows are padded to the
//! new width (text order must stay numeric order) and given the new, empty columns.

use dynashift_core::change::SEQUENCE_WIDTH;
use dynashift_core::schema::SystemType;
use dynashift_core::sql::Param;

use super::registry::{Field, Query};
use super::WarehouseError;

/// The layout this version writes.
pub const LAYOUT: &str = "2";
/// The sequence width of layout 1.
const OLD_SEQUENCE_WIDTH: usize = 40;

/// Upgrades every registered table and the tombstones to `LAYOUT`, then records it. Each
/// step may run again after an interruption.
pub fn upgrade_layout(q: &mut dyn Query) -> Result<(), WarehouseError> {
    let (meta, tables, tombstones) = {
        let (d, control_schema) = (q.dialect(), &q.layout().control_schema);
        (
            d.qualified(control_schema, "meta"),
            d.qualified(control_schema, "tables"),
            d.qualified(control_schema, "tombstones"),
        )
    };
    let current = q.rows(&format!("SELECT value FROM {meta} WHERE name = 'layout'"), &[])?;
    if current.iter().any(|row| row.first() == Some(&Field::Text(LAYOUT.into()))) {
        return Ok(());
    }
    let mut parts: Vec<(String, String, &str, &str)> = Vec::new();
    for row in q.rows(&format!("SELECT target_schema, target_name FROM {tables}"), &[])? {
        if let [Field::Text(schema), Field::Text(name)] = row.as_slice() {
            parts.push((schema.clone(), name.clone(), "_ddb_event_ids", "_ddb_sequence"));
        }
    }
    if !parts.is_empty() {
        tracing::info!("upgrading {} table(s) written by an earlier version to layout {LAYOUT}", parts.len());
    }
    parts.push((q.layout().control_schema.clone(), "tombstones".into(), "event_ids", "sequence"));
    let pad = "0".repeat(SEQUENCE_WIDTH - OLD_SEQUENCE_WIDTH);
    for (schema, name, ids, sequence) in parts {
        let d = q.dialect();
        let target = if name == "tombstones" { tombstones.clone() } else { d.qualified(&schema, &name) };
        let probe = format!(
            "SELECT column_name FROM information_schema.columns \
             WHERE table_schema = {} AND table_name = {} AND column_name = {}",
            d.param(1),
            d.param(2),
            d.param(3)
        );
        let add =
            format!("ALTER TABLE {target} ADD COLUMN {} {}", d.quote(ids), d.system_type(SystemType::Text));
        let seq = d.quote(sequence);
        let widen = format!(
            "UPDATE {target} SET {seq} = '{pad}' || {seq} WHERE LENGTH({seq}) = {OLD_SEQUENCE_WIDTH}"
        );
        let has = q.rows(&probe, &[Param::Text(schema), Param::Text(name), Param::Text(ids.into())])?;
        if has.is_empty() {
            q.rows(&add, &[])?;
        }
        q.rows(&widen, &[])?;
    }
    q.rows(&format!("DELETE FROM {meta} WHERE name = 'layout'"), &[])?;
    q.rows(&format!("INSERT INTO {meta} (name, value) VALUES ('layout', '{LAYOUT}')"), &[])?;
    Ok(())
}
