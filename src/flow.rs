//! When to read, when to hand a batch to the warehouse (and which tables it applies), when to
//! wait for it, when to stop: the run loop's decisions as a small state machine with no
//! threads, I/O or clock in it (the time is passed in). `run` drives it with a reading thread
//! and an applying thread; `Pipeline` drives it in one thread, which is how the model tests
//! exercise the same decisions.

use std::collections::HashMap;

use dynashift_core::schedule::{choose, format_duration, Choice, HeldTable, Rules};

use crate::config::Schedules;

/// The bounds the flow keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowLimits {
    /// Records one batch folds at most (`max_batch_records`).
    pub batch_records: u64,
    /// Memory the changes one batch holds may reach (`max_batch_memory`).
    pub batch_bytes: usize,
    /// Memory the batch being gathered (or planned and waiting) and the batch being applied
    /// (as planned rows) may hold together: past it, reading waits for the warehouse
    /// instead of gathering more, and a full batch is not planned ahead.
    pub total_bytes: usize,
    /// Batches to hand over at most (`--max-batches`).
    pub max_batches: Option<u64>,
    /// Bytes of held changes that may go to disk when a backlog fills `batch_bytes`
    /// (`defaults.spill`; 0: none).
    pub spill_bytes: u64,
}

/// What the batch being gathered holds, as the planner reports it after each read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// Records read since the last batch was handed over.
    pub records: u64,
    /// Approximate memory of all held changes.
    pub bytes: usize,
    /// Something to commit even with no table applied: positions or shard markers (with
    /// schedules: positions past the committed ones), rejects.
    pub marks: bool,
    /// With schedules: the tables holding changes.
    pub tables: Vec<HeldTable>,
    /// Bytes of held changes on disk (see `Step::Spill`).
    pub spilled: u64,
    /// Batches are being read back from disk: more follow before anything is read.
    pub draining: bool,
}

impl Gathered {
    fn is_empty(&self) -> bool {
        self.records == 0 && !self.marks
    }
}

/// Which held tables a batch applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Every table holding changes (no schedules).
    All,
    /// The tables the schedules chose, and why.
    Chosen(Choice),
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Take the next read (and any word from the warehouse that comes first).
    Read,
    /// Plan the selected tables of the gathered batch: at once when the warehouse is free,
    /// or while it applies the batch before when memory allows both (`Flow::planned`).
    Plan(Selection),
    /// Give the planned batch to the warehouse, which is free (`Flow::handed_over`).
    HandOver,
    /// Write the held changes to disk and read on (`Flow::spilled`): a backlog filled their
    /// memory bound. Once the backlog is read, they come back a part of the keys at a time,
    /// each part a batch (`Gathered::draining`), so every key is written once.
    Spill,
    /// Wait until the warehouse has applied its batch.
    AwaitWarehouse,
    /// Read nothing for now: the held changes of this paused table fill the memory bound.
    /// Wait a moment (for a stop, or for time to pass) and ask again.
    Wait(String),
    /// Nothing more will be handed over: let the warehouse finish and end the run.
    Finish,
}

/// With schedules: the rules, and when each table was last applied.
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedules: Schedules,
    /// Seconds since the epoch of each table's last apply (from the warehouse, then as
    /// batches are planned).
    last_applied: HashMap<String, i64>,
    /// How long the stream keeps a record (seconds), which bounds how long a change is held.
    retention: Option<u64>,
    /// Tables applied early because held changes reached the memory bound.
    early: u64,
}

impl Scheduler {
    pub fn new(
        schedules: Schedules,
        last_applied: HashMap<String, i64>,
        retention: Option<u64>,
    ) -> Scheduler {
        Scheduler { schedules, last_applied, retention, early: 0 }
    }

    /// What the lag alarm judges a change of `table` made at `made` by (seconds): when its
    /// schedule would first apply it, and the longest the schedule may hold a change (its
    /// interval and closed window, plus what quiet windows push this change back); both
    /// `None` when paused.
    pub fn alarm_terms(&self, table: &str, made: i64) -> (Option<i64>, Option<u64>) {
        let schedule = self.schedules.of(table);
        let last = self.last_applied.get(table).copied();
        let due_at = schedule.next_due(last, made, &self.schedules.quiet);
        let pushed = match (due_at, schedule.next_due(last, made, &[])) {
            (Some(quiet), Some(plain)) => (quiet - plain).max(0) as u64,
            _ => 0,
        };
        (due_at, schedule.longest_wait().map(|wait| wait + pushed))
    }

