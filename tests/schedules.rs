//! Per-table schedules against real warehouses (the embedded DuckDB and a PostgreSQL server):
//! tables held past batches, positions committed only to what every table has applied, the
//! last applies kept across restarts, and `sync --once` honouring schedules (`--all` not).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use dynashift::config::Config;
use dynashift::pipeline::Pipeline;
use dynashift::source::RawRecord;
use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift::warehouse::Warehouse;
use dynashift_core::Position;
use support::{Logical, ReadBack};

/// 2026-12-07 00:00 UTC.
const T0: i64 = 1_796_601_600;

const SCHEDULES: &str = r#"
[tables."Orders"]
every = "1h"

[tables."Audit"]
paused = true
"#;

fn config(target: &str) -> Config {
    let text = format!("[source]\nkind = \"file\"\npath = \"unused\"\n{target}\n{SCHEDULES}");
    Config::parse(&text, Path::new("schedules.toml")).unwrap()
}

/// A change of `table`'s item `id` to value `v`, made at `millis`, as a JSON line.
fn line(table: &str, id: &str, v: &str, millis: u64) -> String {
    format!(
        r#"{{"eventName":"MODIFY","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":{millis},"Keys":{{"id":{{"S":"{id}"}}}},"NewImage":{{"id":{{"S":"{id}"}},"v":{{"S":"{v}"}}}}}}}}"#
    ) + "\n"
}

/// A change of `table`'s item `id` to value `v`, read at `shard`:`seq`.
fn change(shard: &str, seq: u64, table: &str, id: &str, v: &str) -> RawRecord {
    let millis = 1_764_000_000_000u64 + seq * 1_000 + if shard == "b" { 500 } else { 0 };
    let data = line(table, id, v, millis).trim_end().as_bytes().to_vec();
    RawRecord { data, position: Position::new(shard, seq.to_string()), problem: None }
}

/// Every table's `v` per key.
fn values(warehouse: &mut dyn ReadBack) -> BTreeMap<String, BTreeMap<String, String>> {
    support::read_back(warehouse)
        .into_iter()
        .map(|(table, rows)| {
            let values = rows
                .into_iter()
                .filter_map(|(key, row)| match row.cells.get("v") {
                    Some(Logical::S(v)) => Some((key, v.clone())),
                    _ => None,
                })
                .collect();
            (table, values)
        })
        .collect()
}

fn value(warehouse: &mut dyn ReadBack, table: &str) -> Vec<String> {
    values(warehouse).remove(table).map(|rows| rows.into_values().collect()).unwrap_or_default()
}

fn positions<W: Warehouse>(p: &mut Pipeline<W>) -> BTreeMap<String, String> {
    p.checkpoints().unwrap().into_iter().collect()
}

fn at(shard: &str, seq: &str) -> (String, String) {
    (shard.to_string(), seq.to_string())
}

