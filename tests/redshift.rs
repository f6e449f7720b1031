//! Redshift's S3 staging against a real S3 API (moto server on loopback): the objects, their
//! gzip JSON lines, the manifest, values too long for a Redshift VARCHAR, and the cleanup;
//! temporary credentials; and the Data API calls as far as the emulator implements them.
#![cfg(feature = "duckdb")]

mod support;

use std::io::Read;

use dynashift::aws::{s3_client, sdk_config};
use dynashift::warehouse::data_api::{DataApiOptions, DataApiTarget, DataApiWarehouse};
use dynashift::warehouse::s3_stage::{encode, S3Location, S3Stager, StagedFix};
use dynashift::warehouse::Warehouse;
use dynashift_core::change::{Change, EventKind, Position, Version};
use dynashift_core::dialect::{Dialect as _, Redshift};
use dynashift_core::plan::{plan_table, TableOptions};
use dynashift_core::schema::Catalog;
use dynashift_core::value::{key_text, AttrValue, Item};
use support::moto::MotoServer;

fn change(id: &str, attrs: Vec<(&str, AttrValue)>) -> Change {
    let mut keys = Item::new();
    keys.insert("id".into(), AttrValue::S(id.into()));
    let mut image = keys.clone();
    image.extend(attrs.into_iter().map(|(k, v)| (k.to_string(), v)));
    Change {
        table: "Docs".into(),
        key_text: key_text(&keys),
        keys,
        new_image: Some(image),
        old_image: None,
        event: EventKind::Insert,
        version: Version::new(1_764_000_000_000_000, None),
        position: Position::new("s", "1"),
        ids: Default::default(),
    }
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut out).unwrap();
    out
}

