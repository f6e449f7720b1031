//! `backfill --from-export`: exports in DynamoDB's layout (written by the tests from a known
//! table: gzip data files, manifests with checksums and item counts) loaded cell for cell into
//! DuckDB and PostgreSQL, from a folder and from S3 (moto); damaged and miscounted files named
//! while the rest loads; the hand-off to the stream exact in either order; killed and resumed.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift_core::types::ColumnMode;
use dynashift_core::value::Item;
use dynashift_testkit::export::{write_export, write_summary, Part};
use dynashift_testkit::WorkloadSpec;
use support::Tables;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");
const TABLE: &str = "Orders";
const EXPORT_TIME: &str = "2026-11-30T12:00:00.500Z";
/// `EXPORT_TIME` in microseconds since the epoch.
const EXPORT_MICROS: i64 = 1_796_040_000_500_000;
/// The start of the second the export falls in.
const EXPORT_SECOND: i64 = 1_796_040_000_000_000;
/// The version loaded rows carry: the last microsecond before the export's second.
const LOAD_MICROS: i64 = EXPORT_SECOND - 1;

fn keys() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(TABLE.to_string(), vec!["orderId".to_string()])])
}

/// A model table of `n` keys (a generated workload's final `Orders` items).
fn orders(keys: usize, seed: u64) -> BTreeMap<String, Item> {
    let spec = WorkloadSpec { records: keys * 6, keys: keys * 3, seed, ..WorkloadSpec::w1() };
    let (_, model) = support::generate(&spec, true);
    dynashift_testkit::export::table_items(&model, TABLE)
}

/// What a loaded export must leave: its items, each a LOAD at the export's time.
fn expected_load(items: &BTreeMap<String, Item>) -> Tables {
    let model = BTreeMap::from([(TABLE.to_string(), items.clone())]);
    let mut tables = support::expected(&model, ColumnMode::Typed, &keys());
    for row in tables.values_mut().flat_map(|rows| rows.values_mut()) {
        row.event = Some("LOAD".into());
        row.version = Some(LOAD_MICROS);
    }
    tables
}

fn duckdb_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("backfill.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"changes.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n\
             [tables.\"{TABLE}\"]\nkeys = [\"orderId\"]\n{extra}"
        ),
    )
    .unwrap();
    config
}

fn backfill(dir: &Path, config: &Path, from: &str) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(["backfill", "--config"])
        .arg(config)
        .args(["--from-export", from])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap()
}

/// A PostgreSQL target at `url`, the stream a file of changes (`changes.jsonl`), `extra`
/// appended.
fn pg_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    let config = dir.join("pg.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = \"changes.jsonl\"\n[target]\nkind = \"postgres\"\nurl = \"{url}\"\n\
             [tables.\"{TABLE}\"]\nkeys = [\"orderId\"]\n{extra}"
        ),
    )
    .unwrap();
    config
}

/// `backfill` of the folder `export` with the debug log, which says how each batch went in.
fn backfill_logged(dir: &Path, config: &Path) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(["backfill", "--config"])
        .arg(config)
        .args(["--from-export", "export"])
        .env("DYNASHIFT_LOG", "dynashift=debug")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn duckdb_tables(dir: &Path) -> Tables {
    support::read_back(&mut DuckDbWarehouse::open(&dir.join("out.duckdb"), "dynamodb").unwrap())
}

fn duckdb_query(dir: &Path, sql: &str) -> Vec<String> {
    let w = DuckDbWarehouse::open(&dir.join("out.duckdb"), "dynamodb").unwrap();
    let conn = w.connection();
    let mut statement = conn.prepare(sql).unwrap();
    let rows = statement.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn an_export_folder_loads_cell_for_cell_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let items = orders(3_000, 11);
    let parts = write_export(&dir.path().join("export"), TABLE, items.values(), 5, EXPORT_TIME);
    assert_eq!(parts.last().map(|p| p.items), Some(0), "an empty partition's file is part of the export");
    // That file as 0 bytes (no gzip stream at all), its MD5 listed accordingly.
    let empty = parts.last().unwrap();
    std::fs::write(dir.path().join("export").join(&empty.relative), b"").unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("export/manifest-files.json")).unwrap();
    let manifest: Vec<String> = manifest
        .lines()
        .map(|l| {
            if !l.contains(&empty.key) {
                return l.to_string();
            }
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["md5Checksum"] = dynashift_testkit::export::md5_base64(b"").into();
            v.to_string()
        })
        .collect();
    std::fs::write(dir.path().join("export/manifest-files.json"), manifest.join("\n") + "\n").unwrap();
    let config = duckdb_config(dir.path(), "[defaults]\nbatch_size = 500\n");
    let out = backfill(dir.path(), &config, "export");
    assert!(out.status.success(), "{}", text(&out));
    let loaded = format!("loaded whole; this run: {} items in", items.len());
    assert!(text(&out).contains(&loaded), "{}", text(&out));
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected_load(&items));
    // Every data file is committed as ended: a second backfill reads none of them again.
    let ended = duckdb_query(
        dir.path(),
        "SELECT shard FROM _dynashift.checkpoints WHERE sequence = 'end' ORDER BY 1",
    );
    assert_eq!(ended.len(), parts.len(), "{ended:?}");
    let batches = || duckdb_query(dir.path(), "SELECT CAST(COUNT(*) AS VARCHAR) FROM _dynashift.runs");
    let before = batches();
    let again = backfill(dir.path(), &config, "export");
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(batches(), before, "a finished export is not loaded again");
    // An export of another table than asked for is refused.
    let other = Command::new(BIN)
        .current_dir(dir.path())
        .args(["backfill", "--config"])
        .arg(&config)
        .args(["--from-export", "export", "--table", "Users"])
        .output()
        .unwrap();
    assert!(!other.status.success() && text(&other).contains("is an export of `Orders`, not of `Users`"));
}