/// One scenario, on any warehouse: `open` gives a fresh handle on the same target.
fn held_tables_hold_positions_back<W: Warehouse + ReadBack>(config: &Config, open: impl Fn() -> W) {
    let pipeline = |now: i64| {
        let mut p = Pipeline::new(config.clone(), open()).unwrap().with_schedules(config).unwrap();
        p.set_time(now);
        p
    };
    let mut p = pipeline(T0);
    // Every table is due at its first change (never applied); Audit is paused.
    p.read(vec![change("a", 1, "Hot", "h", "1"), change("b", 1, "Hot", "g", "1")], true).unwrap();
    p.settle().unwrap();
    assert_eq!(positions(&mut p), BTreeMap::from([at("a", "1"), at("b", "1")]));

    p.set_time(T0 + 10);
    p.read(
        vec![
            change("a", 2, "Orders", "o", "1"),
            change("b", 2, "Hot", "g", "2"),
            change("a", 3, "Hot", "h", "2"),
        ],
        true,
    )
    .unwrap();
    p.settle().unwrap();
    assert_eq!(value(p.warehouse(), "Orders"), vec!["1"], "never applied: due at once");
    assert_eq!(positions(&mut p), BTreeMap::from([at("a", "3"), at("b", "2")]));

    // Orders was applied ten seconds ago: held for the hour; shard a stops before its change.
    p.set_time(T0 + 20);
    p.read(
        vec![
            change("a", 4, "Orders", "o", "2"),
            change("b", 3, "Hot", "g", "3"),
            change("a", 5, "Hot", "h", "3"),
        ],
        true,
    )
    .unwrap();
    p.settle().unwrap();
    assert_eq!(value(p.warehouse(), "Orders"), vec!["1"], "held");
    assert_eq!(value(p.warehouse(), "Hot"), vec!["3", "3"], "applied");
    assert_eq!(positions(&mut p), BTreeMap::from([at("a", "3"), at("b", "3")]));

    // A paused table holds shard b back for good.
    p.set_time(T0 + 30);
    p.read(
        vec![
            change("b", 4, "Audit", "x", "1"),
            change("a", 6, "Hot", "h", "4"),
            change("b", 5, "Hot", "g", "4"),
        ],
        true,
    )
    .unwrap();
    p.settle().unwrap();
    assert!(value(p.warehouse(), "Audit").is_empty(), "paused");
    assert_eq!(positions(&mut p), BTreeMap::from([at("a", "3"), at("b", "3")]));
    drop(p);

    // A restart re-reads from the held-back positions; the last applies come from the
    // warehouse, so Orders is still not due.
    let mut p = pipeline(T0 + 40);
    let again = vec![
        change("a", 4, "Orders", "o", "2"),
        change("b", 4, "Audit", "x", "1"),
        change("a", 5, "Hot", "h", "3"),
        change("a", 6, "Hot", "h", "4"),
        change("b", 5, "Hot", "g", "4"),
    ];
    p.read(again.clone(), true).unwrap();
    p.settle().unwrap();
    assert_eq!(value(p.warehouse(), "Orders"), vec!["1"], "applied at T0 + 10: due at T0 + 1h10s");
    assert_eq!(value(p.warehouse(), "Hot"), vec!["4", "4"]);
    let hot_taken = p.summary.tables.get("Hot").map_or(0, |t| t.changes);
    assert_eq!(hot_taken, 0, "Hot's marks show its changes read again already in");

    // The hour passes: an empty read finds Orders due, and shard a moves on.
    p.set_time(T0 + 10 + 3_600);
    p.read(Vec::new(), true).unwrap();
    p.settle().unwrap();
    assert_eq!(value(p.warehouse(), "Orders"), vec!["2"]);
    assert_eq!(positions(&mut p), BTreeMap::from([at("a", "6"), at("b", "3")]));
    drop(p);

    // Applying everything (as `sync --once --all` does) takes Audit in and frees shard b.
    let mut p = Pipeline::new(config.clone(), open()).unwrap();
    p.read(again[1..].to_vec(), true).unwrap();
    p.finish().unwrap();
    assert_eq!(value(p.warehouse(), "Audit"), vec!["1"]);
    assert_eq!(positions(&mut p), BTreeMap::from([at("a", "6"), at("b", "5")]));
    let all = values(p.warehouse());
    assert_eq!(all["Hot"].values().cloned().collect::<Vec<_>>(), vec!["4", "4"]);
}

#[test]
fn duckdb_holds_tables_and_positions_by_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.duckdb");
    let config = config(&format!("[target]\nkind = \"duckdb\"\npath = {:?}", path.display().to_string()));
    held_tables_hold_positions_back(&config, || DuckDbWarehouse::open(&path, "dynamodb").unwrap());
}

#[test]
fn postgres_holds_tables_and_positions_by_schedule() {
    let server = support::pg::PgServer::start();
    let url = server.create_db("schedules");
    let config = config(&format!("[target]\nkind = \"postgres\"\nurl = {url:?}"));
    held_tables_hold_positions_back(&config, || {
        PostgresWarehouse::open(PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap()).unwrap()
    });
}

/// Held changes past the memory bound: the table holding the most is applied early, out of
/// its schedule; a paused table never is.
#[test]
fn memory_pressure_applies_a_held_table_early_but_never_a_paused_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.duckdb");
    let text = format!(
        "[source]\nkind = \"file\"\npath = \"unused\"\n[target]\nkind = \"duckdb\"\npath = {:?}\n\
         [defaults]\nmax_batch_memory = \"20KB\"\n{SCHEDULES}",
        path.display().to_string()
    );
    let config = Config::parse(&text, Path::new("m.toml")).unwrap();
    let warehouse = DuckDbWarehouse::open(&path, "dynamodb").unwrap();
    let mut p = Pipeline::new(config.clone(), warehouse).unwrap().with_schedules(&config).unwrap();
    p.set_time(T0);
    p.read(vec![change("a", 1, "Orders", "o0", "0")], true).unwrap();
    p.settle().unwrap();
    // Orders is now held for an hour; a hundred more keys exceed the 20 KB bound.
    let many: Vec<RawRecord> =
        (0..100).map(|i| change("a", 2 + i, "Orders", &format!("o{}", i + 1), "1")).collect();
    p.set_time(T0 + 1);
    p.read(many, false).unwrap();
    p.settle().unwrap();
    assert_eq!(value(p.warehouse(), "Orders").len(), 101, "applied early, under memory pressure");
    // A paused table that fills the bound is held, not applied: reading waits instead.
    let audit: Vec<RawRecord> =
        (0..100).map(|i| change("a", 200 + i, "Audit", &format!("x{i}"), "1")).collect();
    p.read(audit, false).unwrap();
    p.settle().unwrap();
    assert!(value(p.warehouse(), "Audit").is_empty());
}

