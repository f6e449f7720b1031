//! Planning: raw records → decoded, reduced, planned batch. No warehouse I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use dynashift_core::checkpoint::{compare_checkpoint, ENDED, PRUNED};
use dynashift_core::decode::DecodeContext;
use dynashift_core::held::HeldChange;
use dynashift_core::limits::Limits;
use dynashift_core::plan::{register_table, TablePlan};
use dynashift_core::reduce::Reducer;
use dynashift_core::schedule::HeldTable;
use dynashift_core::schema::Catalog;
use dynashift_core::Position;

use crate::config::Config;
use crate::source::RawRecord;
use crate::spill::Spill;
use crate::warehouse::{Batch, Reject, TableMark};

mod decode;
mod spilled;
mod tables;
mod watermark;

pub use self::decode::{decode_threads, Decoded, Decoder};
use self::tables::{plan_tables_in_parallel, planning_pool, TableJob};
use watermark::{furthest, Watermark};

/// A planned batch and the figures the run reports for it.
pub struct Prepared {
    pub batch: Batch,
    /// Decoded changes per table, before reduction.
    pub seen: BTreeMap<String, u64>,
    /// Changes of tables left out by include/exclude.
    pub skipped: u64,
    /// Per table: when the newest change of the batch was made (seconds since the epoch).
    pub newest_change: BTreeMap<String, i64>,
}

/// Turns records into batches against the catalog as it will be once earlier batches commit.
/// If a batch fails to commit, the planner is ahead of the warehouse: rebuild it from the
/// warehouse's registry before planning again.
///
/// Records are taken in steps (`ingest`) and reduced as they come, so one batch may span many
/// reads: while the warehouse is busy, later reads fold into the next batch, and every key
/// changed many times costs the warehouse one row instead of many. `flush` plans what was
/// taken.
pub struct Planner {
    config: Config,
    catalog: Catalog,
    decoder: Decoder,
    source_name: String,
    limits: Limits,
    pending: Pending,
    /// Set when tables may be held past a batch (schedules): positions then advance only
    /// to the low watermark of the held tables.
    watermark: Option<Watermark>,
    /// Batches record when their tables were applied (schedules are configured).
    record_applies: bool,
    /// Table marks found invalid at start, deleted by the next batch.
    dropped_marks: Vec<TableMark>,
    /// Tables the warehouse lists as holding changes (see `held_rows`).
    held_listed: HashMap<String, String>,
    /// Shards whose lag the warehouse lists, and when this process last wrote them.
    behind_listed: std::collections::HashSet<String>,
    behind_written: Option<i64>,
    /// Where held changes go when a backlog outgrows their bound (no schedules; see `spill`).
    spill: Option<Spill>,
    /// Bytes of held changes one batch read back from the spill holds at most.
    group_bytes: usize,
    /// A batch's changes read back from the spill, planned by the next flush.
    group: Option<Group>,
    /// Per table, expired changes kept that parts of a spilled backlog planned: counted with
    /// the last part, which commits the positions (a part is applied again after a restart).
    carried_expired: BTreeMap<String, u64>,
    /// Times held changes went to disk.
    spills: u64,
}

/// Changes read back from the spill: every change of their keys.
struct Group {
    tables: HashMap<String, Reducer>,
    /// Nothing is left on disk: the batch also takes the positions and rejects.
    last: bool,
}

/// What has been taken in and not yet handed over.
#[derive(Default)]
struct Pending {
    /// Changes held per table (kept across batches for tables not yet due).
    tables: HashMap<String, TableHeld>,
    /// The furthest position of each shard read since the last flush.
    checkpoints: HashMap<Arc<str>, Position>,
    rejects: Vec<Reject>,
    skipped: u64,
    /// Changes read again that their table's mark shows are already applied.
    already_in: u64,
    records: u64,
}

