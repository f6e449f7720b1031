//! When to read, when to hand a batch to the warehouse, when to wait for it, when to stop:
//! the run loop's decisions as a small state machine with no threads or I/O in it. `run`
//! drives it with a reading thread and an applying thread; `Pipeline` drives it in one
//! thread, which is how the model tests exercise the same decisions.

/// The bounds the flow keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowLimits {
    /// Records one batch folds at most (`max_batch_records`).
    pub batch_records: u64,
    /// Memory the changes one batch holds may reach (`max_batch_memory`).
    pub batch_bytes: usize,
    /// Memory the batch being gathered and the batch being applied (as planned rows) may
    /// hold together: past it, reading waits for the warehouse instead of gathering more.
    pub total_bytes: usize,
    /// Batches to hand over at most (`--max-batches`).
    pub max_batches: Option<u64>,
}

/// What the batch being gathered holds, as the planner reports it after each read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gathered {
    pub records: u64,
    /// Approximate memory of its held changes.
    pub bytes: usize,
    /// Positions or shard markers to commit, even with no records.
    pub marks: bool,
}

impl Gathered {
    fn is_empty(&self) -> bool {
        self.records == 0 && !self.marks
    }
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Take the next read (and any word from the warehouse that comes first).
    Read,
    /// Plan the gathered batch and give it to the warehouse, which is free.
    HandOver,
    /// Wait until the warehouse has applied its batch.
    AwaitWarehouse,
    /// Nothing more will be handed over: let the warehouse finish and end the run.
    Finish,
}

/// The run loop's state: the batch being gathered, the batch being applied, the input.
#[derive(Debug, Clone)]
pub struct Flow {
    limits: FlowLimits,
    gathered: Gathered,
    /// Memory of the batch the warehouse is applying, if it is applying one.
    applying: Option<usize>,
    /// The last read was short: the source has no backlog.
    caught_up: bool,
    input_over: bool,
    stopping: bool,
    failed: bool,
    handed_over: u64,
    /// Times reading waited because the two batches together reached `total_bytes`.
    memory_waits: u64,
}

