//! The `redshift-mv` source against a real PostgreSQL server: a landing table with the columns
//! of Redshift's streaming-ingestion view, filled with generated Kinesis records for DynamoDB
//! (several shards, one of them resharded into a child, sequence numbers of growing length,
//! duplicates, rows in no particular order), read into DuckDB and PostgreSQL — equal to the
//! model, a record that is not JSON rejected, killed and resumed exactly.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift_testkit::{Model, Rng, WorkloadSpec};
use support::pg::PgServer;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");
const VIEW: &str = "kds.ddb_changes";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A landing table with the view's columns in database `db`, `kinesis_data` of type `data`:
/// BYTEA, a domain named `varbyte` (as Redshift names its type), or TEXT; `shard_id` is
/// CHAR(20), as in the view.
fn create_landing(server: &PgServer, db: &str, data: &str) {
    if data == "varbyte" {
        server.exec(db, "CREATE DOMAIN varbyte AS BYTEA");
    }
    support::create_mv_landing(server, db, VIEW, data);
}

/// One landed record: its shard, sequence number and bytes.
struct Landed {
    shard: String,
    sequence: String,
    data: Vec<u8>,
}

/// The generated history spread over three shards by item key, as DynamoDB's stream does;
/// two thirds of the way through, shard 0 is split and its keys go on in child shard 3.
/// Sequence numbers start at seven digits and pass eight, so that ordering them as text
/// would put later records first.
fn landed(lines: &[String]) -> Vec<Landed> {
    let mut next: [u64; 4] = [9_999_000; 4];
    let split_at = lines.len() * 2 / 3;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut hasher = DefaultHasher::new();
            record["dynamodb"]["Keys"].to_string().hash(&mut hasher);
            let mut shard = (hasher.finish() % 3) as usize;
            if shard == 0 && i >= split_at {
                shard = 3;
            }
            next[shard] += 37;
            Landed {
                shard: format!("shardId-00000000000{shard}"),
                sequence: next[shard].to_string(),
                data: line.clone().into_bytes(),
            }
        })
        .collect()
}

/// Inserts `rows` in a shuffled order (the history itself holds re-deliveries, each with a
/// sequence number of its own, as Kinesis gives them); `text`: `kinesis_data` is a text column.
fn insert(server: &PgServer, db: &str, rows: &[Landed], seed: u64, text: bool) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = Rng::new(seed);
    let window = order.len().max(1);
    dynashift_testkit::shuffle_within_windows(&mut order, window, &mut rng);
    let mut values = Vec::new();
    for &i in &order {
        let row = &rows[i];
        let hex: String = row.data.iter().map(|b| format!("{b:02x}")).collect();
        let bytes = format!("decode('{hex}', 'hex')");
        let data = if text { format!("convert_from({bytes}, 'UTF8')") } else { bytes };
        let value = format!("(now(), 'pk', '{}', '{}', now(), {data})", row.shard, row.sequence);
        values.push(value);
    }
    for chunk in values.chunks(500) {
        server.exec(
            db,
            &format!(
                "INSERT INTO kds.ddb_changes (approximate_arrival_timestamp, partition_key, shard_id, \
                 sequence_number, refresh_time, kinesis_data) VALUES {}",
                chunk.join(", ")
            ),
        );
    }
}

fn workload(records: usize, keys: usize, seed: u64) -> (Vec<String>, Model) {
    let spec = WorkloadSpec { records, keys, seed, ..WorkloadSpec::w1() };
    support::generate(&spec, true)
}