    /// The tables a batch holding `held` applies at `now`.
    pub fn choose(&self, held: &[HeldTable], now: i64, over_budget: bool) -> Choice {
        let schedule = |t: &str| self.schedules.of(t);
        let last_applied = |t: &str| self.last_applied.get(t).copied();
        let rules = Rules {
            schedule: &schedule,
            last_applied: &last_applied,
            quiet: &self.schedules.quiet,
            max_tables: self.schedules.max_tables_per_batch,
            retention: self.retention,
        };
        choose(held, &rules, now, over_budget)
    }

    /// One line saying which held tables `choice` applies and why, and when the others are due.
    pub fn explain(&self, choice: &Choice, held: &[HeldTable], now: i64) -> String {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(choice.retention.iter().map(|t| format!("{t} (nears the stream's retention)")));
        parts.extend(choice.due.iter().map(|t| format!("{t} (due)")));
        parts.extend(choice.early.iter().map(|t| format!("{t} (held changes reached max_batch_memory)")));
        let applies = if parts.is_empty() { "no table".to_string() } else { parts.join(", ") };
        let holds: Vec<String> = held
            .iter()
            .filter(|h| !choice.tables().any(|t| *t == h.table))
            .map(|h| {
                let schedule = self.schedules.of(&h.table);
                let last = self.last_applied.get(&h.table).copied();
                match schedule.next_due(last, now, &self.schedules.quiet) {
                    _ if schedule.paused => format!("{} (paused)", h.table),
                    Some(t) => format!(
                        "{} ({schedule}, due in {})",
                        h.table,
                        format_duration((t - now).max(0) as u64)
                    ),
                    None => format!("{} ({schedule}, never due: quiet windows cover it)", h.table),
                }
            })
            .collect();
        let mut line = format!("-- schedules: this batch applies {applies}");
        if !holds.is_empty() {
            line.push_str(&format!("; holds {}", holds.join(", ")));
        }
        line
    }
}

/// The run loop's state: the batch being gathered, the batch being applied, the input.
#[derive(Debug, Clone)]
pub struct Flow {
    limits: FlowLimits,
    gathered: Gathered,
    /// Memory of the batch the warehouse is applying, if it is applying one.
    applying: Option<usize>,
    /// Memory of the batch planned and waiting for the warehouse, if there is one.
    planned: Option<usize>,
    planned_count: u64,
    /// The last read was short: the source has no backlog.
    caught_up: bool,
    input_over: bool,
    stopping: bool,
    failed: bool,
    handed_over: u64,
    /// Times reading waited because the two batches together reached `total_bytes`.
    memory_waits: u64,
    /// With schedules, which tables each batch applies; without, all of them.
    scheduler: Option<Scheduler>,
    /// Paused tables whose oldest held change nears the stream's retention, as last found.
    expiring_paused: Vec<String>,
}

impl Flow {
    pub fn new(limits: FlowLimits) -> Flow {
        Flow {
            limits,
            gathered: Gathered::default(),
            applying: None,
            planned: None,
            planned_count: 0,
            caught_up: false,
            input_over: false,
            stopping: false,
            failed: false,
            handed_over: 0,
            memory_waits: 0,
            scheduler: None,
            expiring_paused: Vec::new(),
        }
    }

    /// Paused tables whose oldest held change nears the stream's retention (as of the last
    /// step): changes the stream will soon drop, unapplied.
    pub fn expiring_paused(&self) -> &[String] {
        &self.expiring_paused
    }

    /// The schedules' state, when batches follow them.
    pub fn scheduler(&self) -> Option<&Scheduler> {
        self.scheduler.as_ref()
    }

    /// A flow whose batches apply the tables `scheduler` chooses.
    pub fn with_scheduler(limits: FlowLimits, scheduler: Scheduler) -> Flow {
        Flow { scheduler: Some(scheduler), ..Flow::new(limits) }
    }

    /// Tables applied outside their schedule because held changes reached the memory bound.
    pub fn early_applies(&self) -> u64 {
        self.scheduler.as_ref().map_or(0, |s| s.early)
    }

    /// A read was folded in; `caught_up`: it was short (the source has no backlog).
    pub fn read(&mut self, gathered: Gathered, caught_up: bool) {
        self.gathered = gathered;
        self.caught_up = caught_up;
    }

    /// The input is consumed (without `--follow`, an empty read).
    pub fn input_over(&mut self) {
        self.input_over = true;
    }