impl Flow {
    pub fn new(limits: FlowLimits) -> Flow {
        Flow {
            limits,
            gathered: Gathered::default(),
            applying: None,
            caught_up: false,
            input_over: false,
            stopping: false,
            failed: false,
            handed_over: 0,
            memory_waits: 0,
        }
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

    /// The gathered batch went to the warehouse, planned into `planned_bytes`.
    pub fn handed_over(&mut self, planned_bytes: usize) {
        debug_assert!(self.applying.is_none(), "handed over to a busy warehouse");
        self.applying = Some(planned_bytes);
        self.gathered = Gathered::default();
        self.handed_over += 1;
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

    pub fn memory_waits(&self) -> u64 {
        self.memory_waits
    }

    /// Whether the gathered batch has reached its record or memory bound.
    fn full(&self) -> bool {
        self.gathered.records >= self.limits.batch_records || self.gathered.bytes >= self.limits.batch_bytes
    }

    /// The next step. Records the reason when reading waits for memory, so call it once per
    /// step taken.
    pub fn next_step(&mut self) -> Step {
        if self.failed || self.limits.max_batches.is_some_and(|m| self.handed_over >= m) {
            return Step::Finish;
        }
        let idle = self.applying.is_none();
        if !self.gathered.is_empty() {
            // A backlog is folded into one batch as long as the bounds allow: each batch costs
            // the warehouse a pass over the keys it touches. Once caught up, a free warehouse
            // gets what there is at once.
            let due = self.full() || self.input_over || self.stopping || (self.caught_up && idle);
            if due {
                return if idle { Step::HandOver } else { Step::AwaitWarehouse };
            }
        } else if self.input_over || self.stopping {
            return if idle { Step::Finish } else { Step::AwaitWarehouse };
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

    const LIMITS: FlowLimits =
        FlowLimits { batch_records: 100, batch_bytes: 1_000, total_bytes: 2_500, max_batches: None };

    fn gathered(records: u64, bytes: usize) -> Gathered {
        Gathered { records, bytes, marks: false }
    }

    #[test]
    fn reads_until_something_is_gathered() {
        let mut flow = Flow::new(LIMITS);
        assert_eq!(flow.next_step(), Step::Read);
        flow.read(Gathered::default(), true);
        assert_eq!(flow.next_step(), Step::Read, "nothing to hand over");
    }

    #[test]
    fn a_backlog_is_folded_until_a_bound_then_handed_over() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(50, 400), false);
        assert_eq!(flow.next_step(), Step::Read, "a full read: more of the backlog folds in");
        flow.read(gathered(100, 800), false);
        assert_eq!(flow.next_step(), Step::HandOver, "the record bound");
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(), Step::HandOver, "the memory bound");
    }

    #[test]
    fn a_caught_up_source_hands_over_to_a_free_warehouse_at_once() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(3, 30), true);
        assert_eq!(flow.next_step(), Step::HandOver);
        flow.handed_over(45);
        flow.read(gathered(2, 20), true);
        assert_eq!(flow.next_step(), Step::Read, "busy: the next batch keeps gathering");
        flow.applied();
        assert_eq!(flow.next_step(), Step::HandOver, "free again: what was gathered goes at once");
    }

    #[test]
    fn a_full_batch_waits_for_a_busy_warehouse() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(100, 10), false);
        assert_eq!(flow.next_step(), Step::HandOver);
        flow.handed_over(20);
        flow.read(gathered(100, 10), false);
        assert_eq!(flow.next_step(), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(), Step::HandOver);
        assert_eq!(flow.memory_waits(), 0);
    }

    #[test]
    fn reading_waits_while_both_batches_together_reach_the_memory_bound() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 1_000), false);
        assert_eq!(flow.next_step(), Step::HandOver);
        // Planned rows take more memory than the held changes they came from.
        flow.handed_over(1_800);
        flow.read(gathered(5, 600), false);
        assert_eq!(flow.next_step(), Step::Read, "2,400 of 2,500");
        flow.read(gathered(6, 700), false);
        assert_eq!(flow.next_step(), Step::AwaitWarehouse, "2,500 of 2,500");
        assert_eq!(flow.memory_waits(), 1);
        flow.applied();
        assert_eq!(flow.next_step(), Step::Read, "the gathered batch goes on to its own bound");
    }

    #[test]
    fn the_end_of_input_hands_over_the_rest_then_finishes() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 10), false);
        flow.input_over();
        assert_eq!(flow.next_step(), Step::HandOver);
        flow.handed_over(10);
        assert_eq!(flow.next_step(), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(), Step::Finish);
    }

    #[test]
    fn markers_alone_are_handed_over() {
        let mut flow = Flow::new(LIMITS);
        flow.read(Gathered { records: 0, bytes: 0, marks: true }, true);
        assert_eq!(flow.next_step(), Step::HandOver);
    }

    #[test]
    fn a_stop_applies_what_is_gathered_and_reads_no_more() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 10), false);
        flow.read(gathered(20, 20), false);
        flow.handed_over(10);
        flow.read(gathered(5, 5), false);
        flow.stop();
        assert_eq!(flow.next_step(), Step::AwaitWarehouse);
        flow.applied();
        assert_eq!(flow.next_step(), Step::HandOver);
        flow.handed_over(5);
        flow.applied();
        assert_eq!(flow.next_step(), Step::Finish);
    }

    #[test]
    fn a_failure_or_the_batch_limit_finishes() {
        let mut flow = Flow::new(LIMITS);
        flow.read(gathered(10, 10), true);
        flow.handed_over(10);
        flow.failed();
        assert_eq!(flow.next_step(), Step::Finish);
        let mut flow = Flow::new(FlowLimits { max_batches: Some(1), ..LIMITS });
        flow.read(gathered(10, 10), true);
        assert_eq!(flow.next_step(), Step::HandOver);
        flow.handed_over(10);
        flow.read(gathered(10, 10), true);
        assert_eq!(flow.next_step(), Step::Finish, "what the warehouse holds is still applied");
    }
}