fn write_config(dir: &Path, source_url: &str, target: &str, extra: &str) -> PathBuf {
    let path = dir.join("mv.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nkind = \"redshift-mv\"\nview = \"{VIEW}\"\nurl = \"{source_url}\"\npage_rows = 700\n\n\
             [target]\n{target}\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// `dynashift <args> --config <config>`, run in the configuration's folder.
fn dynashift(args: &[&str], config: &Path) -> Output {
    let dir = config.parent().unwrap_or(Path::new("."));
    Command::new(BIN).current_dir(dir).args(args).arg("--config").arg(config).output().unwrap()
}

fn sync(config: &Path) -> Output {
    dynashift(&["sync", "--once"], config)
}

fn duckdb_tables(dir: &Path) -> support::Tables {
    let mut warehouse = DuckDbWarehouse::open(&dir.join("out.duckdb"), "dynamodb").unwrap();
    support::read_back(&mut warehouse)
}

#[test]
fn a_landing_table_read_into_duckdb_equals_the_model_and_keeps_what_is_not_json() {
    let server = PgServer::start();
    let url = server.create_db("landing");
    create_landing(&server, "landing", "BYTEA");
    // bytea printed in PostgreSQL's escape form would pass for text records: read in hex.
    server.exec("landing", "ALTER DATABASE landing SET bytea_output = 'escape'");
    let (lines, model) = workload(6_000, 900, 21);
    let (first, rest) = lines.split_at(4_000);
    let rows = landed(&lines);
    insert(&server, "landing", &rows[..first.len()], 1, false);
    // A record that is not JSON: kept by the view (no CAN_JSON_PARSE filter), rejected here.
    server.exec(
        "landing",
        "INSERT INTO kds.ddb_changes (shard_id, sequence_number, kinesis_data) \
         VALUES ('shardId-000000000001', '5', 'not json at all'::bytea)",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &url,
        "kind = \"duckdb\"\npath = \"out.duckdb\"",
        "[defaults]\nbatch_size = 1000\n",
    );
    let check = dynashift(&["check"], &config);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("source: kds.ddb_changes is readable and holds shard_id"),
        "{}",
        text(&check)
    );
    let out = sync(&config);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(support::count_before(&text(&out), " rejected"), Some(1), "{}", text(&out));

    // The rest of the history lands later; the next pass reads only it.
    insert(&server, "landing", &rows[first.len()..], 2, false);
    let again = sync(&config);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        support::count_before(&text(&again), " records in"),
        Some(rest.len() as u64),
        "only the rows landed since are read: {}",
        text(&again)
    );
    assert_eq!(support::count_before(&text(&again), " rejected"), Some(0), "{}", text(&again));
    support::assert_tables_equal(&duckdb_tables(dir.path()), &support::expected_model(&model));
}

#[test]
fn killed_and_restarted_into_postgres_ends_at_the_model() {
    let server = PgServer::start();
    let source_url = server.create_db("landed");
    let target_url = server.create_db("target");
    create_landing(&server, "landed", "TEXT");
    let (lines, model) = workload(8_000, 1_200, 22);
    let rows = landed(&lines);
    insert(&server, "landed", &rows, 3, true);
    let total = rows.len();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &source_url,
        &format!("kind = \"postgres\"\nurl = \"{target_url}\""),
        "[defaults]\nbatch_size = 300\nmax_batch_records = 300\n",
    );
    let mut progress = || {
        let exists =
            server.query("target", "SELECT CAST(to_regclass('_dynashift.runs') IS NOT NULL AS TEXT)");
        if exists[0].as_deref() != Some("true") {
            return 0;
        }
        let sum =
            server.query("target", "SELECT CAST(COALESCE(SUM(records), 0) AS TEXT) FROM _dynashift.runs");
        sum[0].as_deref().unwrap_or("0").parse().unwrap()
    };
    // One pass each (`sync --once`), so a round that finishes the work ends by itself.
    let command = || {
        let mut command = Command::new(BIN);
        command.args(["sync", "--once", "--config"]).arg(&config);
        command
    };
    let landed = support::kill_and_restart_command(&command, 10, 7, total, &mut progress);
    eprintln!("{landed} of 10 kills landed between commits");
    assert!(landed >= 5, "only {landed} of 10 kills landed inside the work");
    let out = sync(&config);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(progress(), total, "every landed row read exactly once");
    let settings = PgSettings::parse(&target_url, "PGPASSWORD", "dynamodb").unwrap();
    let mut warehouse = PostgresWarehouse::open(settings).unwrap();
    support::assert_tables_equal(&support::read_back(&mut warehouse), &support::expected_model(&model));
}

