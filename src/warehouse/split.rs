//! Splitting a batch that a warehouse could not hold in memory into two that apply, one
//! after the other, to the same effect.

use dynashift_core::plan::TablePlan;

use super::Batch;

/// The first part holds about half of the rows and every schema change; the second the rest,
/// with the rejects, the positions and the records counted, so the positions are committed
/// only with the last of the data. `None` for a batch of one row or none: it cannot shrink.
pub fn split_batch(batch: &Batch) -> Option<(Batch, Batch)> {
    let total: usize = batch.tables.iter().map(|t| t.rows.len()).sum();
    if total < 2 {
        return None;
    }
    let mut left = total / 2;
    // Each row is copied once, into one of the halves.
    let shell = |p: &TablePlan| TablePlan {
        source_table: p.source_table.clone(),
        create: p.create,
        new_columns: p.new_columns.clone(),
        staged: p.staged.clone(),
        rows: Vec::new(),
        options: p.options,
        expired_kept: p.expired_kept,
    };
    let part = |tables, last: bool| Batch {
        catalog: batch.catalog.clone(),
        tables,
        rejects: if last { batch.rejects.clone() } else { Vec::new() },
        source: batch.source.clone(),
        checkpoints: if last { batch.checkpoints.clone() } else { Vec::new() },
        records: if last { batch.records } else { 0 },
        changes: if last { batch.changes } else { 0 },
        applied_at: if last { batch.applied_at.clone() } else { Vec::new() },
        table_marks: if last { batch.table_marks.clone() } else { Vec::new() },
        held: if last { batch.held.clone() } else { Vec::new() },
        shard_behind: if last { batch.shard_behind.clone() } else { Vec::new() },
        // Guarded: a part appended unguarded that committed without the batch's positions
        // would be read and appended again after a stop before the last part.
        snapshot: None,
    };
    let (mut heads, mut tails) = (Vec::new(), Vec::new());
    for plan in &batch.tables {
        let take = left.min(plan.rows.len());
        left -= take;
        let mut head = shell(plan);
        head.rows = plan.rows[..take].to_vec();
        head.expired_kept = 0;
        let mut tail = shell(plan);
        tail.rows = plan.rows[take..].to_vec();
        tail.create = false;
        tail.new_columns.clear();
        heads.push(head);
        tails.push(tail);
    }
    let (first, second) = (part(heads, false), part(tails, true));
    Some((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynashift_core::change::{EventKind, Version};
    use dynashift_core::plan::{RowOp, StagedRow, TableOptions};
    use dynashift_core::schema::Catalog;
    use dynashift_core::Position;

    fn plan(table: &str, rows: usize) -> TablePlan {
        TablePlan {
            source_table: table.into(),
            create: true,
            new_columns: Vec::new(),
            staged: Vec::new(),
            rows: (0..rows)
                .map(|i| StagedRow {
                    key_text: format!("k{i}"),
                    version: Version::new(i as i64, None),
                    event: EventKind::Insert,
                    op: RowOp::Upsert,
                    deleted: false,
                    event_ids: None,
                    cells: Default::default(),
                })
                .collect(),
            options: TableOptions::default(),
            expired_kept: 3,
        }
    }

    #[test]
    fn halves_keep_schema_changes_first_and_positions_last() {
        let batch = Batch {
            catalog: Catalog::default(),
            tables: vec![plan("A", 3), plan("B", 2)],
            rejects: Vec::new(),
            source: "file".into(),
            checkpoints: vec![Position::new("f", "9")],
            records: 5,
            changes: 5,
            applied_at: Vec::new(),
            table_marks: Vec::new(),
            held: Vec::new(),
            shard_behind: Vec::new(),
            snapshot: None,
        };
        let (first, second) = split_batch(&batch).unwrap();
        let rows = |b: &Batch| b.tables.iter().map(|t| t.rows.len()).collect::<Vec<_>>();
        assert_eq!((rows(&first), rows(&second)), (vec![2, 0], vec![1, 2]));
        assert!(first.tables.iter().all(|t| t.create) && second.tables.iter().all(|t| !t.create));
        assert!(first.checkpoints.is_empty() && first.records == 0);
        assert_eq!((second.checkpoints.len(), second.records), (1, 5));
        assert_eq!(first.tables[0].expired_kept + second.tables[0].expired_kept, 3);
        let one = Batch { tables: vec![plan("A", 1)], ..batch };
        assert!(split_batch(&one).is_none());
    }
}
