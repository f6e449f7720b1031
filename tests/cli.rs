//! The binary as a user runs it: quickstart, rerun, status, plan, bad input and bad setups.
#![cfg(feature = "duckdb")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dynashift(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN).current_dir(dir).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A working directory holding a copy of the examples.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("examples");
    std::fs::create_dir_all(ex.join("changes")).unwrap();
    std::fs::copy(repo().join("examples/quickstart.toml"), ex.join("quickstart.toml")).unwrap();
    for entry in std::fs::read_dir(repo().join("examples/changes")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, ex.join("changes").join(p.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn quickstart_runs_once_and_only_once() {
    let dir = workdir();
    let first = dynashift(dir.path(), &["run", "--config", "examples/quickstart.toml"]);
    assert!(first.status.success(), "{}", text(&first));
    let out = text(&first);
    for table in ["Customers", "OrderLines", "Sensors"] {
        assert!(out.contains(table), "{out}");
    }
    assert_eq!(support::count_before(&out, " rejected"), Some(1), "{out}");
    let peak =
        out.lines().find_map(|l| l.strip_prefix("peak memory ")?.strip_suffix(" MB")?.parse::<u64>().ok());
    assert!(peak.is_some_and(|mb| mb > 0), "{out}");

    let second = dynashift(dir.path(), &["run", "--config", "examples/quickstart.toml"]);
    assert!(second.status.success(), "{}", text(&second));
    let again = text(&second);
    assert_eq!(support::count_before(&again, " records in"), Some(0), "{again}");
    assert_eq!(support::count_before(&again, " batches"), Some(0), "{again}");

    let status = dynashift(dir.path(), &["status", "--config", "examples/quickstart.toml"]);
    let s = text(&status);
    assert!(status.status.success(), "{s}");
    let customers = s.lines().find(|l| l.starts_with("Customers")).unwrap_or_else(|| panic!("{s}"));
    let cols: Vec<&str> = customers.split_whitespace().collect();
    // table, target, rows, columns, applied, deletes, expired, rejects, lag, newest
    assert_eq!(cols[1], "dynamodb.customers");
    assert_eq!(cols[2], "2", "c-001 and c-003 remain: {s}");
    assert_eq!(cols[7], "1", "the truncated Customers record is a reject: {s}");
    assert!(cols[8].ends_with('h') && cols[8].contains('d'), "a year-old sample: days and hours: {s}");
    assert!(cols[9].starts_with("2025-11-24T"), "{s}");
    let sensors = s.lines().find(|l| l.starts_with("Sensors")).unwrap();
    assert_eq!(sensors.split_whitespace().nth(6), Some("1"), "one TTL expiry: {s}");

    let json = dynashift(dir.path(), &["status", "--json", "--config", "examples/quickstart.toml"]);
    assert!(json.status.success(), "{}", text(&json));
    let listed = support::status_schema::assert_status_json(&String::from_utf8_lossy(&json.stdout));
    assert_eq!(listed, ["Customers", "OrderLines", "Sensors"]);
}

#[test]
fn plan_prints_sql_without_running_it() {
    let dir = workdir();
    let plan = dynashift(dir.path(), &["plan", "--config", "examples/quickstart.toml"]);
    let out = text(&plan);
    assert!(plan.status.success(), "{out}");
    assert!(out.contains("CREATE TABLE \"dynamodb\".\"customers\""), "{out}");
    assert!(out.contains("DELETE FROM \"_dynashift_stage\" WHERE EXISTS"), "{out}");
    let dry = dynashift(dir.path(), &["run", "--dry-run", "--config", "examples/quickstart.toml"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert_eq!(text(&dry), out);
    // Nothing was created: no table, view or schema of any kind in the database file.
    let db = dir.path().join("quickstart.duckdb");
    if db.exists() {
        let conn = duckdb::Connection::open(&db).unwrap();
        let created: Vec<String> = conn
            .prepare(
                "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = current_database() \
                 AND schema_name NOT IN ('main', 'information_schema', 'pg_catalog') \
                 UNION ALL SELECT table_schema || '.' || table_name FROM information_schema.tables \
                 WHERE table_catalog = current_database()",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(created.is_empty(), "plan created {created:?}");
    }
    let status = dynashift(dir.path(), &["status", "--config", "examples/quickstart.toml"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("nothing replicated yet"), "{}", text(&status));
    let check = dynashift(dir.path(), &["check", "--config", "examples/quickstart.toml"]);
    assert!(check.status.success(), "{}", text(&check));
    // Nor do `status` and `check`, which only read.
    if db.exists() {
        let conn = duckdb::Connection::open(&db).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_catalog = current_database()",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "status or check created tables");
    }

    // On a replicated target, the three leave every schema, table and column as it was.
    let catalog = || {
        let conn = duckdb::Connection::open(&db).unwrap();
        let rows: Vec<String> = conn
            .prepare(
                "SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type \
                 FROM information_schema.columns WHERE table_catalog = current_database() ORDER BY 1",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows
    };
    let run = dynashift(dir.path(), &["run", "--config", "examples/quickstart.toml"]);
    assert!(run.status.success(), "{}", text(&run));
    let before = catalog();
    assert!(before.iter().any(|c| c.starts_with("dynamodb.customers.")), "{before:?}");
    for command in ["plan", "status", "check"] {
        let out = dynashift(dir.path(), &[command, "--config", "examples/quickstart.toml"]);
        assert!(out.status.success(), "{command}: {}", text(&out));
    }
    assert_eq!(catalog(), before, "plan, status or check changed the catalog");
}

#[test]
fn setup_errors_are_one_line_and_fail() {
    let dir = workdir();
    let missing = dynashift(dir.path(), &["run", "--config", "nope.toml"]);
    assert!(!missing.status.success());
    let m = String::from_utf8_lossy(&missing.stderr);
    assert!(
        m.starts_with("error: cannot read config file nope.toml") && m.trim().lines().count() == 1,
        "{m}"
    );
    // Each cause once.
    assert_eq!(m.matches("os error 2").count(), 1, "{m}");

    std::fs::write(
        dir.path().join("bad.toml"),
        "[source]\nkind = \"file\"\npath = \"x\"\nbogus = 1\n[target]\nkind = \"duckdb\"\npath = \"d\"\n",
    )
    .unwrap();
    let bad = dynashift(dir.path(), &["run", "--config", "bad.toml"]);
    let b = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && b.contains("bad.toml") && b.contains("bogus"), "{b}");

    std::fs::write(dir.path().join("nofile.toml"), "[source]\nkind = \"file\"\npath = \"absent/*.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"d.duckdb\"\n").unwrap();
    let nofile = dynashift(dir.path(), &["run", "--config", "nofile.toml"]);
    let n = String::from_utf8_lossy(&nofile.stderr);
    assert!(!nofile.status.success() && n.contains("no file matches `absent/*.jsonl`"), "{n}");
}

#[test]
fn a_locked_database_is_a_clear_error() {
    let dir = workdir();
    let db = dir.path().join("quickstart.duckdb");
    let holder = duckdb::Connection::open(&db).unwrap();
    let out = dynashift(dir.path(), &["run", "--config", "examples/quickstart.toml"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{e}");
    assert!(e.starts_with("error: cannot open DuckDB file quickstart.duckdb") && e.contains("lock"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    drop(holder);
}

#[test]
fn bad_records_are_rejected_and_the_run_goes_on() {
    let dir = workdir();
    let good = r#"{"eventName":"INSERT","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1764000000000,"Keys":{"k":{"S":"a"}},"NewImage":{"k":{"S":"a"}}}}"#;
    let mut data: Vec<u8> = Vec::new();
    for line in [
        "{not json",
        r#"{"eventName":"INSERT","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"k":{"S":"a"}},"NewImage":{}}}"#,
        r#"{"eventName":"INSERT","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1,"NewImage":{}}}"#,
        r#"{"eventName":"UPSERT","tableName":"T","dynamodb":{}}"#,
        r#"{"eventName":"INSERT","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"k":{"S":"b"}},"NewImage":{"x":{"N":"one"}}}}"#,
        good,
    ] {
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
    }
    data.extend_from_slice(b"\xff\xfe invalid utf-8\n");
    std::fs::write(dir.path().join("bad.jsonl"), &data).unwrap();
    std::fs::write(dir.path().join("empty.jsonl"), b"").unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[source]\nkind = \"file\"\npath = \"*.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"bad.duckdb\"\n",
    )
    .unwrap();
    let out = dynashift(dir.path(), &["run", "--config", "bad.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(support::count_before(&text(&out), " rejected"), Some(7), "{}", text(&out));
    let status = dynashift(dir.path(), &["status", "--config", "bad.toml"]);
    assert!(status.status.success(), "{}", text(&status));
    let status = text(&status);
    let t = status.lines().find(|l| l.starts_with("T ")).unwrap_or_else(|| panic!("{status}"));
    let cols: Vec<&str> = t.split_whitespace().collect();
    assert_eq!((cols[2], cols[7]), ("1", "3"), "{status}");
    assert!(status.contains("rejects not tied to a table: 4"), "{status}");

    let conn = duckdb::Connection::open(dir.path().join("bad.duckdb")).unwrap();
    let mut stmt = conn.prepare("SELECT reason, raw_text, raw_bytes IS NOT NULL FROM _dynashift.rejects ORDER BY shard, CAST(sequence AS BIGINT)").unwrap();
    let rows: Vec<(String, String, bool)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(reasons[0].starts_with("malformed record"), "{reasons:?}");
    assert!(reasons[1].contains("names no table"), "{reasons:?}");
    assert!(reasons[2].contains("no `dynamodb.Keys`"), "{reasons:?}");
    assert!(reasons[3].contains("unknown eventName `UPSERT`"), "{reasons:?}");
    assert!(reasons[4].contains("`one` is not a number"), "{reasons:?}");
    assert!(reasons[5].contains("not valid UTF-8") && rows[5].2, "{rows:?}");
    assert_eq!(reasons[6], "file is empty");
    assert_eq!(rows[0].1, "{not json");
}

#[test]
fn follow_tails_new_lines_and_stops_cleanly_on_sigint() {
    let dir = workdir();
    let record = |key: &str, t: u64| {
        format!(
            r#"{{"eventName":"INSERT","tableName":"Live","dynamodb":{{"ApproximateCreationDateTime":{t},"Keys":{{"k":{{"S":"{key}"}}}},"NewImage":{{"k":{{"S":"{key}"}}}}}}}}"#
        )
    };
    std::fs::write(dir.path().join("live.jsonl"), format!("{}\n", record("a", 1764000000000))).unwrap();
    std::fs::write(
        dir.path().join("live.toml"),
        "[source]\nkind = \"file\"\npath = \"live.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"live.duckdb\"\n",
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command.current_dir(dir.path()).args(["run", "--follow", "--config", "live.toml"]);
    let mut run = support::Watched::start(command);
    // The first pass has committed the first line before the second is written.
    assert!(run.wait_commits(1), "the run ended: {}", run.log());
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("live.jsonl")).unwrap();
    use std::io::Write;
    writeln!(f, "{}", record("b", 1764000000001)).unwrap();
    drop(f);
    assert!(run.wait_commits(1), "the appended line was never committed: {}", run.log());
    run.interrupt_promptly();
    let summary = run.stdout();
    assert_eq!(support::count_before(&summary, " records"), Some(2), "{summary}");
}

#[test]
fn export_lines_and_hostile_names_load() {
    let dir = workdir();
    let long_name = "é".repeat(32_768); // 64 KB of UTF-8
    let export = format!(
        "{{\"Item\":{{\"id\":{{\"N\":\"7\"}},\"select\":{{\"S\":\"x'; DROP TABLE t; --\"}},\"{long_name}\":{{\"BOOL\":true}},\"Mixed\":{{\"N\":\"1\"}},\"mixed\":{{\"N\":\"2\"}}}}}}\n"
    );
    std::fs::write(dir.path().join("export.json"), export).unwrap();
    std::fs::write(
        dir.path().join("export.toml"),
        "[source]\nkind = \"file\"\npath = \"export.json\"\ntable = \"Weird;Table\\\"\"\n\
         [target]\nkind = \"duckdb\"\npath = \"export.duckdb\"\n\
         [tables.\"Weird;Table\\\"\"]\nkeys = [\"id\"]\n",
    )
    .unwrap();
    let out = dynashift(dir.path(), &["run", "--config", "export.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let conn = duckdb::Connection::open(dir.path().join("export.duckdb")).unwrap();
    let (table, columns): (String, i64) = conn
        .query_row(
            "SELECT t.target_name, (SELECT COUNT(*) FROM _dynashift.columns c WHERE c.source_table = t.source_table) \
             FROM _dynashift.tables t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((table.as_str(), columns), ("weird_table_", 5));
    let names: Vec<String> = conn
        .prepare("SELECT column_name FROM _dynashift.columns ORDER BY ordinal")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(&names[..4], ["mixed", "id", "mixed_2", "select"]);
    assert!(names[4].len() <= 127 && names[4].starts_with('é'), "{}", names[4]);
    let select: String = conn
        .query_row("SELECT \"select\" FROM dynamodb.weird_table_ WHERE id = 7", [], |r| r.get(0))
        .unwrap();
    assert_eq!(select, "x'; DROP TABLE t; --");
    let event: String =
        conn.query_row("SELECT _ddb_event FROM dynamodb.weird_table_", [], |r| r.get(0)).unwrap();
    assert_eq!(event, "LOAD");
}

/// Records past DynamoDB's limits, as a malformed producer or a merging relay could send:
/// 20,000 levels of nesting, a 3 MB string, 20,000 attributes, a 70 KB attribute name. None
/// may crash the run or exhaust memory; each is loaded or rejected with its reason, and the
/// valid record beside them lands.
#[test]
fn records_past_dynamodbs_limits_are_loaded_or_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let record = |i: usize, image: &str| {
        format!(
            r#"{{"eventID":"e{i}","eventName":"INSERT","tableName":"Hostile","dynamodb":{{"ApproximateCreationDateTime":{},"Keys":{{"id":{{"S":"h{i}"}}}},"NewImage":{{"id":{{"S":"h{i}"}}{image}}}}}}}"#,
            1_764_000_000_000u64 + i as u64
        )
    };
    let deep = format!("{}{{\"S\":\"x\"}}{}", "{\"L\":[".repeat(20_000), "]}".repeat(20_000));
    let wide: String = (0..20_000).map(|i| format!(r#","a{i}":{{"N":"{i}"}}"#)).collect();
    let lines = [
        record(1, &format!(r#","deep":{deep}"#)),
        record(2, &format!(r#","big":{{"S":"{}"}}"#, "y".repeat(3_000_000))),
        record(3, &wide),
        record(4, &format!(r#","{}":{{"S":"long name"}}"#, "n".repeat(70_000))),
        record(5, r#","ok":{"S":"fine"}"#),
    ];
    std::fs::write(dir.path().join("hostile.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("hostile.toml"),
        "[source]\nkind = \"file\"\npath = \"hostile.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"hostile.duckdb\"\n",
    )
    .unwrap();
    let out = dynashift(dir.path(), &["sync", "--once", "--config", "hostile.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = text(&out);
    assert_eq!(support::count_before(&summary, " records in"), Some(5), "{summary}");
    assert_eq!(support::count_before(&summary, " batches"), Some(1), "{summary}");
    assert_eq!(support::count_before(&summary, " rejected"), Some(1), "{summary}");
    let db = duckdb::Connection::open(dir.path().join("hostile.duckdb")).unwrap();
    let one = |sql: &str| -> String { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let reason = one("SELECT reason FROM _dynashift.rejects");
    assert!(reason.contains("nest") || reason.contains("deep"), "{reason}");
    assert_eq!(one("SELECT CAST(COUNT(*) AS VARCHAR) FROM dynamodb.hostile"), "4");
    assert_eq!(one("SELECT CAST(LENGTH(big) AS VARCHAR) FROM dynamodb.hostile WHERE id = 'h2'"), "3000000");
    let columns =
        one("SELECT CAST(COUNT(*) AS VARCHAR) FROM information_schema.columns WHERE table_name = 'hostile'");
    assert_eq!(columns, "1600", "a table stops at the column limit");
    // The wide item's attributes past the limit, and later new attributes, are kept whole.
    let overflow = one("SELECT CAST(_ddb_overflow AS VARCHAR) FROM dynamodb.hostile WHERE id = 'h3'");
    let kept: serde_json::Value = serde_json::from_str(&overflow).unwrap();
    // 1,600 columns: 7 system columns, the overflow column, `id`, `big`, and 1,590 of its own.
    assert_eq!(kept.as_object().unwrap().len(), 20_000 - 1_590);
    let ok = one("SELECT CAST(_ddb_overflow AS VARCHAR) FROM dynamodb.hostile WHERE id = 'h5'");
    assert_eq!(ok, r#"{"ok":"fine"}"#);
}

/// Items near DynamoDB's 400 KB limit: a batch of them that does not fit DuckDB's memory
/// limit is applied in smaller parts, never failed over and over (the limit is shrunk so
/// that a few megabytes exceed it).
#[test]
fn large_items_beyond_duckdbs_memory_limit_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let lines = support::large_item_lines(200, 350_000);
    std::fs::write(dir.path().join("large.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("large.toml"),
        "[source]\nkind = \"file\"\npath = \"large.jsonl\"\n\
         [target]\nkind = \"duckdb\"\npath = \"large.duckdb\"\nmemory_limit = \"48MB\"\n",
    )
    .unwrap();
    let out = dynashift(dir.path(), &["sync", "--once", "--config", "large.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let db = duckdb::Connection::open(dir.path().join("large.duckdb")).unwrap();
    let (rows, bytes): (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(LENGTH(body)) FROM dynamodb.large", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((rows, bytes), (200, 200 * 350_000));
}

/// 300 items of 350 KB (105 MB of changes) against the smallest memory budget: the held
/// changes' share (64 MB) cuts them into batches, DuckDB gets 64 MB, and the whole run stays
/// within the budget plus the documented constant.
#[test]
fn large_items_stay_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("large.jsonl"), support::large_item_lines(300, 350_000).join("\n") + "\n")
        .unwrap();
    std::fs::write(
        dir.path().join("large.toml"),
        "[source]\nkind = \"file\"\npath = \"large.jsonl\"\n\
         [target]\nkind = \"duckdb\"\npath = \"large.duckdb\"\n[defaults]\nmemory = \"256MB\"\n",
    )
    .unwrap();
    let out = dynashift(dir.path(), &["sync", "--once", "--config", "large.toml"]);
    let summary = text(&out);
    assert!(out.status.success(), "{summary}");
    assert!(support::count_before(&summary, " batches").unwrap() >= 2, "{summary}");
    let peak = support::peak_memory_mb(&summary);
    assert!(peak <= 256 + support::MEMORY_PAST_BUDGET_MB, "peak {peak} MB: {summary}");
    let db = duckdb::Connection::open(dir.path().join("large.duckdb")).unwrap();
    let (rows, bytes): (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(LENGTH(body)) FROM dynamodb.large", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((rows, bytes), (300, 300 * 350_000));
}

/// The benchmark command runs end to end on a small W1 and reports what it promises.
#[cfg(feature = "bench")]
#[test]
fn bench_reports_decode_rate_throughput_and_peak_memory() {
    let dir = tempfile::tempdir().unwrap();
    let bench_dir = dir.path().join("bench");
    let out = dynashift(
        dir.path(),
        &["bench", "--records", "3000", "--keys", "600", "--dir", bench_dir.to_str().unwrap()],
    );
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("decode: "), "{text}");
    assert!(text.contains("changes/s"), "{text}");
    assert!(text.contains("peak"), "{text}");
}

/// On a terminal, a long pass shows a progress line with its figures (run under `script`,
/// which gives the binary a pseudo-terminal and records what it draws).
#[test]
fn a_long_pass_on_a_terminal_shows_progress() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dynashift_testkit::WorkloadSpec {
        records: 60_000,
        keys: 20_000,
        seed: 3,
        ..dynashift_testkit::WorkloadSpec::w1()
    };
    let (lines, _) = support::generate(&spec, true);
    std::fs::write(dir.path().join("changes.jsonl"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        "[source]\nkind = \"file\"\npath = \"changes.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n\
         [defaults]\nbatch_size = 500\nmax_batch_records = 1000\n",
    )
    .unwrap();
    let out = support::on_a_terminal(dir.path(), &format!("{BIN} sync --once --config p.toml"));
    let drawn = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{drawn}");
    let line = drawn
        .split(['\r', '\n'])
        .find(|l| l.contains(" records, ") && l.contains("/s), ") && l.contains(" batches, "))
        .unwrap_or_else(|| panic!("no progress line drawn:\n{drawn}"));
    assert!(line.contains("rejects, lag "), "{line}");
    // The summary is still printed once the line is cleared.
    assert!(drawn.contains("60000 records in"), "{drawn}");
}
