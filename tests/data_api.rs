//! The Redshift Data API path end to end: the product's own AWS SDK client against a Data API
//! stand-in on loopback (`support::data_api`, executing on a throwaway PostgreSQL, staging
//! through moto's S3). Generated histories land equal to their model in every column mode; a
//! killed run resumes; a statement that outlives `statement_timeout_secs` is cancelled and sent
//! again; throttling and serialization conflicts are ridden out; large rejects are kept in S3.
//! Every call the stand-in receives is checked against Redshift's documented rules.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use dynashift::aws::{s3_client, sdk_config};
use dynashift::config::Config;
use dynashift::pipeline::Pipeline;
use dynashift::warehouse::data_api::{DataApiOptions, DataApiTarget, DataApiWarehouse};
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift::warehouse::s3_stage::S3Location;
use dynashift_core::types::ColumnMode;
use dynashift_testkit::{Model, WorkloadSpec};
use support::data_api::DataApiStandIn;
use support::generate;
use support::moto::MotoServer;
use support::pg::PgServer;
use support::redshift_rules::{assert_conforms, RedshiftRules};

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");
const DB: &str = "dev";

struct Env {
    server: PgServer,
    moto: MotoServer,
    api: DataApiStandIn,
}

fn start() -> Env {
    let server = PgServer::start();
    server.create_db(DB);
    let moto = MotoServer::start();
    let settings = moto.aws_settings();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = s3_client(&sdk_config(&settings).await, &settings);
        client.create_bucket().bucket("stage-bucket").send().await.unwrap();
    });
    let api = DataApiStandIn::start(&server.url(DB), &moto.endpoint());
    Env { server, moto, api }
}

fn options(env: &Env, timeout: Duration) -> DataApiOptions {
    DataApiOptions {
        target: DataApiTarget {
            database: DB.into(),
            cluster_identifier: Some("analytics".into()),
            workgroup: None,
            db_user: Some("replicator".into()),
            secret_arn: None,
            schema: "dynamodb".into(),
            statement_timeout: timeout,
        },
        aws: env.moto.aws_settings(),
        data_api_endpoint_url: Some(env.api.endpoint()),
        staging: S3Location::parse("s3://stage-bucket/dynashift/").unwrap(),
        copy_role: "arn:aws:iam::123456789012:role/copy".into(),
        s3_region: None,
        part_rows: 40,
    }
}

