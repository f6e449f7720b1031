//! The run loop of the real binary: killed with SIGKILL at random moments while replicating a
//! large generated file and restarted each time, and folding reads into larger batches while
//! the warehouse is busy, or holding a scheduled table past batches; every way the database
//! ends exactly at the model's state.
#![cfg(feature = "duckdb")]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift_testkit::WorkloadSpec;
use support::generate;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

/// Records consumed by the batches committed to `db` (0 before the first). Read-only, so
/// the killed run's log is left for the next run to recover, as it would be without the test.
fn committed(db: &Path) -> usize {
    read_count(db, "SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT) FROM _dynashift.runs")
}

/// Batches committed to `db`, parts of a spilled backlog included.
fn batches(db: &Path) -> usize {
    read_count(db, "SELECT COUNT(*) FROM _dynashift.runs")
}

/// Writes `name.toml` in `dir`, replicating the file `input` into `name.duckdb` with `rest`
/// (the `[defaults]` lines and any tables) after it; returns the database's and the
/// configuration's paths.
fn file_to_duckdb(
    dir: &Path,
    name: &str,
    input: &Path,
    rest: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let db = dir.join(format!("{name}.duckdb"));
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        "[source]\nkind = \"file\"\npath = {:?}\n[target]\nkind = \"duckdb\"\npath = {:?}\n[defaults]\n{rest}",
        input.display().to_string(),
        db.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    (db, config)
}