#[test]
fn a_view_without_the_raw_record_is_refused_naming_what_is_missing() {
    let server = PgServer::start();
    let url = server.create_db("reference");
    // The reference design's view keeps JSON_PARSE(kinesis_data) as `payload`, not the bytes.
    server.exec(
        "reference",
        "CREATE SCHEMA kds; CREATE TABLE kds.ddb_changes (approximate_arrival_timestamp TIMESTAMPTZ, \
         partition_key VARCHAR(256), shard_id VARCHAR(128), sequence_number VARCHAR(128), \
         refresh_time TIMESTAMPTZ, payload TEXT)",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &url, "kind = \"duckdb\"\npath = \"out.duckdb\"", "");
    for command in ["sync", "check"] {
        let args: &[&str] = if command == "sync" { &["sync", "--once"] } else { &["check"] };
        let out = dynashift(args, &config);
        assert!(!out.status.success(), "{command}: {}", text(&out));
        let message = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(message.trim().lines().count(), 1, "{command}: {message}");
        assert!(message.contains("kds.ddb_changes lacks the column(s) kinesis_data"), "{command}: {message}");
    }
}

/// `run` follows the view: rows landed while it runs are applied, and SIGINT stops it at once.
#[test]
fn run_follows_the_view_and_stops_cleanly_on_sigint() {
    let server = PgServer::start();
    let source_url = server.create_db("live");
    let target_url = server.create_db("applied");
    create_landing(&server, "live", "varbyte");
    let (lines, model) = workload(1_500, 300, 23);
    let rows = landed(&lines);
    let (first, later) = rows.split_at(1_000);
    insert(&server, "live", first, 4, false);
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(dir.path(), &source_url, &format!("kind = \"postgres\"\nurl = \"{target_url}\""), "");
    let mut command = Command::new(BIN);
    command.args(["run", "--config"]).arg(&config);
    let mut run = support::Watched::start(command);
    assert!(run.wait_commits(1), "the run ended: {}", run.log());
    insert(&server, "live", later, 5, false);
    let applied = || {
        let sum =
            server.query("applied", "SELECT CAST(COALESCE(SUM(records), 0) AS TEXT) FROM _dynashift.runs");
        sum[0].as_deref().unwrap_or("0").parse::<usize>().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while applied() < rows.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(applied(), rows.len(), "the rows landed later were not all applied: {}", run.log());
    // Idle now: the view is asked again only after a rest, which a stop does not wait out.
    std::thread::sleep(std::time::Duration::from_secs(3));
    run.interrupt_promptly();
    let settings = PgSettings::parse(&target_url, "PGPASSWORD", "dynamodb").unwrap();
    let mut warehouse = PostgresWarehouse::open(settings).unwrap();
    support::assert_tables_equal(&support::read_back(&mut warehouse), &support::expected_model(&model));
}

/// Without a `url`, the view is read over the Redshift target's own connection and login: here
/// IAM credentials from `GetClusterCredentials` (moto), for a user that exists on the server
/// only under its IAM name, while the user in the connection string does not exist at all.
#[test]
fn without_a_url_the_view_is_read_over_the_redshift_targets_iam_login() {
    let moto = support::moto::MotoServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sdk = rt.block_on(dynashift::aws::sdk_config(&moto.aws_settings()));
    moto.create_redshift_cluster("analytics");
    rt.block_on(dynashift::aws::s3_client(&sdk, &moto.aws_settings()).create_bucket().bucket("stage").send())
        .unwrap();
    let server = PgServer::start();
    server.create_db("dev");
    create_landing(&server, "dev", "BYTEA");
    let port = server.url("dev").split("port=").nth(1).unwrap().split(' ').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mv.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nkind = \"redshift-mv\"\nview = \"{VIEW}\"\n\n[target]\nkind = \"redshift\"\n\
             url = \"host=127.0.0.1 port={port} dbname=dev user=nobody connect_timeout=5\"\n\
             auth = \"cluster\"\ncluster_identifier = \"analytics\"\ndb_user = \"replicator\"\n\
             s3_staging = \"s3://stage/dynashift/\"\ncopy_role = \"arn:aws:iam::123456789012:role/copy\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    let check = || {
        Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap()
    };
    let refused = check();
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("IAM:replicator"),
        "the IAM user was not the one logging in: {}",
        text(&refused)
    );
    server.exec(
        "dev",
        "CREATE ROLE \"IAM:replicator\" LOGIN; GRANT USAGE ON SCHEMA kds TO \"IAM:replicator\"; \
                        GRANT SELECT ON kds.ddb_changes TO \"IAM:replicator\"",
    );
    let out = check();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("source: kds.ddb_changes is readable and holds shard_id"), "{}", text(&out));

    // A target that cannot lend its connection needs a url.
    std::fs::write(&path, format!("[source]\nkind = \"redshift-mv\"\nview = \"{VIEW}\"\n[target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n")).unwrap();
    let out = check();
    assert!(!out.status.success());
    assert!(text(&out).contains("source.url"), "{}", text(&out));
}

