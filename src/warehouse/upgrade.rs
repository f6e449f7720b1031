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
            q.execute(&add)?;
        }
        q.execute(&widen)?;
    }
    q.execute(&format!("DELETE FROM {meta} WHERE name = 'layout'"))?;
    q.execute(&format!("INSERT INTO {meta} (name, value) VALUES ('layout', '{LAYOUT}')"))?;
    Ok(())
}

#[cfg(all(test, feature = "duckdb"))]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pipeline::Pipeline;
    use crate::source::RawRecord;
    use crate::warehouse::duckdb::DuckDbWarehouse;
    use crate::warehouse::Warehouse;

    fn record(id: &str, ms: i64, event_id: &str) -> String {
        format!(
            r#"{{"eventID":"{event_id}","eventName":"MODIFY","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":{ms},"Keys":{{"id":{{"S":"{id}"}}}},"NewImage":{{"id":{{"S":"{id}"}}}}}}}}"#
        )
    }

    fn texts(w: &mut DuckDbWarehouse, sql: &str) -> Vec<String> {
        w.rows(sql, &[])
            .unwrap()
            .into_iter()
            .map(|r| match &r[0] {
                Field::Text(t) => t.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_layout_1_warehouse_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.duckdb");
        let config = Config::parse(
            &format!(
                "[source]\nkind = \"file\"\npath = \"x\"\n[target]\nkind = \"duckdb\"\npath = \"{}\"\n",
                path.display()
            ),
            std::path::Path::new("c.toml"),
        )
        .unwrap();
        let w = DuckDbWarehouse::open(&path, "dynamodb").unwrap();
        let mut pipeline = Pipeline::new(config.clone(), w).unwrap();
        let records = vec![RawRecord {
            data: record("a", 1_764_000_000_000, "e1").into_bytes(),
            position: dynashift_core::Position::new("f", "7"),
            problem: None,
        }];
        pipeline.process(records).unwrap();
        let (_, mut w, _) = pipeline.into_parts();
        // As an earlier version left it: 40-digit sequences, no eventID columns, no layout.
        for sql in [
            "ALTER TABLE dynamodb.t DROP COLUMN _ddb_event_ids",
            "UPDATE dynamodb.t SET _ddb_sequence = RIGHT(_ddb_sequence, 40)",
            "ALTER TABLE _dynashift.tombstones DROP COLUMN event_ids",
            "DELETE FROM _dynashift.meta",
        ] {
            w.execute(sql).unwrap();
        }
        assert_eq!(texts(&mut w, "SELECT _ddb_sequence FROM dynamodb.t")[0].len(), 40);
        w.setup().unwrap();
        assert_eq!(texts(&mut w, "SELECT _ddb_sequence FROM dynamodb.t"), ["0".repeat(63) + "7"]);
        assert_eq!(texts(&mut w, "SELECT value FROM _dynashift.meta WHERE name = 'layout'"), [LAYOUT]);
        assert_eq!(
            texts(&mut w, "SELECT CAST(COUNT(event_ids) AS VARCHAR) FROM _dynashift.tombstones"),
            ["0"]
        );
        // The same change again is recognised as not newer; a later one of the same time wins.
        let mut pipeline = Pipeline::new(config, w).unwrap();
        let again = |seq: &str, id: &str| RawRecord {
            data: record("a", 1_764_000_000_000, id).into_bytes(),
            position: dynashift_core::Position::new("f", seq),
            problem: None,
        };
        let outcome = pipeline.process(vec![again("7", "e1")]).unwrap();
        assert_eq!(outcome.applied.get("T").copied().unwrap_or(0), 0, "the same record again");
        let outcome = pipeline.process(vec![again("9", "e2")]).unwrap();
        assert_eq!(outcome.applied.get("T"), Some(&1));
        let (_, mut w, _) = pipeline.into_parts();
        let e2 = dynashift_core::change::EventIds::of(Some("e2")).stored().unwrap();
        assert_eq!(texts(&mut w, "SELECT _ddb_event_ids FROM dynamodb.t"), [e2]);
    }
}