/// A backfill into DuckDB appends its rows unguarded while the table holds nothing but its
/// own (each batch's guards would otherwise probe every row loaded before it); killed at
/// random moments and restarted, it resumes that way and ends exact, every line once.
#[test]
fn a_killed_backfill_into_duckdb_resumes_unguarded_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let items = orders(4_000, 21);
    write_export(&dir.path().join("export"), TABLE, items.values(), 5, EXPORT_TIME);
    let config = duckdb_config(dir.path(), "[defaults]\nbatch_size = 300\nmax_batch_records = 600\n");
    let command = || {
        let mut command = Command::new(BIN);
        command
            .current_dir(dir.path())
            .args(["backfill", "--config"])
            .arg(&config)
            .args(["--from-export", "export"]);
        command
    };
    let db = dir.path().join("out.duckdb");
    let mut progress = || {
        if !db.exists() {
            return 0;
        }
        let sum = duckdb_query(
            dir.path(),
            "SELECT CAST(COALESCE(SUM(records), 0) AS VARCHAR) FROM _dynashift.runs",
        );
        sum[0].parse().unwrap()
    };
    let landed = support::kill_and_restart_command(&command, 5, 33, items.len(), &mut progress);
    eprintln!("{landed} of 5 kills landed inside the load");
    assert!(landed >= 2, "only {landed} of 5 kills landed inside the load");
    let out = command().env("DYNASHIFT_LOG", "dynashift=debug").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    if progress() < items.len() {
        assert!(text(&out).contains("appended unguarded"), "the resumed load was guarded: {}", text(&out));
    }
    assert_eq!(progress(), items.len(), "every line consumed once across committed batches");
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected_load(&items));
}

