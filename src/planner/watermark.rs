//! With schedules, how far shard positions may be committed (a low watermark under every
//! held table's first change) and how far each table's changes are in past it (its marks).

use std::collections::HashMap;
use std::sync::Arc;

use dynashift_core::checkpoint::{compare_checkpoint, PRUNED};
use dynashift_core::Position;

use crate::warehouse::TableMark;

/// With schedules, how far positions may be committed: the furthest read of each shard and
/// what was handed over for commit.
#[derive(Default)]
pub(super) struct Watermark {
    pub(super) read: HashMap<Arc<str>, Position>,
    pub(super) committed: HashMap<Arc<str>, Position>,
    /// When the last change read of each shard was made (seconds since the epoch): the age
    /// of a position a held table pins, which the stream must still hold after a restart.
    pub(super) made: HashMap<Arc<str>, i64>,
    /// Per table, how far its changes are in the warehouse on the shards where that is
    /// past the committed position (the table marks batches write): a change at or before
    /// its table's mark is read again only because another table pinned the shard.
    pub(super) marks: HashMap<String, HashMap<Arc<str>, Position>>,
}

impl Watermark {
    /// Whether `table`'s mark on the shard of `position` shows the change already applied.
    pub(super) fn has(&self, table: &str, position: &Position) -> bool {
        self.marks
            .get(table)
            .and_then(|shards| shards.get(&position.shard))
            .is_some_and(|mark| compare_checkpoint(&position.sequence, &mark.sequence).is_le())
    }

    /// The marks a batch taking `table` writes: every shard read past `upto` (the positions
    /// the batch commits) is in for the table as far as it was read, or as its earlier mark
    /// says if that is further (a restart not yet read that far); marks now at or before
    /// `upto` are dropped.
    pub(super) fn move_marks(&mut self, table: &str, upto: &HashMap<Arc<str>, Position>) -> Vec<TableMark> {
        let old = self.marks.remove(table).unwrap_or_default();
        let mut furthest_in = self.read.clone();
        for mark in old.values() {
            furthest(&mut furthest_in, mark);
        }
        let new: HashMap<Arc<str>, Position> = furthest_in
            .into_iter()
            .filter(|(shard, read)| {
                upto.get(shard).is_none_or(|u| compare_checkpoint(&read.sequence, &u.sequence).is_gt())
            })
            .collect();
        let mut out: Vec<TableMark> = old
            .keys()
            .filter(|shard| !new.contains_key(*shard))
            .map(|shard| TableMark {
                table: table.to_string(),
                position: Position::new(shard.clone(), PRUNED),
            })
            .collect();
        out.extend(
            new.values()
                .filter(|p| old.get(&p.shard) != Some(*p))
                .map(|p| TableMark { table: table.to_string(), position: p.clone() }),
        );
        if !new.is_empty() {
            self.marks.insert(table.to_string(), new);
        }
        out
    }
}

/// Keeps the further of `position` and the shard's position in `positions`.
pub(super) fn furthest(positions: &mut HashMap<Arc<str>, Position>, position: &Position) {
    match positions.get(&position.shard) {
        Some(p) if compare_checkpoint(&p.sequence, &position.sequence).is_ge() => {}
        _ => {
            positions.insert(position.shard.clone(), position.clone());
        }
    }
}