/// One table's held changes.
struct TableHeld {
    newest: Reducer,
    /// Decoded changes taken in (before reduction).
    seen: u64,
    /// When the first of them was read (seconds since the epoch).
    since: i64,
    /// When the oldest of them was made (seconds since the epoch); with schedules, no later
    /// than the change of the position the table pins (the stream must keep both).
    oldest_change: i64,
    /// When the oldest of them was made, the pinned position aside: the table's lag.
    oldest_made: i64,
    /// With schedules: per shard, the furthest position read before the table's first held
    /// change of that shard (`None`: nothing before it could be committed). Positions are
    /// committed no further while the table holds changes.
    starts: HashMap<Arc<str>, Option<Position>>,
}

impl TableHeld {
    fn new(since: i64) -> TableHeld {
        TableHeld {
            newest: Reducer::default(),
            seen: 0,
            since,
            oldest_change: since,
            oldest_made: since,
            starts: HashMap::new(),
        }
    }
}

/// Which held tables a flush plans.
#[derive(Debug, Clone, Copy)]
pub enum Take<'a> {
    /// Every table holding changes.
    All,
    /// These tables; the others keep their changes.
    Tables(&'a [String]),
}

impl Planner {
    pub fn new(config: Config, catalog: Catalog, limits: Limits) -> Planner {
        let context = DecodeContext {
            default_table: config.source.default_table(),
            key_attributes: config.key_attributes(),
            load_version: config.source.load_version(),
        };
        let source_name = config.source.checkpoint_name();
        Planner {
            config,
            catalog,
            decoder: Decoder { context },
            source_name,
            limits,
            pending: Pending::default(),
            watermark: None,
            record_applies: false,
            dropped_marks: Vec::new(),
            held_listed: Default::default(),
            behind_listed: Default::default(),
            behind_written: None,
            spill: None,
            group_bytes: 0,
            group: None,
            carried_expired: BTreeMap::new(),
            spills: 0,
        }
    }

    /// Lets tables hold changes past a batch (their schedules decide when they are applied):
    /// from now on, a flush commits positions only up to the first change any held table
    /// still holds. `resume`: the committed positions (shard → sequence) reading starts from;
    /// `marks`: per table, how far past them its changes are already in (shard → sequence).
    pub fn hold_tables(
        &mut self,
        resume: &HashMap<String, String>,
        marks: HashMap<String, HashMap<String, String>>,
    ) {
        let positions = |map: &HashMap<String, String>| -> HashMap<Arc<str>, Position> {
            map.iter()
                .map(|(shard, sequence)| {
                    (Arc::from(shard.as_str()), Position::new(shard.as_str(), sequence.as_str()))
                })
                .collect()
        };
        let committed = positions(resume);
        // A mark counts only past a committed position of its shard: positions deleted (a
        // re-created stream, a reload) or standard input (read from its start each run) leave
        // marks that no longer describe what will be read. Those are dropped with the next batch.
        let mut kept: HashMap<String, HashMap<Arc<str>, Position>> = HashMap::new();
        for (table, shards) in &marks {
            for (shard, mark) in positions(shards) {
                let valid = self.marks_apply()
                    && committed
                        .get(&shard)
                        .is_some_and(|c| compare_checkpoint(&mark.sequence, &c.sequence).is_gt());
                if valid {
                    kept.entry(table.clone()).or_default().insert(shard, mark);
                } else {
                    self.dropped_marks
                        .push(TableMark { table: table.clone(), position: Position::new(shard, PRUNED) });
                }
            }
        }
        let made = HashMap::new();
        self.watermark = Some(Watermark { read: committed.clone(), committed, made, marks: kept });
    }

    /// Every table mark of `marks` is dropped with the next batch (`sync --once --all`
    /// applies every table without them, and its positions may pass them).
    pub fn drop_marks(&mut self, marks: HashMap<String, HashMap<String, String>>) {
        for (table, shards) in marks {
            for shard in shards.into_keys() {
                self.dropped_marks
                    .push(TableMark { table: table.clone(), position: Position::new(shard, PRUNED) });
            }
        }
    }

    /// Whether table marks describe this source: not for standard input, read from its
    /// start each run whatever its positions say.
    fn marks_apply(&self) -> bool {
        !matches!(&self.config.source, crate::config::SourceConfig::File(f) if f.path == "-")
    }

