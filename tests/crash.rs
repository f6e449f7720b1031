//! Crash test: the real binary, killed with SIGKILL at random moments while replicating a
//! large generated file, restarted each time; the database ends exactly at the model's state.
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
            "[source]\nkind = \"file\"\npath = {:?}\n[target]\nkind = \"duckdb\"\npath = {:?}\n[defaults]\nbatch_size = 1500\n",
            input.display().to_string(),
            db.display().to_string()
        ),
    )
    .unwrap();

    let killed_mid_run = support::kill_and_restart(BIN, &config, 20, 900, 7);
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