    /// A stop was requested: what is gathered is still applied, nothing more is read.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// The gathered batch was planned at `now` into `planned_bytes`, with the tables
    /// `selection` names; `left`: what the planner still holds. It waits for the warehouse.
    pub fn planned(&mut self, planned_bytes: usize, selection: &Selection, now: i64, left: Gathered) {
        debug_assert!(self.planned.is_none(), "planned over a batch still waiting");
        self.planned = Some(planned_bytes);
        self.planned_count += 1;
        self.gathered = left;
        if let (Some(scheduler), Selection::Chosen(choice)) = (&mut self.scheduler, selection) {
            scheduler.early += choice.early.len() as u64;
            for table in choice.tables() {
                scheduler.last_applied.insert(table.clone(), now);
            }
        }
    }

    /// The held changes went to disk; `left`: what the planner holds now.
    pub fn spilled(&mut self, left: Gathered) {
        self.gathered = left;
    }

    /// Whether a full batch goes to disk rather than to the warehouse: it is full by memory
    /// while more of a backlog is to come, there are no schedules, and the disk bound allows.
    fn spills(&self) -> bool {
        let gathered = &self.gathered;
        self.scheduler.is_none()
            && gathered.bytes >= self.limits.batch_bytes
            && gathered.records < self.limits.batch_records
            && !(self.input_over || self.stopping || self.caught_up)
            && gathered.spilled.saturating_add(gathered.bytes as u64) <= self.limits.spill_bytes
    }

    /// The planned batch went to the warehouse.
    pub fn handed_over(&mut self) {
        debug_assert!(self.applying.is_none(), "handed over to a busy warehouse");
        self.applying = self.planned.take();
        self.handed_over += 1;
    }

    /// Whether the gathered batch may be planned while the warehouse applies another: the
    /// batch applied, the held changes and their planned rows (estimated at one and a half
    /// times the changes) must fit in `total_bytes` together. Small batches (a backfill's:
    /// each item a row of its own) are planned ahead; large ones wait, as memory demands.
    fn room_to_plan_ahead(&self) -> bool {
        let gathered = self.gathered.bytes;
        let planning = gathered.saturating_add(gathered / 2 * 3);
        self.applying.unwrap_or(0).saturating_add(planning) <= self.limits.total_bytes
    }

    /// The warehouse committed its batch.
    pub fn applied(&mut self) {
        self.applying = None;
    }

    /// The warehouse gave up on a batch: the run ends with its error.
    pub fn failed(&mut self) {
        self.applying = None;
        self.failed = true;
    }

    pub fn batches_handed_over(&self) -> u64 {
        self.handed_over
    }

    /// Batches planned so far: what is read now joins batch number `batches_planned()`.
    pub fn batches_planned(&self) -> u64 {
        self.planned_count
    }

    pub fn memory_waits(&self) -> u64 {
        self.memory_waits
    }

    /// Whether the gathered batch has reached its record or memory bound.
    fn full(&self) -> bool {
        self.gathered.records >= self.limits.batch_records || self.gathered.bytes >= self.limits.batch_bytes
    }