    /// Records when each batch's tables are applied (with schedules configured, when every
    /// table is applied regardless: the next pass must know).
    pub fn record_applies(&mut self) {
        self.record_applies = true;
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Decodes, reduces and plans `records` as one batch (with anything taken in before).
    pub fn prepare(&mut self, records: Vec<RawRecord>) -> Prepared {
        self.ingest(records, decode_threads(true), 0);
        self.flush(Take::All)
    }

    /// What the pending batch holds, for the run loop's decisions.
    pub fn gathered(&self) -> crate::flow::Gathered {
        let bytes: usize = self.pending.tables.values().map(|t| t.newest.weight()).sum();
        let Some(_) = &self.watermark else {
            let spilled = self.spill.as_ref().map_or(0, Spill::bytes);
            let draining = self.spill.as_ref().is_some_and(Spill::reading);
            // While batches are read back, the next one's size (at most `group_bytes`).
            let next = if draining { spilled.min(self.group_bytes as u64) as usize } else { 0 };
            return crate::flow::Gathered {
                records: self.pending.records,
                bytes: bytes + next,
                marks: !self.pending.checkpoints.is_empty(),
                tables: Vec::new(),
                spilled,
                draining,
            };
        };
        let tables = self
            .pending
            .tables
            .iter()
            .map(|(table, held)| HeldTable {
                table: table.clone(),
                bytes: held.newest.weight(),
                held_since: held.since,
                oldest_change: held.oldest_change,
            })
            .collect();
        // Something to commit besides tables: positions past the committed ones, or rejects
        // the positions committed would pass.
        let upto = self.committable(|_| true);
        let marks =
            !self.advancing(&upto).is_empty() || self.pending.rejects.iter().any(|r| passed(&upto, r));
        crate::flow::Gathered { records: self.pending.records, bytes, marks, tables, ..Default::default() }
    }

    /// Per table holding changes: when its oldest change was made, and when the oldest record
    /// the stream must keep for it was made (seconds since the epoch; see `TableHeld`).
    pub fn oldest_unapplied(&self) -> impl Iterator<Item = (&str, i64, i64)> {
        self.pending.tables.iter().map(|(table, held)| (table.as_str(), held.oldest_made, held.oldest_change))
    }

    /// Decodes `records` on `threads` threads and folds them into the pending batch, read at
    /// `now` (seconds since the epoch).
    pub fn ingest(&mut self, records: Vec<RawRecord>, threads: usize, now: i64) {
        let decoded = self.decoder.decode(records, Vec::new(), threads);
        self.fold(decoded, now);
    }

    /// A decoder for this planner's records, to run on another thread.
    pub fn decoder(&self) -> Decoder {
        self.decoder.clone()
    }

    /// Folds decoded records, read at `now` (seconds since the epoch), into the pending batch.
    pub fn fold(&mut self, decoded: Decoded, now: i64) {
        // When the last change read of each shard before this read was made: the record a
        // table's first held change of the shard pins (`made` moves on as this read is folded).
        let made_before: HashMap<Arc<str>, i64> =
            self.watermark.as_ref().map(|w| w.made.clone()).unwrap_or_default();
        let pending = &mut self.pending;
        pending.records += decoded.records;
        // Markers that move a shard to where it already was (a position carried over to a
        // new name, the reader's start) count before this read's changes; a shard's end or
        // removal only after them, so a change read with its shard's end pins the shard.
        let (ends, moves): (Vec<Position>, Vec<Position>) =
            decoded.marks.into_iter().partition(|m| compare_checkpoint(&m.sequence, ENDED).is_ge());
        for position in &moves {
            if let Some(watermark) = &mut self.watermark {
                furthest(&mut watermark.read, position);
            }
            furthest(&mut pending.checkpoints, position);
        }
        for result in decoded.results {
            match result {
                Ok(packed) => {
                    let table = packed.table.as_str();
                    if let Some(watermark) = &mut self.watermark {
                        let shard = &packed.held.position().shard;
                        let made = packed.held.created_micros().div_euclid(1_000_000);
                        match watermark.made.get_mut(shard) {
                            Some(at) => *at = made,
                            None => {
                                watermark.made.insert(shard.clone(), made);
                            }
                        }
                    }
                    if !self.config.includes(table) {
                        pending.skipped += 1;
                        continue;
                    }
                    if self.watermark.as_ref().is_some_and(|w| w.has(table, packed.held.position())) {
                        pending.already_in += 1;
                        continue;
                    }
                    let held = match pending.tables.get_mut(table) {
                        Some(held) => held,
                        None => {
                            pending.tables.entry(table.to_string()).or_insert_with(|| TableHeld::new(now))
                        }
                    };
                    held.seen += 1;
                    if let Some(watermark) = &self.watermark {
                        // Positions are folded in after the results, so `read` is still the
                        // furthest read before this read.
                        let shard = &packed.held.position().shard;
                        if !held.starts.contains_key(shard) {
                            held.starts.insert(shard.clone(), watermark.read.get(shard).cloned());
                            // The pinned position's record must outlive the hold too (its
                            // age is unknown for a position resumed from: counted from now).
                            let pinned = made_before.get(shard).copied().unwrap_or(now);
                            held.oldest_change = held.oldest_change.min(pinned);
                        }
                    }
                    let made = packed.held.created_micros().div_euclid(1_000_000);
                    held.oldest_change = held.oldest_change.min(made);
                    held.oldest_made = held.oldest_made.min(made);
                    held.newest.add(packed);
                }
                Err(reject) => pending.rejects.push(reject),
            }
        }
        for position in decoded.positions.iter().chain(&ends) {
            if let Some(watermark) = &mut self.watermark {
                furthest(&mut watermark.read, position);
            }
            furthest(&mut pending.checkpoints, position);
        }
    }

    /// With schedules: how far each shard may be committed now, its furthest read held back
    /// to the first change of any table that stays held (`still_held`); shards such a table
    /// holds from their start are left out.
    fn committable(&self, still_held: impl Fn(&str) -> bool) -> HashMap<Arc<str>, Position> {
        let Some(watermark) = &self.watermark else { return HashMap::new() };
        let mut out = HashMap::new();
        'shards: for (shard, read) in &watermark.read {
            let mut upto = read;
            for (_, held) in self.pending.tables.iter().filter(|(t, _)| still_held(t)) {
                match held.starts.get(shard) {
                    None => {}
                    Some(None) => continue 'shards,
                    Some(Some(start)) if compare_checkpoint(&start.sequence, &upto.sequence).is_lt() => {
                        upto = start
                    }
                    Some(Some(_)) => {}
                }
            }
            out.insert(shard.clone(), upto.clone());
        }
        out
    }

