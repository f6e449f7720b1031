//! The `kinesis` source against kinesalite: a generated history put into a two-shard stream
//! that is split and merged while `dynashift run` consumes it, killed (SIGKILL) and restarted
//! three times on the way, stopped with SIGINT at the end; PostgreSQL must equal the model with
//! every record consumed exactly once. Also: `sync --once`, KPL records, a missing stream, and
//! the service restarting mid-run (that run is stopped with SIGTERM).
#![cfg(feature = "duckdb")]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift_testkit::WorkloadSpec;
use support::generate;
use support::kinesalite::{Kinesalite, KinesisStream as Stream};
use support::pg::PgServer;
use support::Watched;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");
const STREAM: &str = "ddb-changes";

fn run_command(config: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    command
}

/// `run`, its committed batches watched.
fn start_run(config: &std::path::Path) -> Watched {
    Watched::start(run_command(config))
}

fn write_config(
    dir: &std::path::Path,
    kinesalite: &Kinesalite,
    stream: &str,
    url: &str,
) -> std::path::PathBuf {
    let config = dir.join("kinesis.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"kinesis\"\nstream = \"{stream}\"\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\nflush_interval_ms = 300\n\
             [target]\nkind = \"postgres\"\nurl = \"{url}\"\n[defaults]\nbatch_size = 700\n\
             max_batch_records = 700\n",
            kinesalite.endpoint()
        ),
    )
    .unwrap();
    config
}