/// The unguarded append holds only while the table holds nothing else: a table the stream
/// wrote first is loaded through the guards (the hand-off test checks the result), and an
/// export that lists an item twice still leaves one row per key, the one loaded first.
#[test]
fn an_export_listing_an_item_twice_leaves_one_row_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut items: Vec<Item> = orders(300, 8).into_values().collect();
    items.truncate(items.len() / 2 * 2);
    let mut twice = items[0].clone();
    twice.insert("note".into(), dynashift_core::value::AttrValue::S("listed again".into()));
    // Item i goes to data file i % 2: the copy is a later line of the first item's file.
    let listed: Vec<Item> = items.iter().cloned().chain([twice.clone()]).collect();
    write_export(&dir.path().join("export"), TABLE, listed.iter(), 3, EXPORT_TIME);
    let config = duckdb_config(dir.path(), "[defaults]\nbatch_size = 50\nmax_batch_records = 60\n");
    let out = backfill_logged(dir.path(), &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("appended unguarded"), "{}", text(&out));
    assert!(text(&out).contains("listed some items more than once"), "{}", text(&out));
    let key = |item: &Item| {
        dynashift_core::value::key_text(
            &item
                .iter()
                .filter(|(k, _)| k.as_str() == "orderId")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    let want: BTreeMap<String, Item> = items.iter().map(|i| (key(i), i.clone())).collect();
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected_load(&want));
    let rows = duckdb_query(dir.path(), "SELECT CAST(COUNT(*) AS VARCHAR) FROM dynamodb.orders");
    assert_eq!(rows, [want.len().to_string()], "one row per key");

    // Into PostgreSQL the key index refuses the batch's `COPY`; that batch goes through the
    // stage and `ON CONFLICT`, which turns the copy away.
    let server = support::pg::PgServer::start();
    let url = server.create_db("twice");
    let config = pg_config(dir.path(), &url, "[defaults]\nbatch_size = 50\nmax_batch_records = 60\n");
    let out = backfill_logged(dir.path(), &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("appended unguarded"), "{}", text(&out));
    assert!(text(&out).contains("listed some items more than once"), "{}", text(&out));
    let mut w = PostgresWarehouse::open(PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    support::assert_tables_equal(&support::read_back(&mut w), &expected_load(&want));
    let rows = server.query("twice", "SELECT CAST(COUNT(*) AS TEXT) FROM dynamodb.orders");
    assert_eq!(rows, [Some(want.len().to_string())], "one row per key");
}

/// Into PostgreSQL an appended load is copied straight into its table in `COPY`'s text
/// format: values holding its delimiters and escapes (tab, newline, carriage return,
/// backslash, `\N`, `\.`), binary data, numbers at the edges and hostile names arrive cell
/// for cell; U+0000 is stored as U+FFFD with the original kept as a reject, as on the stream
/// path.
#[test]
fn hostile_values_are_copied_into_postgres_cell_for_cell() {
    use dynashift_core::number::Number;
    use dynashift_core::value::AttrValue;
    let dir = tempfile::tempdir().unwrap();
    let server = support::pg::PgServer::start();
    let url = server.create_db("copied");
    let n = |s: &str| AttrValue::N(Number::parse(s).unwrap());
    let values = [
        AttrValue::S("tab\there, newline\nthere, return\rthere".into()),
        AttrValue::S("back\\slash \\N \\. \\t \\\\".into()),
        AttrValue::S("\\.".into()),
        AttrValue::S("\\N".into()),
        AttrValue::S("it's; DROP TABLE t; -- 日本語 🚀".into()),
        AttrValue::B(vec![0, 9, 10, 13, 0x5c, 0x27, 255]),
        n("12345678901234567890123456789012345678"),
        n("-1E-130"),
        AttrValue::Bool(true),
        AttrValue::M([("k\t\"ey\\".to_string(), AttrValue::S("v\nal\\ue\t".into()))].into()),
        AttrValue::L(vec![AttrValue::S("\r\n".into()), n("1.5")]),
    ];
    let names = ["quote\"d", "tab\tname", "back\\slash", "semi;colon", "Ünïcødé"];
    let key = |id: &str| {
        let mut k = Item::new();
        k.insert("orderId".into(), AttrValue::S(id.into()));
        dynashift_core::value::key_text(&k)
    };
    let mut items = BTreeMap::new();
    for k in 0..40 {
        let mut item = Item::new();
        let id = format!("key\t{k}\\'\"\n");
        item.insert("orderId".into(), AttrValue::S(id.clone().into()));
        for (i, name) in names.iter().enumerate() {
            item.insert(format!("{name}{}", i % 3).into(), values[(k + i) % values.len()].clone());
        }
        items.insert(key(&id), item);
    }
    let mut nul = Item::new();
    nul.insert("orderId".into(), AttrValue::S("nul".into()));
    nul.insert("note".into(), AttrValue::S("a\0b".into()));
    nul.insert("ship_to".into(), AttrValue::M([("c".to_string(), AttrValue::S("x\0y".into()))].into()));
    let nul_key = key("nul");
    write_export(&dir.path().join("export"), TABLE, items.values().chain([&nul]), 3, EXPORT_TIME);
    let config = pg_config(dir.path(), &url, "");
    let out = backfill_logged(dir.path(), &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("appended unguarded"), "{}", text(&out));
    let mut w = PostgresWarehouse::open(PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    let mut loaded = support::read_back(&mut w);
    let stored_nul = loaded.get_mut(TABLE).and_then(|rows| rows.remove(&nul_key));
    support::assert_tables_equal(&loaded, &expected_load(&items));
    assert!(stored_nul.is_some(), "the item holding U+0000 is loaded");
    let note = server.query("copied", "SELECT note FROM dynamodb.orders WHERE order_id = 'nul'");
    assert_eq!(note, [Some("a\u{FFFD}b".to_string())]);
    let ship_to =
        server.query("copied", "SELECT ship_to ->> 'c' FROM dynamodb.orders WHERE order_id = 'nul'");
    assert_eq!(ship_to, [Some("x\u{FFFD}y".to_string())]);
    let rejects = server.query(
        "copied",
        "SELECT COALESCE(encode(raw_bytes, 'escape'), raw_text) FROM _dynashift.rejects \
         WHERE reason LIKE '%U+0000%' ORDER BY 1",
    );
    assert_eq!(
        rejects,
        [Some("a\\000b".to_string()), Some(r#"{"c":"x\u0000y"}"#.to_string())],
        "the originals are kept"
    );
    // `now` in the copy is the transaction's start, as `now()` was in the stage's `INSERT`.
    let synced = server.query(
        "copied",
        "SELECT CAST(COUNT(*) AS TEXT) FROM dynamodb.orders \
         WHERE _ddb_synced_at IS NULL OR _ddb_synced_at > now() OR _ddb_synced_at < now() - interval '10 minutes'",
    );
    assert_eq!(synced, [Some("0".to_string())], "every row carries the time it was synced");
}

/// Into PostgreSQL, a table the stream wrote first is loaded through the guards, and the
/// hand-off is exact.
#[test]
fn into_postgres_a_table_the_stream_wrote_is_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::pg::PgServer::start();
    let url = server.create_db("handoff");
    let items = orders(400, 3);
    write_export(&dir.path().join("export"), TABLE, items.values(), 3, EXPORT_TIME);
    // The stream first: one of the export's items changed after the export, one deleted.
    let mut keys = items.keys();
    let (changed, deleted) = (keys.next().unwrap().clone(), keys.next().unwrap().clone());
    let id = |k: &str| match items[k].get("orderId") {
        Some(dynashift_core::value::AttrValue::S(s)) => s.to_string(),
        other => panic!("orderId {other:?}"),
    };
    let changes = [
        stream_change(&id(&changed), "MODIFY", EXPORT_MICROS + 5_000_000, "newer"),
        stream_change(&id(&deleted), "REMOVE", EXPORT_MICROS + 5_000_000, ""),
    ];
    std::fs::write(dir.path().join("changes.jsonl"), changes.join("\n") + "\n").unwrap();
    let config = pg_config(dir.path(), &url, "");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("DYNASHIFT_LOG", "dynashift=debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    run(&["sync", "--once"]);
    let log = run(&["backfill", "--from-export", "export"]);
    assert!(!log.contains("appended unguarded"), "a table the stream wrote was appended to: {log}");
    let rows = server.query("handoff", "SELECT CAST(COUNT(*) AS TEXT) FROM dynamodb.orders");
    assert_eq!(rows, [Some((items.len() - 1).to_string())], "every item but the deleted one, once");
    let v = server.query(
        "handoff",
        &format!("SELECT v FROM dynamodb.orders WHERE _ddb_key = '{}'", changed.replace('\'', "''")),
    );
    assert_eq!(v, [Some("newer".to_string())], "the change after the export wins");
}

/// On a terminal, a backfill draws its items against the export's count with the time left,
/// and a bar for the data file being read (run under `script`, which gives it a terminal).
#[test]
fn a_backfill_on_a_terminal_shows_its_items_files_and_time_left() {
    let dir = tempfile::tempdir().unwrap();
    let items = orders(4_000, 12);
    write_export(&dir.path().join("export"), TABLE, items.values(), 3, EXPORT_TIME);
    let config = duckdb_config(dir.path(), "[defaults]\nbatch_size = 200\nmax_batch_records = 200\n");
    let command = format!("{BIN} backfill --config {} --from-export export", config.display());
    let out = support::on_a_terminal(dir.path(), &command);
    let drawn = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{drawn}");
    let total = format!(" of {} items (", items.len());
    let line = drawn
        .split(['\r', '\n'])
        .find(|l| l.contains(&total) && l.contains(" items/s; data files: "))
        .unwrap_or_else(|| panic!("no backfill progress drawn:\n{drawn}"));
    assert!(line.contains(" left, ") && line.contains(" read whole"), "{line}");
    // A data file's own bar: its name, then how far it is (`… 400 of 1594 items`).
    let file_bar = drawn
        .match_indices(".json.gz ")
        .map(|(at, _)| &drawn[at + ".json.gz ".len()..])
        .find(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no data file's bar drawn:\n{drawn}"));
    let progress = file_bar.split(" items").next().unwrap_or_default();
    assert!(progress.contains(" of "), "{progress}");
    assert!(drawn.contains("loaded whole"), "{drawn}");
}

/// A data file whose bytes differ from its MD5, one holding fewer items than listed, and one
/// cut short (no MD5 listed): each is named, as a reject and in the exit message, and every
/// other file loads. Replaced by good copies, the next backfill loads just them.
#[test]
fn damaged_and_miscounted_files_are_named_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let items = orders(1_500, 12);
    let export = dir.path().join("export");
    let parts: Vec<Part> = write_export(&export, TABLE, items.values(), 5, EXPORT_TIME);
    let originals: Vec<Vec<u8>> =
        parts.iter().map(|p| std::fs::read(export.join(&p.relative)).unwrap()).collect();
    // Part 0: one byte flipped. Part 1: listed with one item more (the summary agreeing).
    // Part 2: cut in half, its MD5 left out of the manifest.
    let mut flipped = originals[0].clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(export.join(&parts[0].relative), &flipped).unwrap();
    std::fs::write(export.join(&parts[2].relative), &originals[2][..originals[2].len() / 2]).unwrap();
    let manifest = std::fs::read_to_string(export.join("manifest-files.json")).unwrap();
    let good_manifest = manifest.clone();
    let lines: Vec<String> = manifest
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            1 => l.replace(
                &format!("\"itemCount\":{}", parts[1].items),
                &format!("\"itemCount\":{}", parts[1].items + 1),
            ),
            2 => {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{{\"itemCount\":{},\"dataFileS3Key\":{}}}", v["itemCount"], v["dataFileS3Key"])
            }
            _ => l.to_string(),
        })
        .collect();
    std::fs::write(export.join("manifest-files.json"), lines.join("\n") + "\n").unwrap();
    write_summary(&export, TABLE, items.len() + 1, EXPORT_TIME);

    let config = duckdb_config(dir.path(), "");
    let out = backfill(dir.path(), &config, "export");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    for part in &parts[..3] {
        assert!(said.contains(&part.key), "{} not named:\n{said}", part.key);
    }
    let rejects = duckdb_query(dir.path(), "SELECT reason FROM _dynashift.rejects ORDER BY 1");
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    // status: five files started, two read whole (the good one and the empty one).
    assert_eq!(
        backfills(dir.path(), &config),
        vec![(format!("export:{}", dynashift_testkit::export::EXPORT_ID), 5, 2)]
    );
    assert!(rejects.iter().any(|r| r.contains(&parts[0].key) && r.contains("MD5")), "{rejects:?}");
    assert!(
        rejects.iter().any(|r| r.contains(&parts[1].key) && r.contains("manifest-files.json lists")),
        "{rejects:?}"
    );
    assert!(rejects.iter().any(|r| r.contains(&parts[2].key) && r.contains("decompressed")), "{rejects:?}");
    // Nothing of the refused file, everything of the good ones, all of the miscounted one.
    let loaded = duckdb_tables(dir.path());
    let expected = expected_load(&items);
    let rows = &loaded[TABLE];
    let refused: Vec<&String> = items.keys().step_by(4).collect();
    for key in &refused {
        let name = support::oracle::stored_key_name(key);
        assert!(!rows.contains_key(&name), "{name} of the refused file was loaded");
    }
    assert!(rows.len() >= items.len() / 2, "only {} of {} rows loaded", rows.len(), items.len());

    // The files replaced by good copies: the next backfill loads them, and the table is whole.
    std::fs::write(export.join(&parts[0].relative), &originals[0]).unwrap();
    std::fs::write(export.join(&parts[2].relative), &originals[2]).unwrap();
    std::fs::write(export.join("manifest-files.json"), good_manifest).unwrap();
    write_summary(&export, TABLE, items.len(), EXPORT_TIME);
    let out = backfill(dir.path(), &config, "export");
    assert!(out.status.success(), "{}", text(&out));
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected);
    assert_eq!(
        backfills(dir.path(), &config),
        vec![(format!("export:{}", dynashift_testkit::export::EXPORT_ID), 5, 5)]
    );
    let status =
        Command::new(BIN).current_dir(dir.path()).args(["status", "--config"]).arg(&config).output().unwrap();
    let said = text(&status);
    assert!(said.contains("5 of the 5 data files started are read whole"), "{said}");
}

/// The backfills `status --json` lists, in the documented shape: (source, started, ended).
fn backfills(dir: &Path, config: &Path) -> Vec<(String, i64, i64)> {
    let out = Command::new(BIN)
        .current_dir(dir)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{json}{}", String::from_utf8_lossy(&out.stderr));
    support::status_schema::assert_status_json(&json);
    let value: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let listed = value["backfills"].as_array().cloned().unwrap_or_default();
    listed
        .iter()
        .map(|b| {
            let n = |f: &str| b[f].as_i64().unwrap_or(-1);
            (b["source"].as_str().unwrap_or_default().to_string(), n("started"), n("ended"))
        })
        .collect()
}

/// A summary whose item count disagrees with its files, an ION export and an incremental one
/// are refused before anything is loaded.
#[test]
fn unusable_exports_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let items = orders(200, 13);
    let export = dir.path().join("export");
    write_export(&export, TABLE, items.values(), 3, EXPORT_TIME);
    let config = duckdb_config(dir.path(), "");
    write_summary(&export, TABLE, items.len() + 7, EXPORT_TIME);
    let out = backfill(dir.path(), &config, "export");
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("says {}", items.len() + 7)), "{}", text(&out));
    let summary = std::fs::read_to_string(export.join("manifest-summary.json")).unwrap();
    std::fs::write(
        export.join("manifest-summary.json"),
        summary
            .replace(&format!("\"itemCount\":{}", items.len() + 7), &format!("\"itemCount\":{}", items.len()))
            .replace("DYNAMODB_JSON", "ION"),
    )
    .unwrap();
    let out = backfill(dir.path(), &config, "export");
    assert!(!out.status.success() && text(&out).contains("reads DYNAMODB_JSON exports"), "{}", text(&out));
    let out = backfill(dir.path(), &config, "no-such-folder");
    assert!(!out.status.success() && text(&out).contains("manifest-summary.json"), "{}", text(&out));
    assert!(
        !dir.path().join("out.duckdb").exists()
            || duckdb_query(dir.path(), "SELECT CAST(COUNT(*) AS VARCHAR) FROM _dynashift.runs") == ["0"]
    );
}