/// A Redshift target reached through the Data API lends that too: the view is read through
/// the Data API (VARBYTE arrives as hex text) and the changes applied through it, every call
/// within Redshift's documented rules.
#[test]
fn through_the_data_api_the_view_is_read_and_applied_to_the_model() {
    use support::redshift_rules::{assert_conforms, RedshiftRules};
    let server = PgServer::start();
    server.create_db("dev");
    create_landing(&server, "dev", "BYTEA");
    let (mut lines, model) = workload(3_000, 400, 23);
    // Records larger than one row of a Data API result (64 KB, twice that as hex) come in
    // pieces: two items of a table of their own, 100 KB and 250 KB.
    for (id, size) in [("big-1", 100_000), ("big-2", 250_000)] {
        let mut record: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        record["tableName"] = "BigItems".into();
        record["eventName"] = "INSERT".into();
        record["dynamodb"]["Keys"] = serde_json::json!({ "id": { "S": id } });
        // In parts of 20,000 bytes: a warehouse text value holds at most 65,535.
        let mut image = serde_json::json!({ "id": { "S": id } });
        for part in 0..size / 20_000 {
            image[format!("part{part}")] = serde_json::json!({ "S": "é".repeat(10_000) });
        }
        record["dynamodb"]["NewImage"] = image;
        record["dynamodb"].as_object_mut().unwrap().remove("OldImage");
        lines.push(record.to_string());
    }
    insert(&server, "dev", &landed(&lines), 4, false);
    let moto = support::moto::MotoServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sdk = rt.block_on(dynashift::aws::sdk_config(&moto.aws_settings()));
    rt.block_on(dynashift::aws::s3_client(&sdk, &moto.aws_settings()).create_bucket().bucket("stage").send())
        .unwrap();
    let api = support::data_api::DataApiStandIn::start(&server.url("dev"), &moto.endpoint());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mv.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nkind = \"redshift-mv\"\nview = \"{VIEW}\"\npage_rows = 400\n\n\
             [target]\nkind = \"redshift\"\nconnection = \"data-api\"\ndatabase = \"dev\"\n\
             cluster_identifier = \"analytics\"\ndb_user = \"replicator\"\n\
             s3_staging = \"s3://stage/dynashift/\"\ncopy_role = \"arn:aws:iam::123456789012:role/copy\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\ndata_api_endpoint_url = \"{}\"\n\
             [defaults]\nbatch_size = 1000\n",
            moto.endpoint(),
            api.endpoint()
        ),
    )
    .unwrap();
    let out = sync(&path);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(support::count_before(&text(&out), " records in"), Some(lines.len() as u64), "{}", text(&out));
    let settings = PgSettings::parse(&server.url("dev"), "PGPASSWORD", "dynamodb").unwrap();
    let mut warehouse = PostgresWarehouse::open(settings).unwrap();
    let mut actual = support::read_back(&mut warehouse);
    let big = actual.remove("BigItems").expect("the large records' table");
    assert_eq!(big.len(), 2);
    let sizes = server.query(
        "dev",
        "SELECT CONCAT(id, ':', COALESCE(OCTET_LENGTH(part4), 0), ':', COALESCE(OCTET_LENGTH(part11), 0)) \
         FROM dynamodb.big_items ORDER BY id",
    );
    let expected = ["big-1:20000:0", "big-2:20000:20000"].map(|s| Some(s.to_string())).to_vec();
    assert_eq!(sizes, expected, "the large records, whole");
    support::assert_tables_equal(&actual, &support::expected_model(&model));
    let mut rules = RedshiftRules::new();
    let calls = api.calls();
    assert!(
        calls.iter().flatten().any(|sql| sql.contains("ORDER BY LENGTH(sequence_number)")),
        "the view was not read through the Data API"
    );
    assert!(
        calls.iter().flatten().any(|sql| sql.contains("SELECT SUBSTRING(kinesis_data")),
        "no record was read in pieces"
    );
    let violations: Vec<_> = calls.iter().flat_map(|c| rules.check_call(c)).collect();
    assert_conforms(&violations);
}