    /// The positions of `upto` past what was committed.
    fn advancing(&self, upto: &HashMap<Arc<str>, Position>) -> Vec<Position> {
        let committed = self.watermark.as_ref().map(|w| &w.committed);
        upto.values()
            .filter(|p| {
                committed
                    .and_then(|c| c.get(&p.shard))
                    .is_none_or(|c| compare_checkpoint(&p.sequence, &c.sequence).is_gt())
            })
            .cloned()
            .collect()
    }

    /// Plans the batch `selection` describes, handed over at `now`: with schedules, the
    /// batch records when its tables were applied.
    pub fn hand_over(&mut self, selection: &crate::flow::Selection, now: i64) -> Prepared {
        if self.group.as_ref().is_some_and(|g| !g.last) {
            // A part: its tables alone; what the tables hold and when they were applied is
            // written with the last part.
            return self.flush(Take::All);
        }
        let mut prepared = self.hand_over_tables(selection, now);
        // Also without schedules, rows an earlier run left are deleted.
        if self.record_applies || !self.held_listed.is_empty() {
            prepared.batch.held = self.held_rows();
        }
        prepared.batch.shard_behind = self.behind_rows(now);
        prepared
    }

    /// How far behind each shard's reading is (the reader's figures), for `status`: every
    /// `BEHIND_EVERY_SECS` at most, with `PRUNED` for shards listed but no longer read.
    fn behind_rows(&mut self, now: i64) -> Vec<(String, String)> {
        if self.behind_written.is_some_and(|at| now - at < crate::warehouse::BEHIND_EVERY_SECS) {
            return Vec::new();
        }
        let current = crate::metrics::metrics().lag().shard_behind_ms.clone();
        if current.is_empty() && self.behind_listed.is_empty() {
            return Vec::new();
        }
        self.behind_written = Some(now);
        let mut rows: Vec<(String, String)> =
            current.iter().map(|(shard, ms)| (shard.clone(), format!("{ms} {now}"))).collect();
        for gone in self.behind_listed.iter().filter(|s| !current.contains_key(*s)) {
            rows.push((gone.clone(), PRUNED.to_string()));
        }
        self.behind_listed = current.into_keys().collect();
        rows.sort();
        rows
    }