/// One change of `Orders` item `id` as a stream record made at `micros`.
fn stream_change(id: &str, event: &str, micros: i64, v: &str) -> String {
    let image = if event == "REMOVE" {
        String::new()
    } else {
        format!(r#","NewImage":{{"orderId":{{"S":"{id}"}},"v":{{"S":"{v}"}}}}"#)
    };
    format!(
        r#"{{"eventName":"{event}","tableName":"{TABLE}","dynamodb":{{"ApproximateCreationDateTime":{micros},"ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":{{"orderId":{{"S":"{id}"}}}}{image}}}}}"#
    )
}

/// The stream's changes around the export's time, applied before or after the backfill,
/// leave the same rows: a change older than the export loses to it, a newer one wins, a
/// delete after the export removes the row, and an item created and deleted before the
/// export stays away, whichever comes first.
#[test]
fn the_hand_off_to_the_stream_is_exact_in_either_order() {
    let item = |id: &str, v: &str| {
        let mut item = Item::new();
        item.insert("orderId".into(), dynashift_core::value::AttrValue::S(id.into()));
        item.insert("v".into(), dynashift_core::value::AttrValue::S(v.into()));
        item
    };
    // The export holds a, b, c, g as of EXPORT_MICROS; e was created and deleted before it.
    let exported = [item("a", "export"), item("b", "export"), item("c", "export"), item("g", "export")];
    let before = EXPORT_MICROS - 5_000_000;
    let after = EXPORT_MICROS + 5_000_000;
    let changes = [
        stream_change("e", "INSERT", before - 1_000_000, "gone-before"),
        stream_change("a", "MODIFY", before, "older"),
        stream_change("e", "REMOVE", before, ""),
        stream_change("b", "MODIFY", after, "newer"),
        stream_change("c", "REMOVE", after, ""),
        stream_change("d", "INSERT", after, "after"),
        // Made just after the export, but timed to the second (as DynamoDB Streams times
        // changes): earlier than the export's own time, it must still win.
        stream_change("g", "MODIFY", EXPORT_SECOND, "same-second"),
    ];
    let want: BTreeMap<String, Item> =
        [item("a", "export"), item("b", "newer"), item("d", "after"), item("g", "same-second")]
            .into_iter()
            .map(|i| {
                (
                    dynashift_core::value::key_text(
                        &i.iter()
                            .filter(|(k, _)| k.as_str() == "orderId")
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    ),
                    i,
                )
            })
            .collect();
    let expected =
        support::expected(&BTreeMap::from([(TABLE.to_string(), want)]), ColumnMode::Typed, &keys());
    for order in ["backfill first", "stream first"] {
        let dir = tempfile::tempdir().unwrap();
        write_export(&dir.path().join("export"), TABLE, exported.iter(), 2, EXPORT_TIME);
        std::fs::write(dir.path().join("changes.jsonl"), changes.join("\n") + "\n").unwrap();
        let config = duckdb_config(dir.path(), "");
        let sync = || {
            let out = Command::new(BIN)
                .current_dir(dir.path())
                .args(["sync", "--once", "--config"])
                .arg(&config)
                .output()
                .unwrap();
            assert!(out.status.success(), "{order}: {}", text(&out));
        };
        let load = || {
            let out = backfill(dir.path(), &config, "export");
            assert!(out.status.success(), "{order}: {}", text(&out));
        };
        if order == "backfill first" {
            load();
            sync();
        } else {
            sync();
            load();
        }
        let mut actual = duckdb_tables(dir.path());
        eprintln!("{order}");
        actual.retain(|_, rows| !rows.is_empty());
        support::assert_tables_equal(&actual, &expected);
    }
}

/// Puts the export folder `export` (its manifests and `parts`) into moto's S3, at
/// `s3://export-bucket/exports/AWSDynamoDB/<export id>/`, which it returns.
fn upload_export(moto: &support::moto::MotoServer, export: &Path, parts: &[Part]) -> String {
    let settings = moto.aws_settings();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = dynashift::aws::s3_client(&dynashift::aws::sdk_config(&settings).await, &settings);
        client.create_bucket().bucket("export-bucket").send().await.unwrap();
        let prefix = format!("exports/AWSDynamoDB/{}/", dynashift_testkit::export::EXPORT_ID);
        let mut names = vec!["manifest-summary.json".to_string(), "manifest-files.json".to_string()];
        names.extend(parts.iter().map(|p| p.relative.clone()));
        for name in names {
            let body = std::fs::read(export.join(&name)).unwrap();
            client
                .put_object()
                .bucket("export-bucket")
                .key(format!("{prefix}{name}"))
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
    });
    format!("s3://export-bucket/exports/AWSDynamoDB/{}/", dynashift_testkit::export::EXPORT_ID)
}