fn config(mode: ColumnMode) -> Config {
    let text = format!(
        "[source]\nkind = \"file\"\npath = \"-\"\n[target]\nkind = \"duckdb\"\npath = \":memory:\"\n\
         [defaults]\ncolumns = \"{}\"\n",
        mode.as_str()
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

/// Every call the stand-in received, checked against Redshift's rules; how many.
fn assert_calls_conform(api: &DataApiStandIn) -> usize {
    let mut rules = RedshiftRules::new();
    let calls = api.calls();
    let violations: Vec<_> = calls.iter().flat_map(|c| rules.check_call(c)).collect();
    assert_conforms(&violations);
    calls.len()
}

/// The replicated tables, read back over PostgreSQL, against the model.
fn assert_equals_model(env: &Env, model: &Model, mode: ColumnMode) {
    let settings = PgSettings::parse(&env.server.url(DB), "PGPASSWORD", "dynamodb").unwrap();
    let mut reader = PostgresWarehouse::open(settings).unwrap();
    let actual = support::read_back(&mut reader);
    let keys: BTreeMap<String, Vec<String>> = [
        ("Orders".to_string(), vec!["orderId".to_string()]),
        ("UserSessions".to_string(), vec!["startedAt".to_string(), "userId".to_string()]),
        ("device-metrics".to_string(), vec!["deviceId".to_string()]),
    ]
    .into();
    let expected = support::with_last_changes(support::expected(&model.tables, mode, &keys), model);
    support::assert_tables_equal(&actual, &expected);
}

fn reset(env: &Env) {
    env.server.exec(DB, "DROP SCHEMA IF EXISTS dynamodb CASCADE; DROP SCHEMA IF EXISTS _dynashift CASCADE");
}

/// Generated histories (inserts, updates that change types, deletes, TTL expiries, duplicates,
/// out of order) through the real SDK client and the stand-in, in every column mode, in
/// batches that each span several calls: the tables equal the model.
#[test]
fn histories_through_the_data_api_equal_the_model() {
    let env = start();
    for (seed, mode) in [(11, ColumnMode::Typed), (12, ColumnMode::Varchar), (13, ColumnMode::Document)] {
        reset(&env);
        let spec = WorkloadSpec { records: 1_500, keys: 150, seed, ..WorkloadSpec::w1() };
        let (lines, model) = generate(&spec, seed % 2 == 0);
        let warehouse = DataApiWarehouse::open(options(&env, Duration::from_secs(60))).unwrap();
        let mut pipeline = Pipeline::new(config(mode), warehouse).unwrap();
        for chunk in support::records(&lines).chunks(400) {
            pipeline.process(chunk.to_vec()).unwrap();
        }
        assert_eq!(pipeline.summary.rejects, 0);
        assert_equals_model(&env, &model, mode);
    }
    let calls = assert_calls_conform(&env.api);
    let stats = env.api.stats();
    assert!(calls >= 12 && stats.finished == calls, "{calls} calls, {stats:?}");
}

/// Throttled requests, a statement held past `statement_timeout_secs` (cancelled and sent
/// again) and two serialization conflicts at commit: the batch still lands once.
#[test]
fn throttling_timeouts_and_conflicts_are_ridden_out() {
    let env = start();
    let spec = WorkloadSpec { records: 600, keys: 60, seed: 21, ..WorkloadSpec::w1() };
    let (lines, model) = generate(&spec, true);
    let warehouse = DataApiWarehouse::open(options(&env, Duration::from_secs(2))).unwrap();
    let mut pipeline = Pipeline::new(config(ColumnMode::Typed), warehouse).unwrap();
    env.server.exec(DB, support::redshift_on_pg::CONFLICTS_AT_COMMIT);
    env.api.throttle_next(3);
    env.api.hold_next(1, Duration::from_secs(6));
    pipeline.process(support::records(&lines)).unwrap();
    let stats = env.api.stats();
    assert_eq!(stats.throttled, 3, "{stats:?}");
    assert!(stats.cancelled >= 1 && stats.aborted >= 1, "the held statement was not cancelled: {stats:?}");
    assert!(stats.failed >= 2, "the conflicts did not fail their calls: {stats:?}");
    assert_eq!(env.server.query(DB, "SELECT last_value FROM public.conflicts"), vec![Some("3".to_string())]);
    assert_eq!(env.server.query(DB, "SELECT COUNT(*) FROM _dynashift.runs"), vec![Some("1".to_string())]);
    assert_equals_model(&env, &model, ColumnMode::Typed);
    assert_calls_conform(&env.api);
}

/// Records too large for a reject row, values over Redshift's VARCHAR and values holding
/// U+0000: each is recorded, the large ones kept whole in S3, and the batch commits.
#[test]
fn large_and_unstorable_values_are_kept() {
    let env = start();
    let warehouse = DataApiWarehouse::open(options(&env, Duration::from_secs(60))).unwrap();
    let mut pipeline = Pipeline::new(config(ColumnMode::Typed), warehouse).unwrap();
    let garbage = format!("{{\"broken\": \"{}", "x".repeat(30_000));
    let long = "é".repeat(40_000);
    let item = format!(
        r#"{{"eventName":"INSERT","tableName":"Docs","dynamodb":{{"ApproximateCreationDateTime":1764000000000,"Keys":{{"id":{{"S":"a"}}}},"NewImage":{{"id":{{"S":"a"}},"long":{{"S":"{long}"}},"nul":{{"S":"x\u0000y"}}}}}}}}"#
    );
    pipeline.process(support::records(&[garbage.clone(), item])).unwrap();
    let rows = |sql: &str| env.server.query(DB, sql);
    assert_eq!(rows("SELECT COUNT(*) FROM _dynashift.rejects"), vec![Some("3".to_string())]);
    let kept = rows("SELECT raw_text FROM _dynashift.rejects WHERE shard = 's'").remove(0).unwrap();
    let url = kept.split(" are kept at ").nth(1).and_then(|u| u.strip_suffix(')')).expect(&kept);
    let key = url.strip_prefix("s3://stage-bucket/").unwrap();
    let settings = env.moto.aws_settings();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = rt.block_on(async {
        let client = s3_client(&sdk_config(&settings).await, &settings);
        let o = client.get_object().bucket("stage-bucket").key(key).send().await.unwrap();
        o.body.collect().await.unwrap().into_bytes().to_vec()
    });
    assert_eq!(body, garbage.as_bytes(), "the rejected record is kept whole");
    let stored = rows("SELECT octet_length(long) || ' ' || nul FROM dynamodb.docs");
    assert_eq!(stored, vec![Some("65534 x\u{FFFD}y".to_string())]);
    let reasons = rows("SELECT reason FROM _dynashift.rejects WHERE shard <> 's' ORDER BY reason");
    assert!(reasons[0].as_deref().unwrap().contains("over Redshift's 65,535-byte limit"), "{reasons:?}");
    assert!(reasons[1].as_deref().unwrap().contains("U+0000"), "{reasons:?}");
    assert_calls_conform(&env.api);
}

/// The binary, through the Data API, SIGKILLed at random moments and restarted: it ends at the
/// model with every record consumed exactly once.
#[test]
fn a_killed_data_api_run_resumes() {
    let env = start();
    let dir = tempfile::tempdir().unwrap();
    // Sixteen batches of 500 records: eight kills, each a moment after a commit, land inside.
    let spec = WorkloadSpec { records: 8_000, keys: 300, seed: 31, ..WorkloadSpec::w1() };
    let (lines, model) = generate(&spec, false);
    let input = dir.path().join("changes.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let config = dir.path().join("data-api.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = {:?}\n\
             [target]\nkind = \"redshift\"\nconnection = \"data-api\"\ndatabase = \"{DB}\"\n\
             cluster_identifier = \"analytics\"\ndb_user = \"replicator\"\n\
             s3_staging = \"s3://stage-bucket/dynashift/\"\ncopy_role = \"arn:aws:iam::123456789012:role/copy\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\ndata_api_endpoint_url = \"{}\"\n\
             [defaults]\nbatch_size = 250\nmax_batch_records = 500\n",
            input.display().to_string(),
            env.moto.endpoint(),
            env.api.endpoint()
        ),
    )
    .unwrap();
    let mut progress = || {
        let exists = env.server.query(DB, "SELECT CAST(to_regclass('_dynashift.runs') IS NOT NULL AS TEXT)");
        if exists[0].as_deref() != Some("true") {
            return 0;
        }
        let sum = env.server.query(DB, "SELECT CAST(COALESCE(SUM(records), 0) AS TEXT) FROM _dynashift.runs");
        sum[0].as_deref().unwrap_or("0").parse().unwrap()
    };
    let landed = support::kill_and_restart(BIN, &config, 8, 5, lines.len(), &mut progress);
    eprintln!("{landed} of 8 kills landed between commits, with progress made since the kill before");
    assert!(landed >= 6, "only {landed} of 8 kills landed inside the work");
    let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_equals_model(&env, &model, ColumnMode::Typed);
    let consumed = env.server.query(DB, "SELECT SUM(records) FROM _dynashift.runs");
    assert_eq!(consumed, vec![Some(lines.len().to_string())], "records consumed across committed batches");
    assert_calls_conform(&env.api);
}