    /// The next step at `now` (seconds since the epoch). Records the reason when reading
    /// waits for memory, so call it once per step taken.
    pub fn next_step(&mut self, now: i64) -> Step {
        if self.failed {
            return Step::Finish;
        }
        let idle = self.applying.is_none();
        if self.planned.is_some() {
            return if idle { Step::HandOver } else { Step::AwaitWarehouse };
        }
        if self.limits.max_batches.is_some_and(|m| self.planned_count >= m) {
            return Step::Finish;
        }
        if self.stopping && (self.gathered.spilled > 0 || self.gathered.draining) {
            // Changes on disk are left: their positions were never committed, so the next
            // run reads them again (what a part applied is kept by its versions).
            return if idle { Step::Finish } else { Step::AwaitWarehouse };
        }
        if self.gathered.draining {
            return if idle || self.room_to_plan_ahead() {
                Step::Plan(Selection::All)
            } else {
                Step::AwaitWarehouse
            };
        }
        let selection = match &self.scheduler {
            None => Selection::All,
            Some(scheduler) => {
                let over_budget = self.gathered.bytes >= self.limits.batch_bytes;
                let choice = scheduler.choose(&self.gathered.tables, now, over_budget);
                self.expiring_paused.clone_from(&choice.expiring_paused);
                Selection::Chosen(choice)
            }
        };
        let work = match &selection {
            Selection::All => !self.gathered.is_empty(),
            Selection::Chosen(choice) => !choice.is_empty() || self.gathered.marks,
        };
        // A backlog is folded into one batch as long as the bounds allow: each batch costs
        // the warehouse a pass over the keys it touches. Once caught up, a free warehouse
        // gets what there is at once.
        let ready = self.full() || self.input_over || self.stopping || (self.caught_up && idle);
        if work && ready {
            if self.spills() {
                return Step::Spill;
            }
            return if idle || self.room_to_plan_ahead() {
                Step::Plan(selection)
            } else {
                Step::AwaitWarehouse
            };
        }
        if self.input_over || self.stopping {
            // What is not due stays held: its positions were not committed.
            return if idle { Step::Finish } else { Step::AwaitWarehouse };
        }
        if let Selection::Chosen(Choice { blocked_by: Some(table), .. }) = selection {
            return if idle { Step::Wait(table) } else { Step::AwaitWarehouse };
        }
        if let Some(applying) = self.applying {
            if self.gathered.bytes.saturating_add(applying) >= self.limits.total_bytes {
                self.memory_waits += 1;
                return Step::AwaitWarehouse;
            }
        }
        Step::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FlowLimits = FlowLimits {
        batch_records: 100,
        batch_bytes: 1_000,
        total_bytes: 2_500,
        max_batches: None,
        spill_bytes: 0,
    };

    /// Plans the batch and hands it to the free warehouse, as the driver does.
    fn hand(flow: &mut Flow, planned: usize, selection: &Selection, now: i64, left: Gathered) {
        flow.planned(planned, selection, now, left);
        assert_eq!(flow.next_step(now), Step::HandOver);
        flow.handed_over();
    }

    fn gathered(records: u64, bytes: usize) -> Gathered {
        Gathered { records, bytes, ..Gathered::default() }
    }

    #[test]
    fn reads_until_something_is_gathered() {
        let mut flow = Flow::new(LIMITS);
        assert_eq!(flow.next_step(0), Step::Read);
        flow.read(Gathered::default(), true);
        assert_eq!(flow.next_step(0), Step::Read, "nothing to hand over");
    }

    #[test]
    fn a_backlog_is_folded_until_a_bound_then_handed_over() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(50, 400), false);
        assert_eq!(flow.next_step(0), Step::Read, "a full read: more of the backlog folds in");
        flow.read(gathered(100, 800), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "the record bound");
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "the memory bound");
    }

    #[test]
    fn a_caught_up_source_hands_over_to_a_free_warehouse_at_once() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(3, 30), true);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
        hand(&mut flow, 45, &Selection::All, 0, Gathered::default());
        flow.read(gathered(2, 20), true);
        assert_eq!(flow.next_step(0), Step::Read, "busy: the next batch keeps gathering");
        flow.applied();
        assert_eq!(
            flow.next_step(0),
            Step::Plan(Selection::All),
            "free again: what was gathered goes at once"
        );
    }

    #[test]
    fn a_full_batch_is_planned_while_the_warehouse_applies_when_memory_allows() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(100, 10), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
        hand(&mut flow, 20, &Selection::All, 0, Gathered::default());
        flow.read(gathered(100, 10), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "planned ahead");
        flow.planned(15, &Selection::All, 0, Gathered::default());
        assert_eq!(flow.batches_planned(), 2);
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse, "nothing is read past a planned batch");
        flow.applied();
        assert_eq!(flow.next_step(0), Step::HandOver);
        flow.handed_over();
        assert_eq!(flow.next_step(0), Step::Read);
        assert_eq!((flow.batches_handed_over(), flow.memory_waits()), (2, 0));
    }

    #[test]
    fn a_full_batch_too_large_to_plan_beside_the_one_applied_waits() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 1_000), false);
        hand(&mut flow, 1_000, &Selection::All, 0, Gathered::default());
        // 1,000 applied + 1,000 held + 1,500 planned pass 2,500.
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
    }

    #[test]
    fn reading_waits_while_both_batches_together_reach_the_memory_bound() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
        // Planned rows take more memory than the held changes they came from.
        hand(&mut flow, 1_800, &Selection::All, 0, Gathered::default());
        flow.read(gathered(5, 600), false);
        assert_eq!(flow.next_step(0), Step::Read, "2,400 of 2,500");
        flow.read(gathered(6, 700), false);
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse, "2,500 of 2,500");
        assert_eq!(flow.memory_waits(), 1);
        flow.applied();
        assert_eq!(flow.next_step(0), Step::Read, "the gathered batch goes on to its own bound");
    }

    #[test]
    fn the_end_of_input_hands_over_the_rest_then_finishes() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 10), false);
        flow.input_over();
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
        hand(&mut flow, 10, &Selection::All, 0, Gathered::default());
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(0), Step::Finish);
    }

    #[test]
    fn markers_alone_are_handed_over() {
        let mut flow = Flow::new(LIMITS);
        flow.read(Gathered { marks: true, ..Gathered::default() }, true);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
    }

    #[test]
    fn a_stop_applies_what_is_gathered_and_reads_no_more() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 10), false);
        flow.read(gathered(20, 20), false);
        hand(&mut flow, 10, &Selection::All, 0, Gathered::default());
        flow.read(gathered(5, 5), false);
        flow.stop();
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "planned while the warehouse applies");
        flow.planned(5, &Selection::All, 0, Gathered::default());
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(0), Step::HandOver);
        flow.handed_over();
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(0), Step::Finish);
    }

    #[test]
    fn a_failure_or_the_batch_limit_finishes() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 10), true);
        hand(&mut flow, 10, &Selection::All, 0, Gathered::default());
        flow.failed();
        assert_eq!(flow.next_step(0), Step::Finish);
        let mut flow = Flow::new(FlowLimits { max_batches: Some(1), ..LIMITS });
        flow.read(gathered(10, 10), true);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
        hand(&mut flow, 10, &Selection::All, 0, Gathered::default());
        flow.read(gathered(10, 10), true);
        assert_eq!(flow.next_step(0), Step::Finish, "what the warehouse holds is still applied");
    }

    #[test]
    fn a_backlog_past_the_memory_bound_spills_then_comes_back_in_parts() {
        let mut flow = Flow::new(FlowLimits { spill_bytes: 2_500, ..LIMITS });
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(0), Step::Spill);
        flow.spilled(Gathered { spilled: 900, ..gathered(10, 0) });
        assert_eq!(flow.next_step(0), Step::Read);
        flow.read(Gathered { spilled: 900, ..gathered(20, 1_000) }, false);
        assert_eq!(flow.next_step(0), Step::Spill);
        flow.spilled(Gathered { spilled: 1_800, ..gathered(20, 0) });
        flow.read(Gathered { spilled: 1_800, ..gathered(30, 1_000) }, false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "the disk bound is reached");
        let draining = Gathered { spilled: 1_800, draining: true, ..gathered(30, 1_000) };
        hand(&mut flow, 1_500, &Selection::All, 0, draining.clone());
        assert_eq!(flow.next_step(0), Step::AwaitWarehouse, "no reading while parts are left");
        flow.applied();
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All));
        hand(&mut flow, 1_500, &Selection::All, 0, gathered(0, 0));
        flow.applied();
        assert_eq!(flow.next_step(0), Step::Read, "the last part went");
    }

    #[test]
    fn the_end_of_a_backlog_a_stop_or_the_record_bound_do_not_spill() {
        let limits = FlowLimits { spill_bytes: 1_000_000, ..LIMITS };
        let mut flow = Flow::new(limits);
        flow.read(gathered(10, 1_000), true);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "caught up");
        let mut flow = Flow::new(limits);
        flow.read(gathered(100, 1_000), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "the record bound");
        let mut flow = Flow::new(limits);
        flow.read(Gathered { spilled: 5_000, ..gathered(10, 10) }, false);
        flow.stop();
        assert_eq!(flow.next_step(0), Step::Finish, "a stop leaves spilled changes to be read again");
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(0), Step::Plan(Selection::All), "no spill allowed");
    }

    /// 2026-12-07 00:00 UTC, a Monday.
    const T: i64 = 1_796_601_600;

    fn scheduled(extra: &str) -> Flow {
        let text = format!(
            "[source]\nkind = \"file\"\npath = \"x\"\n[target]\nkind = \"duckdb\"\npath = \"x.duckdb\"\n\
             [tables.\"Orders\"]\nevery = \"1h\"\npriority = 5\n[tables.\"Audit\"]\npaused = true\n{extra}"
        );
        let config = crate::config::Config::parse(&text, std::path::Path::new("x.toml")).unwrap();
        Flow::with_scheduler(LIMITS, Scheduler::new(config.schedules, HashMap::new(), None))
    }

    fn holding(tables: &[(&str, usize)]) -> Gathered {
        let tables: Vec<HeldTable> = tables
            .iter()
            .map(|(t, bytes)| HeldTable {
                table: t.to_string(),
                bytes: *bytes,
                held_since: T,
                oldest_change: T,
            })
            .collect();
        Gathered { records: 1, bytes: tables.iter().map(|t| t.bytes).sum(), tables, ..Gathered::default() }
    }

    fn selection(step: &Step) -> Selection {
        match step {
            Step::Plan(selection) => selection.clone(),
            other => panic!("not a hand-over: {other:?}"),
        }
    }

    fn chosen(step: Step) -> Choice {
        match step {
            Step::Plan(Selection::Chosen(choice)) => choice,
            other => panic!("not a scheduled hand-over: {other:?}"),
        }
    }

    #[test]
    fn only_due_tables_are_handed_over_and_their_applies_recorded() {
        let mut flow = scheduled("");
        flow.read(holding(&[("Hot", 10), ("Orders", 10)]), true);
        let step = flow.next_step(T);
        assert_eq!(chosen(step.clone()).due, vec!["Orders", "Hot"], "never applied: due; by priority");
        hand(&mut flow, 20, &selection(&step), T, Gathered::default());
        flow.applied();
        flow.read(holding(&[("Orders", 10)]), true);
        assert_eq!(flow.next_step(T + 60), Step::Read, "Orders waits for its hour");
        flow.read(holding(&[("Orders", 10), ("Hot", 5)]), true);
        assert_eq!(chosen(flow.next_step(T + 60)).due, vec!["Hot"]);
        assert_eq!(chosen(flow.next_step(T + 3_600)).due, vec!["Orders", "Hot"]);
    }

    #[test]
    fn positions_alone_are_handed_over_when_they_advance() {
        let mut flow = scheduled("");
        flow.read(Gathered { marks: true, ..holding(&[("Audit", 10)]) }, true);
        let choice = chosen(flow.next_step(T));
        assert!(choice.is_empty(), "no table is applied, the positions are committed");
    }

    #[test]
    fn a_pass_ends_with_tables_not_due_still_held() {
        let mut flow = scheduled("");
        flow.read(holding(&[("Audit", 10)]), false);
        flow.input_over();
        assert_eq!(flow.next_step(T), Step::Finish);
    }

    #[test]
    fn quiet_windows_and_the_batch_limit() {
        let mut flow = scheduled("[schedule]\nquiet = [\"Mon 00:00-01:00\"]\nmax_tables_per_batch = 1\n");
        flow.read(holding(&[("Hot", 10), ("Orders", 10)]), true);
        assert_eq!(flow.next_step(T + 60), Step::Read, "quiet");
        assert_eq!(chosen(flow.next_step(T + 3_600)).due, vec!["Orders"], "one table per batch");
    }

    #[test]
    fn held_changes_past_the_memory_bound_apply_the_biggest_table_early() {
        let mut flow = scheduled("");
        let step = {
            flow.read(holding(&[("Orders", 10)]), true);
            flow.next_step(T)
        };
        hand(&mut flow, 10, &selection(&step), T, Gathered::default());
        flow.applied();
        flow.read(holding(&[("Orders", 900), ("Hot", 100)]), false);
        let step = flow.next_step(T + 1);
        let choice = chosen(step.clone());
        assert_eq!((choice.due.clone(), choice.early.clone()), (vec!["Hot".to_string()], vec![]));
        flow.read(holding(&[("Orders", 1_000)]), false);
        let step = flow.next_step(T + 2);
        assert_eq!(chosen(step.clone()).early, vec!["Orders"]);
        hand(&mut flow, 1_000, &selection(&step), T + 2, Gathered::default());
        assert_eq!(flow.early_applies(), 1);
    }

    #[test]
    fn a_paused_table_filling_memory_stops_reading_until_a_stop() {
        let mut flow = scheduled("");
        flow.read(holding(&[("Audit", 1_000)]), false);
        assert_eq!(flow.next_step(T), Step::Wait("Audit".into()));
        flow.read(holding(&[("Audit", 1_000)]), false);
        hand(&mut flow, 10, &Selection::All, T, holding(&[("Audit", 1_000)]));
        assert_eq!(flow.next_step(T), Step::AwaitWarehouse, "a batch in flight is waited for first");
        flow.applied();
        flow.stop();
        assert_eq!(flow.next_step(T), Step::Finish);
    }
}
