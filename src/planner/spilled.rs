//! A backlog's held changes on disk (see `crate::spill`): written when they reach their
//! bound, read back a few key partitions at a time, and planned as parts of one batch.

use std::collections::{BTreeMap, HashMap};

use dynashift_core::held::HeldChange;
use dynashift_core::reduce::Reducer;
use dynashift_core::spilled;
use rayon::prelude::*;

use super::decode::machine_cores;
use super::{planning_pool, Group, Planner, Prepared};
use crate::spill::Spill;
use crate::warehouse::Batch;

impl Planner {
    /// Times held changes went to disk (see `spill`).
    pub fn spills(&self) -> u64 {
        self.spills
    }

    /// Lets held changes go to disk in `dir` (about `limit` bytes) when a backlog outgrows
    /// their memory bound (`batch_bytes`). They come back as batches of about half of it, so
    /// that the next is read back and planned while the warehouse applies one, within the
    /// memory the two may take together.
    pub fn spill_to(&mut self, dir: &std::path::Path, limit: u64, batch_bytes: usize) {
        let group_bytes = (batch_bytes / 2).max(1);
        self.spill = Some(Spill::new(dir, limit, group_bytes));
        self.group_bytes = group_bytes;
    }

    /// Writes the held changes to disk and frees their memory (positions, rejects and the
    /// tables' figures stay). A no-op with schedules or without `spill_to`.
    pub fn spill(&mut self) -> std::io::Result<()> {
        let Some(spill) = self.spill.as_mut().filter(|_| self.watermark.is_none()) else { return Ok(()) };
        let started = std::time::Instant::now();
        let tables: Vec<(String, Vec<(String, HeldChange)>)> = self
            .pending
            .tables
            .values_mut()
            .flat_map(|held| std::mem::take(&mut held.newest).finish_unordered())
            .collect();
        let keys: usize = tables.iter().map(|(_, held)| held.len()).sum();
        spill.write(tables)?;
        self.spills += 1;
        tracing::debug!(
            keys,
            spilled_mb = spill.bytes() >> 20,
            spill_ms = started.elapsed().as_millis() as u64,
            "held changes spilled to disk"
        );
        Ok(())
    }

    /// Before a flush: with changes on disk, reads the next batch's back (all of its keys'
    /// changes, those still in memory included), about `group_bytes` of them.
    pub fn load_spilled(&mut self) -> std::io::Result<()> {
        if self.spill.as_ref().is_none_or(|s| !s.reading() && s.bytes() == 0) || self.group.is_some() {
            return Ok(());
        }
        if self.spill.as_ref().is_some_and(|s| !s.reading()) {
            // What is still in memory joins its keys' partitions.
            self.spill()?;
            if let Some(spill) = &mut self.spill {
                spill.start_reading();
            }
        }
        let Some(spill) = self.spill.as_mut() else { return Ok(()) };
        let started = std::time::Instant::now();
        let mut tables: HashMap<String, Reducer> = HashMap::new();
        let mut weight = 0usize;
        loop {
            // Partitions are read and ordered on the cores at once, then folded in turn.
            let mut taking = Vec::new();
            let mut planned = weight as u64;
            while taking.len() < machine_cores().max(2) {
                match spill.next_size() {
                    Some(size) if planned == 0 || planned.saturating_add(size) <= self.group_bytes as u64 => {
                        planned = planned.saturating_add(size.max(1));
                        taking.extend(spill.take_next());
                    }
                    _ => break,
                }
            }
            if taking.is_empty() {
                break;
            }
            let read: Vec<std::io::Result<Vec<spilled::Spilled>>> = planning_pool().install(|| {
                taking
                    .into_par_iter()
                    .map(|partition| {
                        let mut changes = partition.read()?;
                        spilled::in_stream_order(&mut changes);
                        Ok(changes)
                    })
                    .collect()
            });
            for changes in read {
                for back in changes? {
                    let reducer = match tables.get_mut(&back.table) {
                        Some(reducer) => reducer,
                        None => tables.entry(back.table.clone()).or_default(),
                    };
                    reducer.add(dynashift_core::held::Packed {
                        table: back.table.as_str().into(),
                        key_text: back.key_text,
                        held: back.held,
                    });
                }
            }
            weight = tables.values().map(Reducer::weight).sum();
        }
        let last = !spill.reading();
        tracing::debug!(
            held_mb = weight >> 20,
            left_mb = spill.bytes() >> 20,
            read_ms = started.elapsed().as_millis() as u64,
            "spilled changes read back"
        );
        self.group = Some(Group { tables, last });
        Ok(())
    }

    /// A batch of changes read back from the spill that is not the last: its tables alone.
    /// Positions and rejects wait for the last, so a restart before it reads the backlog again
    /// (what this batch wrote is then already in, and its versions keep it).
    pub(super) fn flush_part(&mut self, tables: HashMap<String, Reducer>) -> Prepared {
        let newest = tables.into_values().flat_map(Reducer::finish_unordered);
        let (mut tables, catalog, newest_change) = self.plan(newest);
        for plan in &mut tables {
            *self.carried_expired.entry(plan.source_table.clone()).or_default() += plan.expired_kept;
            plan.expired_kept = 0;
        }
        let batch = Batch {
            catalog,
            tables,
            rejects: Vec::new(),
            source: self.source_name.clone(),
            checkpoints: Vec::new(),
            records: 0,
            changes: 0,
            applied_at: Vec::new(),
            held: Vec::new(),
            shard_behind: Vec::new(),
            table_marks: Vec::new(),
            snapshot: self.config.source.snapshot_version(),
        };
        Prepared { batch, seen: BTreeMap::new(), skipped: 0, newest_change }
    }
}
