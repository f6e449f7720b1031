//! Planning a batch's tables on all cores: a task per table, and a table with many rows (a
//! backfill's one table, say) cut into runs that are planned at once.

use std::collections::HashMap;

use dynashift_core::held::HeldChange;
use dynashift_core::plan::{finish_plan, known_columns, plan_run, PlannedRun, TableOptions, TablePlan};
use dynashift_core::reduce::sort_by_key_text;
use dynashift_core::schema::{Catalog, TableSchema};
use rayon::prelude::*;

use super::decode::{machine_cores, MAX_THREADS};

/// One table's part of a batch, once the table is registered in the catalog.
pub(super) struct TableJob {
    /// Key text and packed change, in key order.
    pub held: Vec<(String, HeldChange)>,
    pub options: TableOptions,
    pub create: bool,
}

/// Plans each table's rows (cells, JSON text, new columns) with the tables spread over the
/// cores; every table touches only its own schema. Plans come back in table order.
pub(super) fn plan_tables_in_parallel(
    catalog: &mut Catalog,
    mut jobs: HashMap<String, TableJob>,
) -> Vec<TablePlan> {
    let work: Vec<(&mut TableSchema, TableJob)> = catalog
        .tables
        .iter_mut()
        .filter_map(|(name, schema)| jobs.remove(name).map(|job| (schema, job)))
        .collect();
    let rows: usize = work.iter().map(|(_, job)| job.held.len()).sum();
    // A thread per table (up to `planning_threads`), even beyond the cores, so the system
    // shares the cores evenly: dealing whole tables to two cores gave one of them two of W1's
    // three tables (planning took 540–590 ms that way, 440–500 ms this way).
    // Changes are planned in key order, so columns are added in the same order every time.
    let plan = |(schema, mut job): (&mut TableSchema, TableJob)| {
        sort_by_key_text(&mut job.held);
        // A created table gains all its columns in its first batch: every run would add them.
        if job.create || job.held.len() < 2 * RUN_ROWS {
            plan_in_one_run(schema, job)
        } else {
            let run_rows = job.held.len().div_ceil(2 * machine_cores()).max(RUN_ROWS);
            plan_in_runs(schema, job, run_rows)
        }
    };
    let mut plans: Vec<TablePlan> = if rows < 5_000 {
        work.into_iter().map(plan).collect()
    } else {
        // Tasks on threads kept for the run: threads started for each batch handed their
        // memory back to the allocator as they ended, after the planning.
        planning_pool().install(|| work.into_par_iter().map(plan).collect())
    };
    plans.sort_by(|a, b| a.source_table.cmp(&b.source_table));
    plans
}

/// Rows of a run at least: fewer would cost more in copies of the schema than they share out.
const RUN_ROWS: usize = 4_096;

/// Plans the job's changes in order on one thread; each is unpacked just before it is
/// planned, so only one is ever in tree form.
fn plan_in_one_run(schema: &mut TableSchema, job: TableJob) -> TablePlan {
    let known = known_columns(schema, job.create);
    let table = schema.source_table.clone();
    let changes = job.held.into_iter().map(|(key, held)| held.unpack_or_panic(&table, key));
    let run = plan_run(schema, changes, job.options);
    finish_plan(schema, known, job.create, job.options, vec![run])
}

/// Plans the job's changes as consecutive runs at once, each on its own copy of the schema,
/// and gives exactly what planning them in one run gives. A run that added no column to its
/// copy plans the same on every schema its copy grows into (columns are only ever appended,
/// and each of its values found a column, or the overflow column, already there), so it is
/// kept as it is. The first run that added columns started from the schema the one run would
/// have had there, so it is kept too and its copy becomes the schema; each later one that
/// added columns is planned again, in order, on the schema as it has grown. Columns are rarely
/// added after a table's first batch, which is planned in one run.
fn plan_in_runs(schema: &mut TableSchema, job: TableJob, run_rows: usize) -> TablePlan {
    let TableJob { held, options, create } = job;
    let known = known_columns(schema, create);
    let table = schema.source_table.clone();
    // Each change is unpacked just before it is planned, as in one run.
    let plan = |schema: &mut TableSchema, chunk: &[(String, HeldChange)]| {
        let changes = chunk.iter().map(|(key, held)| held.to_change_or_panic(&table, key));
        plan_run(schema, changes, options)
    };
    let columns = schema.columns.len();
    let planned: Vec<(PlannedRun, TableSchema)> = held
        .par_chunks(run_rows)
        .map(|chunk| {
            let mut copy = schema.clone();
            (plan(&mut copy, chunk), copy)
        })
        .collect();
    let mut grown = false;
    let mut runs = Vec::with_capacity(planned.len());
    for ((run, copy), chunk) in planned.into_iter().zip(held.chunks(run_rows)) {
        if copy.columns.len() == columns {
            runs.push(run);
        } else if !grown {
            grown = true;
            *schema = copy;
            runs.push(run);
        } else {
            runs.push(plan(schema, chunk));
        }
    }
    // Every run is planned: the packed changes go before the rows' cells are placed.
    drop(held);
    finish_plan(schema, known, create, options, runs)
}