    /// Shards the warehouse lists a lag for (from an earlier process): those no longer read
    /// are deleted with the first write.
    pub fn behind_listed(&mut self, shards: impl IntoIterator<Item = String>) {
        self.behind_listed.extend(shards);
    }

    /// What the tables still hold after a batch, for `status`: per table whose figures
    /// changed since they were last written, its changes and when the oldest was made
    /// (`"<changes> <seconds>"`), and `PRUNED` for a table listed as holding changes that
    /// holds none now.
    fn held_rows(&mut self) -> Vec<(String, String)> {
        let now_held: HashMap<String, String> = self
            .pending
            .tables
            .iter()
            .map(|(table, held)| (table.clone(), format!("{} {}", held.seen, held.oldest_made)))
            .collect();
        let mut rows: Vec<(String, String)> = now_held
            .iter()
            .filter(|(table, text)| self.held_listed.get(*table) != Some(*text))
            .map(|(table, text)| (table.clone(), text.clone()))
            .collect();
        for gone in self.held_listed.keys().filter(|t| !now_held.contains_key(*t)) {
            rows.push((gone.clone(), PRUNED.to_string()));
        }
        self.held_listed = now_held;
        rows.sort();
        rows
    }

    /// What the warehouse lists as held (from an earlier process): the first batch writes
    /// only what differs.
    pub fn held_listed(&mut self, held: HashMap<String, (u64, i64)>) {
        self.held_listed.extend(
            held.into_iter().map(|(table, (changes, oldest))| (table, format!("{changes} {oldest}"))),
        );
    }

    fn hand_over_tables(&mut self, selection: &crate::flow::Selection, now: i64) -> Prepared {
        match selection {
            crate::flow::Selection::All => {
                let mut prepared = self.flush(Take::All);
                if self.record_applies {
                    let tables = prepared.batch.tables.iter().map(|t| (t.source_table.clone(), now));
                    prepared.batch.applied_at = tables.collect();
                }
                prepared
            }
            crate::flow::Selection::Chosen(choice) => {
                let tables: Vec<String> = choice.tables().cloned().collect();
                let mut prepared = self.flush(Take::Tables(&tables));
                prepared.batch.applied_at = tables.into_iter().map(|t| (t, now)).collect();
                prepared
            }
        }
    }