fn wait_consumed(server: &PgServer, run: &mut Watched, total: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumed(server) < total {
        if let Ok(Some(status)) = run.child.try_wait() {
            panic!("run ended early ({status}): {}", run.log());
        }
        assert!(Instant::now() < deadline, "only {} of {total} records consumed", consumed(server));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops `run` with `signal` (SIGINT or SIGTERM); returns what it logged.
fn interrupt(mut run: Watched, signal: i32) -> String {
    support::wait_until_signals_are_caught(&mut run.child);
    // SAFETY: kill sends a signal to our own child process.
    unsafe { libc::kill(run.child.id() as i32, signal) };
    let stopping = Instant::now();
    let (status, log) = run.wait();
    assert!(status.success(), "{log}");
    assert!(stopping.elapsed() < Duration::from_secs(10), "SIGINT took {:?}", stopping.elapsed());
    log
}

/// Waits for committed batches until more than `past` records are consumed, then SIGKILLs
/// the run; returns the records consumed, which must fall short of `short_of`: the kill
/// landed in the work, after progress since the kill before.
fn kill_past(server: &PgServer, mut run: Watched, past: usize, short_of: usize) -> usize {
    while consumed(server) <= past {
        assert!(run.wait_commits(1), "the run ended: {}", run.log());
    }
    assert!(run.kill_or_check_ended(0), "the run ended by itself: {}", run.log());
    let now = consumed(server);
    assert!(
        now > past && now < short_of,
        "the kill landed outside the work: {now} records consumed, not between {past} and {short_of}"
    );
    now
}

fn assert_model(url: &str, model: &dynashift_testkit::Model) {
    let mut w = PostgresWarehouse::open(PgSettings::parse(url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    let actual = support::read_back(&mut w);
    let expected = support::expected_model(model);
    support::assert_tables_equal(&actual, &expected);
}

fn consumed(server: &PgServer) -> usize {
    let rows = server.query("kinesis", "SELECT CAST(COALESCE(SUM(records), 0) AS TEXT) FROM _dynashift.runs");
    rows.first().cloned().flatten().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn split_and_merged_stream_with_three_crashes_ends_at_the_model() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let url = server.create_db("kinesis");
    // The control tables exist before the first count is polled.
    let mut w = PostgresWarehouse::open(PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    dynashift::warehouse::Warehouse::setup(&mut w).unwrap();

    let stream = Stream::new(&kinesalite, STREAM);
    stream.create(2);

    let spec = WorkloadSpec {
        records: 6_000,
        keys: 600,
        duplicate_percent: 5,
        shuffle_window: 200,
        seed: 3,
        expire_percent: 1,
    };
    let (lines, model) = generate(&spec, true);
    let third = lines.len() / 3;

    let dir = tempfile::tempdir().unwrap();
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{STREAM}");
    let config = write_config(dir.path(), &kinesalite, &arn, &url);

    stream.put(&lines[..third], 0);
    // First crash: while the parents are being read (batches of at most 700 records).
    let progress = kill_past(&server, start_run(&config), 0, third);
    let run = start_run(&config);

    // Split the first shard while the run reads; the children must wait for their parent.
    let (id, lo, hi) = stream.open_shards()[0].clone();
    let mid = lo + (hi - lo) / 2;
    stream
        .rt
        .block_on(
            stream
                .client
                .split_shard()
                .stream_name(STREAM)
                .shard_to_split(&id)
                .new_starting_hash_key(mid.to_string())
                .send(),
        )
        .unwrap();
    stream.wait_active();
    stream.put(&lines[third..2 * third], third);

    // Second crash, while the records put after the split are read: the restarted run
    // resumes from the committed positions.
    let progress = kill_past(&server, run, progress.max(third), 2 * third);
    let run = start_run(&config);

    // Merge the split's two children.
    let mut open = stream.open_shards();
    open.sort_by_key(|s| s.1);
    let pair = open.windows(2).find(|w| w[0].2 + 1 == w[1].1 && w[0].0 != id).unwrap().to_vec();
    stream
        .rt
        .block_on(
            stream
                .client
                .merge_shards()
                .stream_name(STREAM)
                .shard_to_merge(&pair[0].0)
                .adjacent_shard_to_merge(&pair[1].0)
                .send(),
        )
        .unwrap();
    stream.wait_active();
    stream.put(&lines[2 * third..], 2 * third);
    // Third crash: while the records put after the merge are read.
    kill_past(&server, run, progress.max(2 * third), lines.len());
    let mut run = start_run(&config);

    wait_consumed(&server, &mut run, lines.len());
    interrupt(run, libc::SIGINT);

    assert_eq!(consumed(&server), lines.len(), "every record consumed exactly once");
    assert_model(&url, &model);
    let shards = server.query(
        "kinesis",
        "SELECT CAST(COUNT(DISTINCT shard) AS TEXT) FROM _dynashift.checkpoints WHERE shard NOT LIKE '@%'",
    );
    assert_eq!(shards[0].as_deref(), Some("5"), "two shards, two split children, one merged child");
    let ended = server
        .query("kinesis", "SELECT shard FROM _dynashift.checkpoints WHERE sequence = 'end' ORDER BY shard");
    assert_eq!(
        ended.len(),
        3,
        "the split parent and the merged pair are marked read to their end: {ended:?}"
    );
}

#[test]
fn a_missing_stream_is_one_clear_line() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let url = server.create_db("kinesis");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesalite, "no-such-stream", &url);
    let out = run_command(&config).output().unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("Kinesis stream `no-such-stream` does not exist"), "{message}");
}

/// With no credentials anywhere in the chain, one line says what was tried and what to set;
/// the SDK's own search (its instance-metadata warnings) is not printed.
#[test]
fn absent_credentials_are_one_line_naming_what_to_set() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let url = server.create_db("kinesis");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesalite, STREAM, &url);
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        // No instance to ask here: the metadata endpoint is turned off rather than waited on.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("no AWS credentials found"), "{message}");
    assert!(message.contains("AWS_ACCESS_KEY_ID") && message.contains("AWS_PROFILE"), "{message}");
}