/// From S3, a data file is downloaded once where a copy may be kept on disk (beside the
/// DuckDB file: its MD5 is checked as it is copied, its lines read from the copy) and twice
/// where none may (`spill = "0"`), can (a folder that is not there, with a warning) or fits
/// (each reader's share of the `spill` bound smaller than the files): counted as the data
/// files' GETs S3 receives. Either way the
/// export loads cell for cell.
#[test]
fn an_s3_export_is_downloaded_once_when_a_copy_may_be_kept() {
    let moto = support::moto::MotoServer::start();
    let proxy = support::counting_proxy::CountingProxy::start(moto.port, ".json.gz?x-id=GetObject");
    let dir = tempfile::tempdir().unwrap();
    let items = orders(2_000, 15);
    let export = dir.path().join("export");
    let parts = write_export(&export, TABLE, items.values(), 4, EXPORT_TIME);
    let from = upload_export(&moto, &export, &parts);
    let source = format!(
        "[source]\nkind = \"dynamodb-streams\"\ntables = [\"{TABLE}\"]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        proxy.endpoint()
    );
    let mut gets = Vec::new();
    let cases = [
        ("kept", ""),
        ("not-kept", "[defaults]\nspill = \"0\"\n"),
        ("nowhere", "[defaults]\nspill_dir = \"no/such/folder\"\n"),
        // Each reader's share of 8 bytes is smaller than any of the files (the empty one: 20).
        ("too-large", "[defaults]\nspill = \"8B\"\n"),
    ];
    for (name, extra) in cases {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "{source}[target]\nkind = \"duckdb\"\npath = \"{name}/out.duckdb\"\n\
                 [tables.\"{TABLE}\"]\nkeys = [\"orderId\"]\n{extra}"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let before = proxy.count();
        let out = backfill(dir.path(), &config, &from);
        assert!(out.status.success(), "{}", text(&out));
        gets.push(proxy.count() - before);
        if name == "nowhere" {
            assert!(text(&out).contains("cannot keep a copy in no/such/folder"), "{}", text(&out));
        }
        let loaded = support::read_back(
            &mut DuckDbWarehouse::open(&dir.path().join(name).join("out.duckdb"), "dynamodb").unwrap(),
        );
        support::assert_tables_equal(&loaded, &expected_load(&items));
        let copies: Vec<_> =
            std::fs::read_dir(dir.path().join(name)).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(
            copies.iter().all(|f| f.to_string_lossy().starts_with("out.duckdb")),
            "no copy is left behind: {copies:?}"
        );
    }
    // Each data file is smaller than one ranged request.
    let files = parts.len() as u64;
    assert_eq!(
        gets,
        [files, 2 * files, 2 * files, 2 * files],
        "data files' GETs: a copy kept, none allowed, none possible, the files too large"
    );
}