#[test]
fn batches_are_staged_as_gzip_json_lines_with_a_manifest_and_removed() {
    let moto = MotoServer::start();
    let settings = moto.aws_settings();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = rt.block_on(sdk_config(&settings));
    let client = s3_client(&config, &settings);
    rt.block_on(client.create_bucket().bucket("stage-bucket").send()).unwrap();

    let long_text = "é".repeat(40_000); // 80,000 bytes: cut to 65,534
    let changes = vec![
        change(
            "a",
            vec![("note", AttrValue::S(String::new().into())), ("bin", AttrValue::B(vec![0, 1, 254, 255]))],
        ),
        change(
            "b",
            vec![("note", AttrValue::S(long_text.clone().into())), ("bin", AttrValue::B(vec![7; 40_000]))],
        ),
        change("c", vec![("note", AttrValue::S("quote \" and \\ backslash".into()))]),
    ];
    let mut catalog = Catalog::default();
    let plan = plan_table(&mut catalog, "Docs", changes, TableOptions::default(), Redshift.limits());
    let schema = &catalog.tables["Docs"];
    let types: Vec<_> = plan.staged.iter().map(|&i| schema.columns[i].ty).collect();
    let encoded = encode(&plan, &types, 2).unwrap();
    assert_eq!(encoded.parts.len(), 2, "three rows at two per part");
    assert_eq!(
        encoded.oversize.len(),
        2,
        "{:?}",
        encoded.oversize.iter().map(|o| o.bytes).collect::<Vec<_>>()
    );
    assert!(encoded
        .oversize
        .iter()
        .any(|o| o.fix == StagedFix::Cut && o.bytes == 80_000 && o.original == long_text));
    assert!(
        encoded.oversize.iter().any(|o| o.fix == StagedFix::Null && o.bytes == 80_000),
        "hex of 40,000 bytes cannot be cut"
    );

    let location = S3Location::parse("s3://stage-bucket/dynashift/").unwrap();
    let stager = S3Stager::new(client.clone(), location);
    let staged = rt.block_on(stager.upload(1, 0, &encoded)).unwrap();
    assert!(
        staged.manifest_url.starts_with("s3://stage-bucket/dynashift/")
            && staged.manifest_url.ends_with("/manifest.json")
    );

    let get = |key: &str| -> Vec<u8> {
        rt.block_on(async {
            let o = client.get_object().bucket("stage-bucket").key(key).send().await.unwrap();
            o.body.collect().await.unwrap().into_bytes().to_vec()
        })
    };
    let manifest: serde_json::Value = serde_json::from_slice(&get(staged.keys.last().unwrap())).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let mut rows = Vec::new();
    for (entry, key) in entries.iter().zip(&staged.keys) {
        assert_eq!(entry["url"], format!("s3://stage-bucket/{key}"));
        assert_eq!(entry["mandatory"], true);
        for line in gunzip(&get(key)).lines() {
            rows.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    assert_eq!(rows.len(), 3);
    let column = |attr: &str| {
        let i = schema.columns.iter().position(|c| c.attribute.as_deref() == Some(attr)).unwrap();
        format!("c{}", plan.staged.iter().position(|&s| s == i).unwrap())
    };
    let (note, bin) = (column("note"), column("bin"));
    assert_eq!(rows[0][&note], "", "an empty string stays a string, not NULL");
    assert_eq!(rows[0][&bin], "0001feff", "binary travels as hex");
    assert_eq!(rows[0]["_ddb_event"], "INSERT");
    assert_eq!(rows[0]["_ddb_deleted"], false);
    assert_eq!(rows[1][&note].as_str().unwrap().len(), 65_534);
    assert!(rows[1][&bin].is_null(), "oversized hex is staged as NULL and reported");
    assert!(rows[2][&bin].is_null(), "an absent attribute is NULL");
    assert_eq!(rows[2][&note], "quote \" and \\ backslash");

    rt.block_on(stager.remove(&staged.keys)).unwrap();
    let left = rt.block_on(client.list_objects_v2().bucket("stage-bucket").send()).unwrap();
    assert_eq!(left.key_count(), Some(0), "staged objects are deleted");

    // A missing bucket is an error naming the location, not a panic or a silent skip.
    let missing = S3Stager::new(client.clone(), S3Location::parse("s3://no-such-bucket/x/").unwrap());
    let e = rt.block_on(missing.upload(2, 0, &encoded)).unwrap_err().to_string();
    assert!(e.contains("s3://no-such-bucket/x/") && e.contains("NoSuchBucket"), "{e}");
}

fn aws_sdk(rt: &tokio::runtime::Runtime, moto: &MotoServer) -> aws_config::SdkConfig {
    rt.block_on(sdk_config(&moto.aws_settings()))
}

/// IAM logins: the temporary user and password come from `GetClusterCredentials`; a cluster
/// that does not exist is an error that names it.
#[test]
fn cluster_credentials_come_from_get_cluster_credentials() {
    use dynashift::warehouse::redshift::{temporary_credentials, RedshiftAuth};
    let moto = MotoServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sdk = aws_sdk(&rt, &moto);
    moto.create_redshift_cluster("analytics");
    let auth = RedshiftAuth::Cluster {
        cluster_identifier: "analytics".into(),
        db_user: "replicator".into(),
        auto_create: false,
    };
    let (user, password) = rt.block_on(temporary_credentials(&auth, &sdk, Some("dev"))).unwrap().unwrap();
    assert!(user.ends_with("replicator"), "{user}");
    assert!(!password.is_empty());

    let missing = RedshiftAuth::Cluster {
        cluster_identifier: "no-such-cluster".into(),
        db_user: "replicator".into(),
        auto_create: false,
    };
    let e = rt.block_on(temporary_credentials(&missing, &sdk, None)).unwrap_err().to_string();
    assert!(e.contains("no-such-cluster") && e.contains("ClusterNotFound"), "{e}");
    assert!(rt.block_on(temporary_credentials(&RedshiftAuth::Password, &sdk, None)).unwrap().is_none());
}

/// Runs `dynashift check` on `config`, which must fail with one line on stderr; that line.
fn failed_check(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rs.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dynashift"))
        .args(["check", "--config"])
        .arg(&path)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    message
}

/// `check` against a Redshift endpoint that does not answer: one line, non-zero, naming it.
#[test]
fn unreachable_redshift_is_one_clear_line() {
    let moto = MotoServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let message = failed_check(&format!(
            "[source]\nkind = \"file\"\npath = \"-\"\n[target]\nkind = \"redshift\"\n\
             url = \"host=127.0.0.1 port={port} dbname=dev user=replicator connect_timeout=2\"\n\
             s3_staging = \"s3://stage-bucket/dynashift/\"\ncopy_role = \"arn:aws:iam::123456789012:role/copy\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            moto.endpoint()
        ));
    assert!(message.contains(&format!("cannot connect to Redshift at 127.0.0.1:{port}/dev")), "{message}");
}

fn data_api_options(moto: &MotoServer, timeout: std::time::Duration) -> DataApiOptions {
    DataApiOptions {
        target: DataApiTarget {
            database: "dev".into(),
            cluster_identifier: Some("analytics".into()),
            workgroup: None,
            db_user: Some("replicator".into()),
            secret_arn: None,
            schema: "dynamodb".into(),
            statement_timeout: timeout,
        },
        aws: moto.aws_settings(),
        data_api_endpoint_url: None,
        staging: S3Location::parse("s3://stage-bucket/dynashift/").unwrap(),
        copy_role: "arn:aws:iam::123456789012:role/copy".into(),
        s3_region: None,
        part_rows: 100,
    }
}

/// A Data API read goes out as `ExecuteStatement`; when the answer cannot be read (the
/// emulator writes timestamps the API does not), the error names the call, the cluster and
/// the reason — not an empty "error:".
#[test]
fn data_api_unreadable_answers_say_why() {
    let moto = MotoServer::start();
    let mut warehouse =
        DataApiWarehouse::open(data_api_options(&moto, std::time::Duration::from_secs(1))).unwrap();
    let err = warehouse.load_checkpoints("kinesis:orders'; --").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ExecuteStatement on Redshift cluster analytics (Data API)"), "{text}");
    assert!(text.contains("found `"), "the reason is missing: {text}");
    assert!(err.is_transient(), "{text}");
}

/// `check` through the Data API when the service's answer cannot be used: one line naming
/// the call and the cluster, non-zero exit. (`check` only reads, so its first call is an
/// `ExecuteStatement`, whose answer the emulator writes with timestamps the API does not use.)
#[test]
fn data_api_refusals_are_one_clear_line() {
    let moto = MotoServer::start();
    let message = failed_check(&format!(
            "[source]\nkind = \"file\"\npath = \"-\"\n[target]\nkind = \"redshift\"\nconnection = \"data-api\"\n\
             database = \"dev\"\ncluster_identifier = \"analytics\"\ndb_user = \"replicator\"\n\
             statement_timeout_secs = 2\n\
             s3_staging = \"s3://stage-bucket/dynashift/\"\ncopy_role = \"arn:aws:iam::123456789012:role/copy\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{}\"\n",
            moto.endpoint()
        ));
    assert!(message.contains("ExecuteStatement on Redshift cluster analytics (Data API)"), "{message}");
}