    /// Plans the tables `take` names (with the rejects and positions taken in) as one batch;
    /// the planner's catalog moves to the batch's. Tables not taken keep their changes.
    pub fn flush(&mut self, take: Take) -> Prepared {
        if let Some(group) = self.group.take() {
            if !group.last {
                return self.flush_part(group.tables);
            }
            for (table, reducer) in group.tables {
                self.pending.tables.entry(table).or_insert_with(|| TableHeld::new(0)).newest = reducer;
            }
        }
        let upto = match take {
            Take::All => self.committable(|_| false),
            Take::Tables(taking) => self.committable(|t| !taking.iter().any(|x| x == t)),
        };
        let mut checkpoints: Vec<Position> = match &self.watermark {
            None => std::mem::take(&mut self.pending.checkpoints).into_values().collect(),
            Some(_) => self.advancing(&upto),
        };
        if let Some(watermark) = &mut self.watermark {
            for p in &checkpoints {
                watermark.committed.insert(p.shard.clone(), p.clone());
            }
        }
        self.pending.checkpoints.clear();
        let taken: Vec<(String, TableHeld)> = match take {
            Take::All => self.pending.tables.drain().collect(),
            Take::Tables(tables) => {
                tables.iter().filter_map(|t| self.pending.tables.remove_entry(t.as_str())).collect()
            }
        };
        // With schedules, a reject is recorded once the positions committed pass it: until
        // then a restart reads it again, and it must not be recorded twice.
        let rejects = match &self.watermark {
            None => std::mem::take(&mut self.pending.rejects),
            Some(_) => {
                let (now, later) =
                    std::mem::take(&mut self.pending.rejects).into_iter().partition(|r| passed(&upto, r));
                self.pending.rejects = later;
                now
            }
        };
        let mut table_marks = std::mem::take(&mut self.dropped_marks);
        let marks_apply = self.marks_apply();
        if let Some(watermark) = self.watermark.as_mut().filter(|_| marks_apply) {
            for (table, _) in &taken {
                table_marks.extend(watermark.move_marks(table, &upto));
            }
        }
        table_marks.sort_by(|a, b| (&a.table, &a.position).cmp(&(&b.table, &b.position)));
        checkpoints.sort();
        let already_in = std::mem::take(&mut self.pending.already_in);
        if already_in > 0 {
            tracing::debug!(already_in, "changes read again that their tables already had");
        }
        let skipped = std::mem::take(&mut self.pending.skipped);
        let records = std::mem::take(&mut self.pending.records);
        let mut seen = BTreeMap::new();
        let mut changes = 0;
        let mut newest = Vec::with_capacity(taken.len());
        for (table, held) in taken {
            seen.insert(table.clone(), held.seen);
            changes += held.seen;
            newest.extend(held.newest.finish_unordered());
        }
        // Expired changes kept that earlier parts planned are counted now, the table planned
        // (with no rows) if this part has none of its keys.
        let carried = std::mem::take(&mut self.carried_expired);
        for table in carried.keys() {
            if !newest.iter().any(|(t, _)| t == table) {
                newest.push((table.clone(), Vec::new()));
            }
        }
        let (mut tables, catalog, newest_change) = self.plan(newest);
        for plan in &mut tables {
            plan.expired_kept += carried.get(&plan.source_table).copied().unwrap_or(0);
        }
        let batch = Batch {
            catalog,
            tables,
            rejects,
            source: self.source_name.clone(),
            checkpoints,
            records,
            changes,
            applied_at: Vec::new(),
            held: Vec::new(),
            shard_behind: Vec::new(),
            table_marks,
            snapshot: self.config.source.snapshot_version(),
        };
        Prepared { batch, seen, skipped, newest_change }
    }

    /// Plans each table's newest changes against the catalog, which moves to the batch's.
    fn plan(
        &mut self,
        newest: impl IntoIterator<Item = (String, Vec<(String, HeldChange)>)>,
    ) -> (Vec<TablePlan>, Catalog, BTreeMap<String, i64>) {
        let mut catalog = self.catalog.clone();
        let mut jobs: HashMap<String, TableJob> = HashMap::new();
        let mut newest_change = BTreeMap::new();
        for (table, held) in newest {
            let made = held.iter().map(|(_, h)| h.created_micros()).max();
            if let Some(made) = made {
                newest_change.insert(table.clone(), made.div_euclid(1_000_000));
            }
            let options = self.config.table_options(&table);
            // The change of the least key names the table's key attributes, as in key order.
            let keys = held
                .iter()
                .min_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, h)| h.keys().unwrap_or_else(|e| panic!("{e}: a bug in packing")));
            let create = register_table(&mut catalog, &table, keys.as_ref(), options, self.limits);
            jobs.insert(table, TableJob { held, options, create });
        }
        let tables = plan_tables_in_parallel(&mut catalog, jobs);
        self.catalog = catalog.clone();
        (tables, catalog, newest_change)
    }
}

/// Whether the positions `upto` pass the record of `reject`.
fn passed(upto: &HashMap<Arc<str>, Position>, reject: &Reject) -> bool {
    upto.get(&reject.position.shard)
        .is_some_and(|p| compare_checkpoint(&reject.position.sequence, &p.sequence).is_le())
}

#[cfg(test)]
mod tests;
