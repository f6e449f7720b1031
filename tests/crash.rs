//! The run loop of the real binary: killed with SIGKILL at random moments while replicating a
//! large generated file and restarted each time, and folding reads into larger batches while
//! the warehouse is busy; either way the database ends exactly at the model's state.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::workload::{generate, WorkloadSpec};
use dynashift_core::types::ColumnMode;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

#[test]
fn killed_and_restarted_twenty_times_ends_at_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WorkloadSpec {
        records: 120_000,
        keys: 8_000,
        duplicate_percent: 5,
        shuffle_window: 1000,
        seed: 42,
        expire_percent: 1,
    };
    let (lines, model) = generate(&spec, false);
    let input = dir.path().join("changes.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let db = dir.path().join("crash.duckdb");
    let config = dir.path().join("crash.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = {:?}\n[target]\nkind = \"duckdb\"\npath = {:?}\n[defaults]\nbatch_size = 1500\nmax_batch_records = 6000\n",
            input.display().to_string(),
            db.display().to_string()
        ),
    )
    .unwrap();

    // A backlog folds into batches as large as the limits allow; capped at four reads, a pass
    // over the file is about 20 batches, so kills land between commits and runs resume from
    // committed positions mid-file, not only from the start.
    let killed_mid_run = support::kill_and_restart(BIN, &config, 20, 400, 7);
    eprintln!("{killed_mid_run} of 20 rounds were killed mid-run");
    assert!(
        killed_mid_run >= 5,
        "only {killed_mid_run} rounds were killed mid-run; the test would prove little"
    );

    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
    let actual = support::read_back(&mut warehouse);
    let keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    support::assert_tables_equal(&actual, &support::expected(&model.tables, ColumnMode::Typed, &keys));

    // Nothing doubled: every record was consumed exactly once by the committed checkpoints.
    let conn = warehouse.connection();
    let records: i64 = conn.query_row("SELECT SUM(records) FROM _dynashift.runs", [], |r| r.get(0)).unwrap();
    assert_eq!(records as usize, lines.len(), "records consumed across all committed batches");
    let _ = Path::new(&db);
}

/// A backlog (every read full) folds into batches as large as the limits allow, whether or not
/// the warehouse is busy: the same tables, every record counted once. 40 reads of 1,000 are one
/// batch by default, four with `max_batch_records = 10000`, and 40 with `max_batch_records`
/// equal to `batch_size`.
#[test]
fn a_backlog_folds_into_batches_as_large_as_the_limits_allow() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WorkloadSpec { records: 40_000, keys: 2_000, seed: 7, ..WorkloadSpec::w1() };
    let (lines, model) = generate(&spec, true);
    let input = dir.path().join("changes.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let expected = support::expected(&model.tables, ColumnMode::Typed, &keys);
    let mut batches = Vec::new();
    let limits =
        [("folded", ""), ("capped", "max_batch_records = 10000\n"), ("fixed", "max_batch_records = 1000\n")];
    for (name, extra) in limits {
        let db = dir.path().join(format!("{name}.duckdb"));
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[source]\nkind = \"file\"\npath = {:?}\n[target]\nkind = \"duckdb\"\npath = {:?}\n\
                 [defaults]\nbatch_size = 1000\n{extra}",
                input.display().to_string(),
                db.display().to_string()
            ),
        )
        .unwrap();
        let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
        support::assert_tables_equal(&support::read_back(&mut warehouse), &expected);
        let conn = warehouse.connection();
        let (records, count): (i64, i64) = conn
            .query_row("SELECT SUM(records), COUNT(*) FROM _dynashift.runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(records as usize, lines.len(), "{name}: every record consumed once");
        batches.push(count);
    }
    assert_eq!(batches, [1, 4, 40], "batches by default, at 10,000 records, at one read");
}