/// One number `sql` reads from `db`, read-only; 0 before the control tables exist.
fn read_count(db: &Path, sql: &str) -> usize {
    if !db.exists() {
        return 0;
    }
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap();
    let conn = duckdb::Connection::open_with_flags(db, config).unwrap();
    match conn.query_row(sql, [], |r| r.get::<_, i64>(0)) {
        Ok(n) => n as usize,
        Err(e) if e.to_string().contains("does not exist") => 0,
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[test]
fn killed_and_restarted_twenty_times_ends_at_the_model() {
    let dir = tempfile::tempdir().unwrap();
    // Enough work that twenty kills, each a moment after a commit, land inside it: about
    // forty batches of 6,000 records.
    let spec = WorkloadSpec {
        records: 240_000,
        keys: 16_000,
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
    let (db, config) =
        file_to_duckdb(dir.path(), "crash", &input, "batch_size = 1500\nmax_batch_records = 6000\n");

    let landed = support::kill_and_restart(BIN, &config, 20, 7, lines.len(), &mut || committed(&db));
    eprintln!("{landed} of 20 kills landed between commits, with progress made since the kill before");
    assert!(landed >= 15, "only {landed} of 20 kills landed inside the work; the test would prove little");

    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
    let actual = support::read_back(&mut warehouse);
    support::assert_tables_equal(&actual, &support::expected_model(&model));
    drop(warehouse);

    // Nothing doubled: every record was consumed exactly once by the committed checkpoints.
    assert_eq!(committed(&db), lines.len(), "records consumed across all committed batches");
}

/// A backlog past `max_batch_memory` goes to disk and comes back in parts, each a batch, the
/// positions only with the last. Killed a moment after parts commit and restarted, each run
/// reads the backlog again (what the parts wrote stays, kept by its versions); the run that
/// finishes ends at the model with every record counted once, and no run's spilled changes
/// are left on disk.
#[test]
fn killed_while_spilled_parts_apply_ends_at_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        WorkloadSpec { records: 120_000, keys: 8_000, seed: 9, shuffle_window: 500, ..WorkloadSpec::w1() };
    let (lines, model) = generate(&spec, false);
    let input = dir.path().join("changes.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (db, config) =
        file_to_duckdb(dir.path(), "spill", &input, "batch_size = 1500\nmax_batch_memory = \"1MB\"\n");
    let landed = support::kill_and_restart(BIN, &config, 6, 11, usize::MAX, &mut || batches(&db));
    eprintln!("{landed} of 6 kills landed after parts committed");
    assert!(landed >= 3, "only {landed} of 6 kills landed among the parts; the test would prove little");
    assert_eq!(committed(&db), 0, "no positions before the last part");

    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
    support::assert_tables_equal(&support::read_back(&mut warehouse), &support::expected_model(&model));
    drop(warehouse);
    assert_eq!(committed(&db), lines.len(), "records consumed across all committed batches");
    assert!(batches(&db) > landed + 2, "the last run applied the backlog in parts");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(".dynashift-spill-"))
        .collect();
    assert!(left.is_empty(), "spilled changes left on disk: {left:?}");
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
    let expected = support::expected_model(&model);
    let mut batches = Vec::new();
    let limits =
        [("folded", ""), ("capped", "max_batch_records = 10000\n"), ("fixed", "max_batch_records = 1000\n")];
    for (name, extra) in limits {
        let (db, config) = file_to_duckdb(dir.path(), name, &input, &format!("batch_size = 1000\n{extra}"));
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

/// Schedules under SIGKILL: with `Orders` applied at most hourly, the binary is killed a moment
/// after commits and restarted ten times. Positions never pass a change `Orders` still holds,
/// so `sync --once --all` then leaves exactly the model's state; and `Orders` was applied once
/// in all those runs (its last apply, kept in the warehouse, never moved).
#[test]
fn killed_with_an_hourly_table_held_then_all_ends_at_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WorkloadSpec { records: 60_000, keys: 6_000, seed: 5, ..WorkloadSpec::w1() };
    let (lines, model) = generate(&spec, false);
    let input = dir.path().join("changes.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rest = "batch_size = 1500\nmax_batch_records = 3000\n[tables.\"Orders\"]\nevery = \"1h\"\n";
    let (db, config) = file_to_duckdb(dir.path(), "held", &input, rest);
    let orders_applied = |db: &Path| -> Option<String> {
        if !db.exists() {
            return None;
        }
        let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap();
        let conn = duckdb::Connection::open_with_flags(db, config).unwrap();
        let sql =
            "SELECT sequence FROM _dynashift.checkpoints WHERE source LIKE '%@applied' AND shard = 'Orders'";
        conn.query_row(sql, [], |r| r.get::<_, String>(0)).ok()
    };
    // Records read by committed batches only grow (re-reads of held changes count again).
    let landed = support::kill_and_restart(BIN, &config, 10, 9, usize::MAX, &mut || committed(&db));
    assert!(landed >= 5, "only {landed} of 10 kills landed inside the work");
    let first_apply = orders_applied(&db);
    assert!(first_apply.is_some(), "Orders, never applied, was due at once");
    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(orders_applied(&db), first_apply, "Orders applied again within the hour");
    let out = Command::new(BIN).args(["sync", "--once", "--all", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
    support::assert_tables_equal(&support::read_back(&mut warehouse), &support::expected_model(&model));
}

/// One table's schedule in the random crash test, and how often it may be applied while the
/// test runs (well under an hour, never inside the window it is given).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Drawn {
    Continuous,
    Hourly,
    Paused,
    OutOfWindow,
}

impl Drawn {
    fn toml(self, window: &str) -> String {
        match self {
            Drawn::Continuous => "every = \"0s\"\n".to_string(),
            Drawn::Hourly => "every = \"1h\"\n".to_string(),
            Drawn::Paused => "paused = true\n".to_string(),
            Drawn::OutOfWindow => format!("window = \"{window}\"\n"),
        }
    }
}

/// Schedules drawn at random for the three tables of a generated history; the binary killed a
/// moment after commits and restarted, then run to the end. Each table was applied as its
/// schedule says (continuous: applied; hourly: once, its first apply never moved; paused or
/// outside its window: never, and the committed position stays before its first change);
/// `sync --once --all` then leaves exactly the model's state, so no position passed a change
/// that was not applied. The seed is printed; `DYNASHIFT_CRASH_SEED` replays one.
#[test]
fn random_schedules_killed_and_restarted_end_at_the_model() {
    let base: u64 = std::env::var("DYNASHIFT_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(11);
    let cases = if std::env::var("DYNASHIFT_CRASH_SEED").is_ok() { 1 } else { 3 };
    for seed in base..base + cases {
        println!("seed {seed}");
        random_schedules_case(seed);
    }
}

fn random_schedules_case(seed: u64) {
    let mut rng = dynashift_testkit::Rng::new(seed);
    let tables = ["Orders", "UserSessions", "device-metrics"];
    let kinds = [Drawn::Continuous, Drawn::Hourly, Drawn::Paused, Drawn::OutOfWindow];
    let drawn: Vec<Drawn> = tables.iter().map(|_| kinds[rng.below(4) as usize]).collect();
    println!("schedules {drawn:?}");
    // A daily window starting two hours from now: closed for the whole test.
    let hour = (dynashift::run::unix_now() / 3600 + 2) % 24;
    let window = format!("{hour:02}:00-{:02}:00", (hour + 1) % 24);
    let dir = tempfile::tempdir().unwrap();
    let spec = WorkloadSpec { records: 40_000, keys: 4_000, seed, ..WorkloadSpec::w1() };
    let (lines, model) = generate(&spec, false);
    let input = dir.path().join("changes.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let mut rest = "batch_size = 1000\nmax_batch_records = 2000\n".to_string();
    for (table, schedule) in tables.iter().zip(&drawn) {
        rest.push_str(&format!("[tables.\"{table}\"]\n{}", schedule.toml(&window)));
    }
    let (db, config) = file_to_duckdb(dir.path(), "random", &input, &rest);
    let query = |sql: &str| -> Vec<(String, String)> {
        if !db.exists() {
            return Vec::new();
        }
        let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap();
        let conn = duckdb::Connection::open_with_flags(&db, config).unwrap();
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let applies =
        || query("SELECT shard, sequence FROM _dynashift.checkpoints WHERE source LIKE '%@applied'");
    let landed = support::kill_and_restart(BIN, &config, 6, seed, usize::MAX, &mut || committed(&db));
    // Tables held for the whole test commit nothing after their first apply (and tables never
    // applied, nothing at all): where any is applied, the first run's kill lands after a commit.
    let applied_any = drawn.iter().any(|d| matches!(d, Drawn::Continuous | Drawn::Hourly));
    assert!(landed >= 1 || !applied_any, "seed {seed}: no kill landed after a commit");
    let first = applies();
    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "seed {seed}: {}", String::from_utf8_lossy(&out.stderr));
    let last = applies();
    // The committed position of the file (the byte offset past the last line consumed) and,
    // per table, the offset past its first change's line.
    let committed: u64 = query("SELECT shard, sequence FROM _dynashift.checkpoints WHERE source = 'file'")
        .first()
        .map_or(0, |(_, s)| s.parse().unwrap());
    let first_change_end = |table: &str| -> u64 {
        let name = format!("\"tableName\":\"{table}\"");
        let index = lines.iter().position(|l| l.contains(&name)).unwrap();
        lines[..=index].iter().map(|l| l.len() as u64 + 1).sum()
    };
    for (table, schedule) in tables.iter().zip(&drawn) {
        let applied =
            |all: &[(String, String)]| all.iter().find(|(t, _)| t == table).map(|(_, at)| at.clone());
        match schedule {
            Drawn::Continuous => assert!(applied(&last).is_some(), "seed {seed}: {table} never applied"),
            Drawn::Hourly => {
                assert!(applied(&last).is_some(), "seed {seed}: {table}, never applied, was due at once");
                if applied(&first).is_some() {
                    assert_eq!(
                        applied(&first),
                        applied(&last),
                        "seed {seed}: {table} applied twice in the hour"
                    );
                }
            }
            Drawn::Paused | Drawn::OutOfWindow => {
                assert_eq!(applied(&last), None, "seed {seed}: {table} applied against its schedule");
                let end = first_change_end(table);
                assert!(
                    committed < end,
                    "seed {seed}: position {committed} passed {table}'s first change (ends at {end})"
                );
            }
        }
    }
    // Continuous tables are whole already: every change of theirs read again after a kill was
    // either applied or skipped by its table's mark, never lost to one.
    let expected = support::expected_model(&model);
    let continuous: support::Tables = tables
        .iter()
        .zip(&drawn)
        .filter(|(_, d)| **d == Drawn::Continuous)
        .filter_map(|(t, _)| expected.get(*t).map(|rows| (t.to_string(), rows.clone())))
        .collect();
    if !continuous.is_empty() {
        let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
        let actual = support::read_back(&mut warehouse);
        let actual = actual.into_iter().filter(|(t, _)| continuous.contains_key(t)).collect();
        support::assert_tables_equal(&actual, &continuous);
    }
    let out = Command::new(BIN).args(["sync", "--once", "--all", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "seed {seed}: {}", String::from_utf8_lossy(&out.stderr));
    let mut warehouse = DuckDbWarehouse::open(&db, "dynamodb").unwrap();
    support::assert_tables_equal(&support::read_back(&mut warehouse), &expected);
}
