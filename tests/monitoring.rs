//! The monitoring listener of the real binary, scraped over HTTP while it replicates from
//! kinesalite into DuckDB: the counters equal the records sent, the lag gauges move with the
//! clock, an idle shard is polled with backoff, and `/readyz` turns unavailable once an hourly
//! table holds a change older than `alert_lag` plus the hour its schedule allows.
#![cfg(feature = "duckdb")]

mod support;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::kinesalite::{Kinesalite, KinesisStream};

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

/// One HTTP/1.1 GET: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot reach the metrics listener on port {port}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// The value of the sample `name` (with its labels, as exposed) in a scrape, if present.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn scrape(port: u16) -> String {
    let (status, body) = get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Scrapes until `ok` holds (30 s at most).
fn scrape_until(port: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = scrape(port);
        if ok(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} never held:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks `/readyz` until it answers `status` (30 s at most); returns its body.
fn wait_for_readiness(port: u16, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = get(port, "/readyz");
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {got}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A change of `table`'s item `id`, made at `millis` (epoch milliseconds).
fn change(table: &str, id: &str, millis: i64) -> String {
    format!(
        r#"{{"eventName":"INSERT","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":{millis},"Keys":{{"id":{{"S":"{id}"}}}},"NewImage":{{"id":{{"S":"{id}"}},"n":{{"N":"1"}}}}}}}}"#
    )
}

fn now_millis() -> i64 {
    dynashift::run::unix_now() * 1000
}

#[test]
fn metrics_lag_and_readiness_while_replicating_from_kinesis() {
    let kinesalite = Kinesalite::start();
    let stream = KinesisStream::new(&kinesalite, "changes");
    stream.create(1);
    let hot: Vec<String> = (0..20).map(|i| change("Hot", &format!("h{i}"), now_millis())).collect();
    stream.put(&hot, 0);

    // The binary reaches kinesalite through a relay counting the GetRecords calls it receives.
    let proxy = support::counting_proxy::CountingProxy::start(kinesalite.port, "Kinesis_20131202.GetRecords");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("monitored.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"kinesis\"\nstream = \"changes\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             flush_interval_ms = 200\n[target]\nkind = \"duckdb\"\npath = {:?}\n\
             [tables.\"Audit\"]\nevery = \"1h\"\n[monitoring]\nalert_lag = \"10m\"\n",
            proxy.endpoint(),
            dir.path().join("out.duckdb").display().to_string()
        ),
    )
    .unwrap();
    let port = support::listening_socket(0).local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the metrics listener never opened");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/healthz").0, 200);

    // Every record sent is counted read, taken and applied.
    let body = scrape_until(port, "20 Hot changes applied", |b| {
        sample(b, "dynashift_changes_applied_total{table=\"Hot\"}") == Some(20.0)
    });
    assert_eq!(sample(&body, "dynashift_records_read_total"), Some(20.0), "{body}");
    assert_eq!(sample(&body, "dynashift_changes_read_total{table=\"Hot\"}"), Some(20.0), "{body}");
    assert_eq!(sample(&body, "dynashift_rows_written_total{table=\"Hot\"}"), Some(20.0), "{body}");
    assert_eq!(sample(&body, "dynashift_shards"), Some(1.0), "{body}");
    let (ready, why) = get(port, "/readyz");
    assert_eq!(ready, 200, "{why}");

    // The applied lag is an age: it grows between scrapes while nothing new comes.
    let first = sample(&body, "dynashift_applied_lag_seconds{table=\"Hot\"}").unwrap();
    std::thread::sleep(Duration::from_millis(2_100));
    let later = sample(&scrape(port), "dynashift_applied_lag_seconds{table=\"Hot\"}").unwrap();
    assert!(later >= first + 2.0, "lag {first} s, then {later} s two seconds later");

    // Idle: the empty shard's rest doubles up to 10 s (1 + 2 + 4 + 8 s to reach it), so over
    // the next 10 s kinesalite receives at most two GetRecords calls for it (docs/operations.md:
    // one every 10 s), as the process's own count says too.
    std::thread::sleep(Duration::from_secs(14));
    let (before, received_before) =
        (sample(&scrape(port), "dynashift_empty_polls_total").unwrap(), proxy.count());
    std::thread::sleep(Duration::from_secs(10));
    let body = scrape(port);
    let polls = sample(&body, "dynashift_empty_polls_total").unwrap() - before;
    let received = proxy.count() - received_before;
    assert!(received <= 2, "kinesalite received {received} GetRecords calls for one idle shard in 10 s");
    assert!(polls <= 2.0, "{polls} empty polls of one idle shard in 10 s");
    assert!(
        proxy.count() >= 5,
        "the relay saw {} GetRecords calls in all: is it in the path?",
        proxy.count()
    );
    assert_eq!(sample(&body, "dynashift_idle_shards"), Some(1.0), "{body}");

    // An hourly table, never applied, takes its first changes at once; changes made two hours
    // ago that come after are held for the hour: past alert_lag plus that hour, so not ready.
    let two_hours_ago = now_millis() - 7_200_000;
    let audit: Vec<String> = (0..10).map(|i| change("Audit", &format!("a{i}"), two_hours_ago)).collect();
    stream.put(&audit[..5], 100);
    scrape_until(port, "Audit's first changes applied", |b| {
        sample(b, "dynashift_changes_applied_total{table=\"Audit\"}") == Some(5.0)
    });
    // Held for a moment before that apply, they were late already: ready again once applied.
    wait_for_readiness(port, 200);
    stream.put(&audit[5..], 105);
    let body = scrape_until(port, "the later Audit changes held", |b| {
        sample(b, "dynashift_records_read_total") == Some(30.0)
            && sample(b, "dynashift_unapplied_lag_seconds{table=\"Audit\"}").is_some()
    });
    assert!(sample(&body, "dynashift_unapplied_lag_seconds{table=\"Audit\"}").unwrap() >= 7_200.0, "{body}");
    assert_eq!(sample(&body, "dynashift_records_read_total"), Some(30.0), "{body}");
    assert_eq!(sample(&body, "dynashift_alarm{kind=\"lag\"}"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "dynashift_changes_applied_total{table=\"Audit\"}"), Some(5.0), "held: {body}");
    let why = wait_for_readiness(port, 503);
    assert!(why.contains("alarm"), "{why}");

    child.kill().unwrap();
    child.wait().unwrap();

    // What the run recorded of its shard's lag is in `status`, without a running process.
    let out = Command::new(BIN).args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    support::status_schema::assert_status_json(&text);
    let shards = support::status_schema::shards_behind(&text);
    assert_eq!(shards.len(), 1, "one shard's lag recorded: {text}");
    assert!(shards[0].0.starts_with("shardId-") && (0..60_000).contains(&shards[0].1), "{shards:?}");
    let out = Command::new(BIN).args(["status", "--config"]).arg(&config).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&shards[0].0) && text.contains("behind"), "{text}");
}