/// Threads that plan tables: four per core, at least eight, so that tables (one task each)
/// share the cores evenly rather than being dealt whole to them.
fn planning_threads() -> usize {
    (4 * machine_cores()).clamp(8, MAX_THREADS)
}

/// The planning threads, kept for the whole run (see `planning_threads`).
pub(super) fn planning_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(planning_threads())
            .thread_name(|i| format!("plan-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("cannot start planning threads: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use dynashift_core::change::{Change, EventKind, Position, Version};
    use dynashift_core::limits::Limits;
    use dynashift_core::number::Number;
    use dynashift_core::plan::{register_table, DeleteMode, TtlMode};
    use dynashift_core::types::ColumnMode;
    use dynashift_core::value::{key_text, AttrValue, Item};
    use proptest::prelude::*;

    use super::*;

    /// A value of one of several types for attribute `a{name}`: attributes change type, so
    /// runs add variant columns as well as new ones.
    fn value(kind: u8, n: u32) -> AttrValue {
        match kind % 6 {
            0 => AttrValue::S(format!("s{n}").into()),
            1 => AttrValue::N(Number::parse(&n.to_string()).unwrap()),
            2 => AttrValue::N(Number::parse(&format!("{n}.25")).unwrap()),
            3 => AttrValue::Bool(n.is_multiple_of(2)),
            4 => AttrValue::L(vec![AttrValue::Null]),
            _ => AttrValue::Null,
        }
    }

    fn change(i: usize, attrs: &[(u8, u8)], event: u8) -> (String, HeldChange) {
        let keys: Item = [("id", AttrValue::S(format!("{i:05}").into()))].into();
        let mut image = keys.clone();
        for &(name, kind) in attrs {
            image.insert(format!("a{name}").into(), value(kind, i as u32));
        }
        let event =
            [EventKind::Insert, EventKind::Modify, EventKind::Remove, EventKind::Expire][event as usize % 4];
        let change = Change {
            table: "T".into(),
            key_text: key_text(&keys),
            keys,
            new_image: (!event.is_delete()).then(|| image.clone()),
            old_image: (event == EventKind::Expire).then_some(image),
            event,
            version: Version::new(i as i64, None),
            position: Position::new("s", i.to_string()),
            ids: Default::default(),
        };
        let packed = HeldChange::pack(change);
        (packed.key_text, packed.held)
    }

    fn schema(mode: ColumnMode, max_columns: usize, before: &[(String, HeldChange)]) -> TableSchema {
        let limits = Limits { max_columns, ..Limits::default() };
        let options = TableOptions { columns: mode, ..Default::default() };
        let mut catalog = Catalog::default();
        register_table(
            &mut catalog,
            "T",
            before.first().and_then(|c| c.1.keys().ok()).as_ref(),
            options,
            limits,
        );
        let mut schema = catalog.tables.remove("T").unwrap();
        // Columns a batch before this one added.
        let job = TableJob { held: before.to_vec(), options, create: true };
        plan_in_one_run(&mut schema, job);
        schema
    }

    proptest! {
        /// Runs planned at once give what one run gives: rows, staged columns, new columns
        /// and the schema, whatever columns the runs add, in every column mode and near the
        /// column limit (where attributes overflow).
        #[test]
        fn runs_planned_at_once_plan_as_one_run(
            changes in prop::collection::vec(
                (prop::collection::vec((0u8..12, 0u8..6), 0..5), 0u8..4), 1..80),
            before in 0usize..10,
            run_rows in 1usize..9,
            mode in 0usize..4,
            max_columns in prop::sample::select(vec![14usize, 18, 1_600]),
            keep_expired in any::<bool>(),
            soft in any::<bool>(),
        ) {
            let mode = [ColumnMode::Typed, ColumnMode::Varchar, ColumnMode::Document, ColumnMode::Reference][mode];
            let held: Vec<(String, HeldChange)> =
                changes.iter().enumerate().map(|(i, (attrs, event))| change(i, attrs, *event)).collect();
            let before = before.min(held.len());
            let (first, rest) = held.split_at(before);
            let options = TableOptions {
                columns: mode,
                ttl_deletes: if keep_expired { TtlMode::Keep } else { TtlMode::Delete },
                deletes: if soft { DeleteMode::Soft } else { DeleteMode::Hard },
                ..Default::default()
            };
            let mut one = schema(mode, max_columns, first);
            let mut many = one.clone();
            let job = || TableJob { held: rest.to_vec(), options, create: false };
            let a = plan_in_one_run(&mut one, job());
            let b = plan_in_runs(&mut many, job(), run_rows);
            prop_assert_eq!(&a.rows, &b.rows);
            prop_assert_eq!(&a.staged, &b.staged);
            prop_assert_eq!(a.expired_kept, b.expired_kept);
            prop_assert_eq!(format!("{:?}", a.new_columns), format!("{:?}", b.new_columns));
            prop_assert_eq!(format!("{:?}", one.columns), format!("{:?}", many.columns));
        }
    }
}
