//! Crash test: the real binary, killed with SIGKILL at random moments while replicating a
//! large generated file, restarted each time; the database ends exactly at the model's state.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::workload::{generate, Rng, WorkloadSpec};
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

    let mut rng = Rng::new(7);
    let mut killed_mid_run = 0;
    for round in 0..20 {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_millis(100 + rng.below(900));
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match finished {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                assert!(status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed_mid_run += 1;
            }
        }
    }
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