/// Per-table schedules hold with this source too: a paused table's changes are read and held,
/// its positions kept back, so a later pass that applies every table ends at the model.
#[test]
fn a_paused_table_is_held_and_applied_later_from_the_view() {
    let server = PgServer::start();
    let url = server.create_db("landing");
    create_landing(&server, "landing", "BYTEA");
    let (lines, model) = workload(3_000, 500, 24);
    insert(&server, "landing", &landed(&lines), 5, false);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &url,
        "kind = \"duckdb\"\npath = \"out.duckdb\"",
        "[tables.\"Orders\"]\npaused = true\n",
    );
    let out = sync(&config);
    assert!(out.status.success(), "{}", text(&out));
    let held = duckdb_tables(dir.path());
    assert!(!held.contains_key("Orders"), "a paused table was applied");
    assert!(held.contains_key("UserSessions"), "the other tables were not applied: {}", text(&out));
    let all = dynashift(&["sync", "--once", "--all"], &config);
    assert!(all.status.success(), "{}", text(&all));
    support::assert_tables_equal(&duckdb_tables(dir.path()), &support::expected_model(&model));
}

/// `refresh = true` refreshes the view before each pass, for a view without auto refresh: a
/// PostgreSQL materialized view over the landing table stands in for it. Without the refresh
/// the rows landed since stay unseen.
#[test]
fn refresh_true_refreshes_the_view_before_each_pass() {
    let server = PgServer::start();
    let url = server.create_db("refreshed");
    create_landing(&server, "refreshed", "BYTEA");
    server.exec(
        "refreshed",
        "CREATE SCHEMA cdc; CREATE MATERIALIZED VIEW cdc.changes AS SELECT * FROM kds.ddb_changes",
    );
    let (lines, model) = workload(2_000, 300, 25);
    let rows = landed(&lines);
    let (first, rest) = rows.split_at(1_200);
    insert(&server, "refreshed", first, 6, false);
    let dir = tempfile::tempdir().unwrap();
    let config = |refresh: bool| {
        let path = dir.path().join(format!("refresh-{refresh}.toml"));
        std::fs::write(
            &path,
            format!(
                "[source]\nkind = \"redshift-mv\"\nview = \"cdc.changes\"\nurl = \"{url}\"\nrefresh = {refresh}\n\n\
                 [target]\nkind = \"duckdb\"\npath = \"out.duckdb\"\n"
            ),
        )
        .unwrap();
        path
    };
    let records = |out: &Output| support::count_before(&text(out), " records in");
    let unrefreshed = sync(&config(false));
    assert!(unrefreshed.status.success(), "{}", text(&unrefreshed));
    assert_eq!(
        records(&unrefreshed),
        Some(0),
        "rows were read from a view never refreshed: {}",
        text(&unrefreshed)
    );
    let out = sync(&config(true));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(records(&out), Some(first.len() as u64), "{}", text(&out));
    insert(&server, "refreshed", rest, 7, false);
    let out = sync(&config(true));
    assert_eq!(records(&out), Some(rest.len() as u64), "{}", text(&out));
    support::assert_tables_equal(&duckdb_tables(dir.path()), &support::expected_model(&model));
}
