//! The stream sources where a reader can lose changes without an error, on kinesalite:
//! `start = "latest"` must not skip the first records of shards found later (a split's
//! children), and changes of one item within one millisecond must end the same whether
//! they arrive in one batch or one per batch, with a re-delivered duplicate never winning.
#![cfg(feature = "duckdb")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::kinesalite::{Kinesalite, KinesisStream};
use support::pg::PgServer;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

fn config(
    dir: &std::path::Path,
    kinesalite: &Kinesalite,
    stream: &str,
    url: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("stream.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nkind = \"kinesis\"\nstream = \"{stream}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\nflush_interval_ms = 200\n{extra}\n\
             [target]\nkind = \"postgres\"\nurl = \"{url}\"\n",
            kinesalite.endpoint()
        ),
    )
    .unwrap();
    path
}

fn command(args: &[&str], config: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).arg("--config").arg(config);
    c.env("AWS_ACCESS_KEY_ID", "testing").env("AWS_SECRET_ACCESS_KEY", "testing");
    c
}

/// A Kinesis-for-DynamoDB record of item `id` setting `v`, created at `ms` (millisecond
/// precision, DynamoDB's default), with `event_id`.
fn record(id: usize, v: &str, ms: i64, event_id: &str) -> String {
    serde_json::json!({
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "eventName": "MODIFY",
        "recordFormat": "application/json",
        "tableName": "Items",
        "dynamodb": {
            "ApproximateCreationDateTime": ms,
            "Keys": {"id": {"N": id.to_string()}},
            "NewImage": {"id": {"N": id.to_string()}, "v": {"S": v}},
            "SizeBytes": 40
        },
        "eventSource": "aws:dynamodb"
    })
    .to_string()
}

/// `id → v` as replicated.
fn values(server: &PgServer, db: &str) -> std::collections::BTreeMap<String, String> {
    let exists = server.query(db, "SELECT CAST(to_regclass('dynamodb.items') AS TEXT)");
    if exists.first().cloned().flatten().is_none() {
        return Default::default();
    }
    let rows = server.query(db, "SELECT CAST(id AS TEXT) || '=' || v FROM dynamodb.items");
    rows.into_iter()
        .flatten()
        .map(|r| {
            let (k, v) = r.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn wait_for(what: &str, run: &mut Child, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        if let Ok(Some(status)) = run.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(run.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("run ended early ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(mut run: Child) {
    support::wait_until_signals_are_caught(&mut run);
    // SAFETY: kill sends a signal to our own child process.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn latest_does_not_skip_the_first_records_of_a_splits_children() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let url = server.create_db("latest");
    let settings = dynashift::warehouse::postgres::PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap();
    let mut w = dynashift::warehouse::postgres::PostgresWarehouse::open(settings).unwrap();
    dynashift::warehouse::Warehouse::setup(&mut w).unwrap();
    let stream = KinesisStream::new(&kinesalite, "latest-split");
    stream.create(1);
    let ms = 1_764_000_000_000i64;
    // Before the reader starts: not wanted with `latest`.
    let before: Vec<(String, String)> =
        (0..50).map(|i| (format!("k{i}"), record(i, "before", ms, &format!("b{i}")))).collect();
    stream.put_keyed(&before);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &kinesalite, "latest-split", &url, "start = \"latest\"");
    let mut run = command(&["run"], &cfg).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // The reader has listed the stream once it has committed its start.
    wait_for("the reader's start", &mut run, || {
        !server.query("latest", "SELECT shard FROM _dynashift.checkpoints WHERE shard = '@start'").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let first: Vec<(String, String)> =
        (0..300).map(|i| (format!("k{i}"), record(i, "first", ms + 1, &format!("f{i}")))).collect();
    stream.put_keyed(&first);
    let (id, lo, hi) = stream.open_shards()[0].clone();
    stream
        .rt
        .block_on(
            stream
                .client
                .split_shard()
                .stream_name(&stream.name)
                .shard_to_split(&id)
                .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
                .send(),
        )
        .unwrap();
    stream.wait_active();
    // Straight into the children, before the reader has seen them.
    let second: Vec<(String, String)> =
        (0..300).map(|i| (format!("k{i}"), record(i, "second", ms + 2, &format!("s{i}")))).collect();
    stream.put_keyed(&second);
    wait_for("every item at its second value", &mut run, || {
        let v = values(&server, "latest");
        v.len() == 300 && v.values().all(|x| x == "second")
    });
    stop(run);
    let v = values(&server, "latest");
    assert_eq!(v.len(), 300, "items written before the start are not read, and none is missing");
}

#[test]
fn ties_within_a_millisecond_end_the_same_whatever_the_batches_and_duplicates_never_win() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let stream = KinesisStream::new(&kinesalite, "ties");
    stream.create(1);
    let ms = 1_764_000_000_000i64;
    // Per item, three changes in one millisecond, then the first one delivered again.
    let items = 20;
    let mut records = Vec::new();
    for i in 0..items {
        let key = format!("item-{i}");
        for (n, v) in ["a", "b", "c"].iter().enumerate() {
            records.push((key.clone(), record(i, v, ms + i as i64, &format!("e{i}-{n}"))));
        }
    }
    for i in 0..items {
        records.push((format!("item-{i}"), record(i, "a", ms + i as i64, &format!("e{i}-0"))));
    }
    stream.put_keyed(&records);
    for (db, batch) in [("one_batch", 1_000), ("one_per_batch", 1)] {
        let url = server.create_db(db);
        let dir = tempfile::tempdir().unwrap();
        let extra = format!("[defaults]\nbatch_size = {batch}\nmax_batch_records = {batch}");
        let cfg = config(dir.path(), &kinesalite, "ties", &url, "");
        let text = std::fs::read_to_string(&cfg).unwrap() + &extra + "\n";
        std::fs::write(&cfg, text).unwrap();
        let out = command(&["sync", "--once"], &cfg).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v = values(&server, db);
        assert_eq!(v.len(), items, "{db}");
        let wrong: Vec<_> = v.iter().filter(|(_, x)| x.as_str() != "c").collect();
        assert!(wrong.is_empty(), "{db}: {} items not at their last change: {wrong:?}", wrong.len());
    }
}