/// `sync --once` reads every shard to its tip and stops; a KPL-aggregated record is rejected
/// with its reason, never misread; a second pass picks up only what came since.
#[test]
fn sync_once_reads_to_the_tip_and_rejects_aggregated_records() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let url = server.create_db("kinesis");
    let stream = Stream::new(&kinesalite, STREAM);
    stream.create(2);
    let spec = WorkloadSpec {
        records: 1_500,
        keys: 200,
        duplicate_percent: 5,
        shuffle_window: 100,
        seed: 8,
        expire_percent: 1,
    };
    let (lines, model) = generate(&spec, false);
    let half = lines.len() / 2;
    stream.put(&lines[..half], 0);
    let mut kpl = vec![0xF3, 0x89, 0x9A, 0xC2];
    kpl.extend_from_slice(b"\x0a\x03pk1 aggregated payload");
    stream
        .rt
        .block_on(
            stream.client.put_record().stream_name(STREAM).partition_key("kpl").data(Blob::new(kpl)).send(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesalite, STREAM, &url);
    let sync = || {
        Command::new(BIN)
            .args(["sync", "--once", "--config"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap()
    };
    let out = sync();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(consumed(&server), half + 1);
    let reason = server.query("kinesis", "SELECT reason FROM _dynashift.rejects");
    assert_eq!(reason.len(), 1);
    assert!(reason[0].as_deref().unwrap_or("").contains("Kinesis Producer Library"), "{reason:?}");

    stream.put(&lines[half..], half);
    let out = sync();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(consumed(&server), lines.len() + 1, "the second pass reads only the new records");
    assert_model(&url, &model);
}

/// The Kinesis service goes away for a few seconds mid-run and comes back: `run` waits it out.
#[test]
fn the_stream_service_restarting_is_ridden_out() {
    let data = tempfile::tempdir().unwrap();
    let mut kinesalite = Kinesalite::start_persistent(&data.path().join("db"));
    let server = PgServer::start();
    let url = server.create_db("kinesis");
    let mut w = PostgresWarehouse::open(PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    dynashift::warehouse::Warehouse::setup(&mut w).unwrap();
    let spec = WorkloadSpec {
        records: 2_000,
        keys: 300,
        duplicate_percent: 5,
        shuffle_window: 100,
        seed: 9,
        expire_percent: 1,
    };
    let (lines, model) = generate(&spec, true);
    let half = lines.len() / 2;
    {
        let stream = Stream::new(&kinesalite, STREAM);
        stream.create(2);
        stream.put(&lines[..half], 0);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesalite, STREAM, &url);
    let mut run = start_run(&config);
    wait_consumed(&server, &mut run, half);
    kinesalite.stop();
    // Longer than a poll interval (1 s) plus the SDK's own retries (three attempts, up to 3 s
    // of backoff), which can otherwise bridge a short outage before the reader sees it.
    std::thread::sleep(Duration::from_secs(6));
    kinesalite.restart();
    Stream::new(&kinesalite, STREAM).put(&lines[half..], half);
    wait_consumed(&server, &mut run, lines.len());
    let log = interrupt(run, libc::SIGTERM);
    assert!(log.contains("retrying"), "the outage went unnoticed: {log}");
    assert_eq!(consumed(&server), lines.len());
    assert_model(&url, &model);
}

/// Schedules on a stream: with `Orders` applied at most hourly, a second `sync --once` applies
/// the other tables and holds `Orders` (its shards' positions stay before its first held
/// change); `sync --once --all` then applies it from the re-read records, exactly.
#[test]
fn an_hourly_table_is_held_across_passes_and_applied_with_all() {
    let kinesalite = Kinesalite::start();
    let server = PgServer::start();
    let url = server.create_db("kinesis");
    let stream = Stream::new(&kinesalite, STREAM);
    stream.create(2);
    let spec = WorkloadSpec {
        records: 1_200,
        keys: 150,
        duplicate_percent: 5,
        shuffle_window: 100,
        seed: 11,
        expire_percent: 1,
    };
    let (lines, model) = generate(&spec, false);
    let half = lines.len() / 2;
    stream.put(&lines[..half], 0);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &kinesalite, STREAM, &url);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[tables.\"Orders\"]\nevery = \"1h\"\n");
    std::fs::write(&config, text).unwrap();
    let sync = |all: bool| {
        let mut command = Command::new(BIN);
        command.args(["sync", "--once", "--config"]).arg(&config);
        if all {
            command.arg("--all");
        }
        let out = command
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let applied = |table: &str| -> i64 {
        let rows = server.query(
            "kinesis",
            &format!(
                "SELECT CAST(changes_applied AS TEXT) FROM _dynashift.tables WHERE source_table = '{table}'"
            ),
        );
        rows.first().cloned().flatten().and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    let positions = || {
        let sql = "SELECT shard || '=' || sequence FROM _dynashift.checkpoints WHERE source NOT LIKE '%@applied' ORDER BY 1";
        server.query("kinesis", sql)
    };
    sync(false);
    let orders_first = applied("Orders");
    assert!(orders_first > 0, "never applied: due at once");
    stream.put(&lines[half..], half);
    sync(false);
    assert_eq!(applied("Orders"), orders_first, "held: applied less than an hour ago");
    let held_back = positions();
    sync(true);
    assert!(applied("Orders") > orders_first);
    assert_ne!(positions(), held_back, "positions move on once Orders is applied");
    assert_model(&url, &model);
}