/// `sync --once` from cron: each pass applies the tables due; `--all` applies every table.
#[test]
fn sync_once_honours_schedules_and_all_overrides_them() {
    let dir = tempfile::tempdir().unwrap();
    let changes = dir.path().join("changes.jsonl");
    let config = dir.path().join("dynashift.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"changes.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n{SCHEDULES}"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_dynashift");
    let run = |args: &[&str]| {
        let out = Command::new(bin).current_dir(dir.path()).args(args).output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    std::fs::write(&changes, [line("Orders", "o", "1", 1_000), line("Hot", "h", "1", 1_000)].concat())
        .unwrap();
    run(&["sync", "--once", "-c", "dynashift.toml"]);
    let mut more = std::fs::read_to_string(&changes).unwrap();
    more.push_str(&line("Orders", "o", "2", 2_000));
    more.push_str(&line("Hot", "h", "2", 2_000));
    more.push_str(&line("Audit", "x", "1", 2_000));
    std::fs::write(&changes, more).unwrap();
    run(&["sync", "--once", "-c", "dynashift.toml"]);
    let read = || {
        let mut w = DuckDbWarehouse::open(&dir.path().join("out.duckdb"), "dynamodb").unwrap();
        values(&mut w)
    };
    let now = read();
    assert_eq!(now["Orders"].values().collect::<Vec<_>>(), vec!["1"], "applied a moment ago: not due");
    assert_eq!(now["Hot"].values().collect::<Vec<_>>(), vec!["2"]);
    assert!(!now.contains_key("Audit"));
    // The plan reads again from the positions Orders and Audit hold back; Hot's changes there
    // are in already (its marks say so), so it holds nothing to apply.
    let plan = run(&["plan", "-c", "dynashift.toml"]);
    assert!(plan.contains("-- schedules: this batch applies no table; holds"), "{plan}");
    assert!(plan.contains("Audit (paused)") && plan.contains("Orders (every 1h, due in"), "{plan}");
    let status = run(&["status", "-c", "dynashift.toml"]);
    assert!(status.contains("every 1h") && status.contains("paused"), "{status}");
    // What each table held after the last pass, kept for status: Orders o:2, and Audit x:1,
    // listed though never applied (it has no table yet), in the documented shape.
    let text = run(&["status", "--json", "-c", "dynashift.toml"]);
    support::status_schema::assert_status_json(text.lines().next().unwrap_or_default());
    let json: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap();
    let audit = json["tables"].as_array().unwrap().iter().find(|t| t["table"] == "Audit").cloned();
    let audit = audit.unwrap_or_else(|| panic!("the held-only table is missing: {json}"));
    assert_eq!(
        (&audit["target"], &audit["rows"], &audit["held_changes"]),
        (&serde_json::Value::Null, &serde_json::json!(0), &serde_json::json!(1)),
        "{audit}"
    );
    let held = |table: &str| {
        let tables = json["tables"].as_array().unwrap();
        tables.iter().find(|t| t["table"] == table).map(|t| t["held_changes"].clone())
    };
    assert_eq!(held("Orders"), Some(serde_json::json!(1)), "{json}");
    assert_eq!(held("Hot"), Some(serde_json::Value::Null), "{json}");
    run(&["sync", "--once", "--all", "-c", "dynashift.toml"]);
    let all = read();
    assert_eq!(all["Orders"].values().collect::<Vec<_>>(), vec!["2"]);
    assert_eq!(all["Audit"].values().collect::<Vec<_>>(), vec!["1"]);
}

/// A one-pass run whose paused table fills the memory bound ends (with a warning) instead of
/// waiting for an unpause that cannot come; what is due is applied.
#[test]
fn a_pass_held_up_by_a_paused_table_ends() {
    let dir = tempfile::tempdir().unwrap();
    let v = "x".repeat(200);
    let mut lines: String = (0..400).map(|i| line("Audit", &format!("a{i}"), &v, 1_000 + i)).collect();
    lines.push_str(&line("Hot", "h", "1", 5_000));
    std::fs::write(dir.path().join("changes.jsonl"), lines).unwrap();
    std::fs::write(
        dir.path().join("dynashift.toml"),
        format!(
            "[source]\nkind = \"file\"\npath = \"changes.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n\
             [defaults]\nbatch_size = 100\nmax_batch_memory = \"20KB\"\n{SCHEDULES}"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dynashift"))
        .current_dir(dir.path())
        .args(["sync", "--once", "-c", "dynashift.toml"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("paused") && log.contains("the pass ends here"), "{log}");
    let mut w = DuckDbWarehouse::open(&dir.path().join("out.duckdb"), "dynamodb").unwrap();
    assert!(!values(&mut w).contains_key("Audit"), "a paused table is never applied early");
}