/// The same export from S3 (moto) into PostgreSQL, killed at random moments and restarted:
/// every line consumed once across the committed batches, the table equal cell for cell.
#[test]
fn an_s3_export_into_postgres_survives_kills() {
    let moto = support::moto::MotoServer::start();
    let server = support::pg::PgServer::start();
    let url = server.create_db("backfill");
    let dir = tempfile::tempdir().unwrap();
    let items = orders(6_000, 14);
    let export = dir.path().join("export");
    let parts = write_export(&export, TABLE, items.values(), 6, EXPORT_TIME);
    let from = upload_export(&moto, &export, &parts);
    let config = dir.path().join("pg.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"dynamodb-streams\"\ntables = [\"{TABLE}\"]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             [target]\nkind = \"postgres\"\nurl = \"{url}\"\n[defaults]\nbatch_size = 400\nmax_batch_records = 800\n\
             [tables.\"{TABLE}\"]\nkeys = [\"orderId\"]\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let command = || {
        let mut command = Command::new(BIN);
        command
            .args(["backfill", "--config"])
            .arg(&config)
            .args(["--from-export", &from])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        command
    };
    let mut progress = || {
        let exists =
            server.query("backfill", "SELECT CAST(to_regclass('_dynashift.runs') IS NOT NULL AS TEXT)");
        if exists[0].as_deref() != Some("true") {
            return 0;
        }
        let sum =
            server.query("backfill", "SELECT CAST(COALESCE(SUM(records), 0) AS TEXT) FROM _dynashift.runs");
        sum[0].as_deref().unwrap_or("0").parse().unwrap()
    };
    let landed = support::kill_and_restart_command(&command, 6, 21, items.len(), &mut progress);
    eprintln!("{landed} of 6 kills landed inside the load");
    assert!(landed >= 3, "only {landed} of 6 kills landed inside the load");
    let out = command().output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(progress(), items.len(), "every line consumed once across committed batches");
    let mut w = PostgresWarehouse::open(PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    support::assert_tables_equal(&support::read_back(&mut w), &expected_load(&items));
}

/// An item as DynamoDB JSON, written here (not by the product) for the oracle.
fn typed(v: &aws_sdk_dynamodb::types::AttributeValue) -> serde_json::Value {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    use serde_json::json;
    match v {
        Av::S(s) => json!({ "S": s }),
        Av::N(n) => json!({ "N": n }),
        Av::Bool(b) => json!({ "BOOL": b }),
        Av::Null(_) => json!({ "NULL": true }),
        Av::Ss(s) => json!({ "SS": s }),
        Av::Ns(n) => json!({ "NS": n }),
        Av::L(l) => json!({ "L": l.iter().map(typed).collect::<Vec<_>>() }),
        Av::M(m) => {
            json!({ "M": m.iter().map(|(k, v)| (k.clone(), typed(v))).collect::<serde_json::Map<_, _>>() })
        }
        other => panic!("the test writes no {other:?}"),
    }
}

/// A parallel Scan while items are put, updated, deleted and re-inserted through the API,
/// then the table's stream (enabled before the scan started) read after it: the warehouse
/// equals a final Scan of the table, cell for cell. The stream alone could not do it: the
/// items written before it was enabled are only in the scan.
#[test]
fn a_scan_during_writes_then_the_stream_equals_the_table() {
    use aws_sdk_dynamodb::types::{AttributeValue as Av, StreamSpecification, StreamViewType};
    let moto = support::moto::MotoServer::start();
    let settings = moto.aws_settings();
    let (rt, _, client) = orders_table(&settings);
    let item = |i: u64, round: u64| {
        let mut item = std::collections::HashMap::from([
            ("orderId".to_string(), Av::S(format!("ord-{i:05}"))),
            ("amount".to_string(), Av::N(format!("{}.{:02}", i * 3 + round, i % 100))),
            ("round".to_string(), Av::N(round.to_string())),
        ]);
        if i.is_multiple_of(3) {
            let lines = Av::L(vec![Av::M(std::collections::HashMap::from([(
                "sku".to_string(),
                Av::S(format!("s{i}")),
            )]))]);
            item.insert("lines".to_string(), lines);
        }
        if round > 0 {
            item.insert("note".to_string(), Av::S(format!("changed in round {round}")));
        }
        item
    };
    let put = |i: u64, round: u64| {
        rt.block_on(client.put_item().table_name(TABLE).set_item(Some(item(i, round))).send()).unwrap();
    };
    let delete = |i: u64| {
        let key = std::collections::HashMap::from([("orderId".to_string(), Av::S(format!("ord-{i:05}")))]);
        rt.block_on(client.delete_item().table_name(TABLE).set_key(Some(key)).send()).unwrap();
    };
    const ITEMS: u64 = 2_000;
    for i in 0..ITEMS {
        put(i, 0);
    }
    // The stream starts now: every item above is only in the scan.
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .unwrap();
    rt.block_on(client.update_table().table_name(TABLE).stream_specification(stream).send()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scan.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"dynamodb-streams\"\ntables = [\"{TABLE}\"]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             flush_interval_ms = 200\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n[defaults]\nbatch_size = 300\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let scan = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "backfill",
            "--config",
            "scan.toml",
            "--scan",
            "--table",
            TABLE,
            "--segments",
            "4",
            "--page-items",
            "50",
            "--rate",
            "20",
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While it scans: updates, deletes, re-inserts and new items, in several rounds.
    let mut rng = dynashift_testkit::Rng::new(99);
    for round in 1..=4 {
        for _ in 0..150 {
            let i = rng.below(ITEMS + 200);
            match rng.below(4) {
                0 => delete(i),
                _ => put(i, round),
            }
        }
    }
    let out = scan.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("loaded whole"), "{}", text(&out));
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["sync", "--once", "--config", "scan.toml"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // The final Scan, as the oracle reads it.
    let model = scan_table(&rt, &client);
    assert!(model.len() > 1_500, "{} items left", model.len());
    let expected =
        support::expected(&BTreeMap::from([(TABLE.to_string(), model)]), ColumnMode::Typed, &keys());
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected);
}

/// `--export` against moto: refused in one line while the table's point-in-time recovery is
/// off; with it on, the export is started and waited for until DescribeExport says COMPLETED
/// (moto writes no manifests, so the load then stops, naming what to pass instead).
#[test]
fn an_export_is_started_and_waited_for() {
    use aws_sdk_dynamodb::types::PointInTimeRecoverySpecification;
    let moto = support::moto::MotoServer::start();
    let settings = moto.aws_settings();
    let (rt, sdk, client) = orders_table(&settings);
    rt.block_on(dynashift::aws::s3_client(&sdk, &settings).create_bucket().bucket("export-bucket").send())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("export.toml"),
        format!(
            "[source]\nkind = \"dynamodb-streams\"\ntables = [\"{TABLE}\"]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             [target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let export = || {
        Command::new(BIN)
            .current_dir(dir.path())
            .args([
                "backfill",
                "--config",
                "export.toml",
                "--table",
                TABLE,
                "--export",
                "s3://export-bucket/exports/",
            ])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap()
    };
    let off = export();
    assert!(!off.status.success());
    let said = String::from_utf8_lossy(&off.stderr).to_string();
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(said.contains("point-in-time recovery is off for `Orders`") && said.contains("--scan"), "{said}");
    let pitr =
        PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().unwrap();
    rt.block_on(
        client
            .update_continuous_backups()
            .table_name(TABLE)
            .point_in_time_recovery_specification(pitr)
            .send(),
    )
    .unwrap();
    let on = export();
    let said = text(&on);
    assert!(!on.status.success(), "{said}");
    assert!(said.contains("completed, but DescribeExport names no manifest"), "{said}");
}

/// A table with fewer items than scan segments: the segments with nothing to read end at
/// once, and the scan still reads the others to their end.
#[test]
fn a_scan_with_more_segments_than_items_loads_them_all() {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let moto = support::moto::MotoServer::start();
    let settings = moto.aws_settings();
    let (rt, _, client) = orders_table(&settings);
    for i in 0..3 {
        let item = std::collections::HashMap::from([
            ("orderId".to_string(), Av::S(format!("o{i}"))),
            ("n".to_string(), Av::N(i.to_string())),
        ]);
        rt.block_on(client.put_item().table_name(TABLE).set_item(Some(item)).send()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scan.toml"),
        format!(
            "[source]\nkind = \"dynamodb-streams\"\ntables = [\"{TABLE}\"]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             [target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "backfill",
            "--config",
            "scan.toml",
            "--scan",
            "--table",
            TABLE,
            "--segments",
            "24",
            "--rate",
            "40",
        ])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("loaded whole"), "{}", text(&out));
    assert_eq!(duckdb_tables(dir.path())[TABLE].len(), 3);
    let ended = duckdb_query(dir.path(), "SELECT shard FROM _dynashift.checkpoints WHERE sequence = 'end'");
    assert_eq!(ended.len(), 24, "{ended:?}");
    assert_eq!(backfills(dir.path(), &dir.path().join("scan.toml")), vec![(format!("scan:{TABLE}"), 24, 24)]);
}

/// A Scan of the whole table, as the oracle reads it: key text → item.
fn scan_table(rt: &tokio::runtime::Runtime, client: &aws_sdk_dynamodb::Client) -> BTreeMap<String, Item> {
    let mut model: BTreeMap<String, Item> = BTreeMap::new();
    let mut start = None;
    loop {
        let page =
            rt.block_on(client.scan().table_name(TABLE).set_exclusive_start_key(start).send()).unwrap();
        for raw in page.items() {
            let object: serde_json::Map<String, serde_json::Value> =
                raw.iter().map(|(k, v)| (k.clone(), typed(v))).collect();
            let item = Item::from_typed_json(&serde_json::Value::Object(object).to_string()).unwrap();
            let key: Item = item
                .iter()
                .filter(|(k, _)| k.as_str() == "orderId")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            model.insert(dynashift_core::value::key_text(&key), item);
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    model
}

/// `backfill = "auto"`: the first pass scans the table (its items written before the stream
/// was enabled are only there), then reads the stream; the next pass only reads the stream.
/// With `start = "latest"`, the setting is refused in one line.
#[test]
fn an_automatic_backfill_scans_once_then_the_stream_carries_on() {
    use aws_sdk_dynamodb::types::{AttributeValue as Av, StreamSpecification, StreamViewType};
    let moto = support::moto::MotoServer::start();
    let settings = moto.aws_settings();
    let (rt, _, client) = orders_table(&settings);
    let put = |i: u64, v: &str| {
        let item = std::collections::HashMap::from([
            ("orderId".to_string(), Av::S(format!("o{i:04}"))),
            ("v".to_string(), Av::S(v.to_string())),
        ]);
        rt.block_on(client.put_item().table_name(TABLE).set_item(Some(item)).send()).unwrap();
    };
    let delete = |i: u64| {
        let key = std::collections::HashMap::from([("orderId".to_string(), Av::S(format!("o{i:04}")))]);
        rt.block_on(client.delete_item().table_name(TABLE).set_key(Some(key)).send()).unwrap();
    };
    for i in 0..300 {
        put(i, "before the stream");
    }
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .unwrap();
    rt.block_on(client.update_table().table_name(TABLE).stream_specification(stream).send()).unwrap();
    for i in (0..300).step_by(7) {
        put(i, "in the stream");
    }
    for i in (3..300).step_by(11) {
        delete(i);
    }
    let dir = tempfile::tempdir().unwrap();
    let write_config = |start: &str| {
        std::fs::write(
            dir.path().join("auto.toml"),
            format!(
                "[source]\nkind = \"dynamodb-streams\"\ntables = [\"{TABLE}\"]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
                 start = \"{start}\"\nbackfill = \"auto\"\nflush_interval_ms = 200\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n",
                moto.endpoint()
            ),
        )
        .unwrap();
    };
    let sync = || {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(["sync", "--once", "--config", "auto.toml"])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    write_config("latest");
    let (ok, said) = sync();
    assert!(!ok && said.contains("source.backfill") && said.contains("trim_horizon"), "{said}");
    write_config("trim_horizon");
    let (ok, said) = sync();
    assert!(ok, "{said}");
    assert!(said.contains("scanning `Orders` before the stream is first read"), "{said}");
    let expected =
        |model| support::expected(&BTreeMap::from([(TABLE.to_string(), model)]), ColumnMode::Typed, &keys());
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected(scan_table(&rt, &client)));
    for i in (0..300).step_by(5) {
        put(i, "later");
    }
    delete(1);
    let (ok, said) = sync();
    assert!(ok, "{said}");
    assert!(!said.contains("scanning"), "the table was scanned again: {said}");
    support::assert_tables_equal(&duckdb_tables(dir.path()), &expected(scan_table(&rt, &client)));
}

/// The DynamoDB API at `settings` (moto) with an empty on-demand `Orders` table keyed by
/// `orderId`: the runtime, the SDK configuration and the client.
fn orders_table(
    settings: &dynashift::aws::AwsSettings,
) -> (tokio::runtime::Runtime, aws_config::SdkConfig, aws_sdk_dynamodb::Client) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sdk = rt.block_on(dynashift::aws::sdk_config(settings));
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let key = AttributeDefinition::builder().attribute_name("orderId").attribute_type(ScalarAttributeType::S);
    let schema = KeySchemaElement::builder().attribute_name("orderId").key_type(KeyType::Hash);
    let create = client
        .create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(key.build().unwrap())
        .key_schema(schema.build().unwrap());
    rt.block_on(create.send()).unwrap();
    (rt, sdk, client)
}
