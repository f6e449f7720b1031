//! The `dynamodb-streams` source end to end against moto server: items written through the
//! real DynamoDB API (puts of every type, updates adding and removing attributes, deletes),
//! read from the tables' streams by `dynashift sync --once`, must leave PostgreSQL equal to a
//! Scan of each table, cell for cell.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Av, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use dynashift::aws::{sdk_config, AwsSettings};
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift_core::types::ColumnMode;
use dynashift_core::value::{key_text, write_json_string, Item};
use support::moto::MotoServer;
use support::pg::PgServer;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

fn typed_json(out: &mut String, v: &Av) {
    let list = |out: &mut String, items: Vec<String>| {
        out.push('[');
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_string(out, s);
        }
        out.push(']');
    };
    let b64 = |b: &Blob| dynashift_core::value::base64_encode(b.as_ref());
    match v {
        Av::S(s) => {
            out.push_str("{\"S\":");
            write_json_string(out, s);
        }
        Av::N(n) => {
            out.push_str("{\"N\":");
            write_json_string(out, n);
        }
        Av::B(b) => {
            out.push_str("{\"B\":");
            write_json_string(out, &b64(b));
        }
        Av::Bool(b) => out.push_str(&format!("{{\"BOOL\":{b}")),
        Av::Null(_) => out.push_str("{\"NULL\":true"),
        Av::Ss(s) => {
            out.push_str("{\"SS\":");
            list(out, s.clone());
        }
        Av::Ns(s) => {
            out.push_str("{\"NS\":");
            list(out, s.clone());
        }
        Av::Bs(s) => {
            out.push_str("{\"BS\":");
            list(out, s.iter().map(b64).collect());
        }
        Av::L(items) => {
            out.push_str("{\"L\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                typed_json(out, item);
            }
            out.push(']');
        }
        Av::M(m) => {
            out.push_str("{\"M\":");
            out.push_str(&object(m));
        }
        other => panic!("unexpected attribute value {other:?}"),
    }
    out.push('}');
}

fn object(m: &HashMap<String, Av>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(&mut out, k);
        out.push(':');
        typed_json(&mut out, v);
    }
    out.push('}');
    out
}

struct Dynamo {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_dynamodb::Client,
}

impl Dynamo {
    fn new(moto: &MotoServer) -> Dynamo {
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let settings = AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(moto.endpoint()),
            profile: None,
            max_attempts: Some(1),
        };
        let config = rt.block_on(sdk_config(&settings));
        Dynamo { rt, client: aws_sdk_dynamodb::Client::new(&config) }
    }

    fn create(&self, table: &str, keys: &[(&str, ScalarAttributeType, KeyType)]) {
        self.create_with_view(table, keys, StreamViewType::NewAndOldImages)
    }

    fn create_with_view(
        &self,
        table: &str,
        keys: &[(&str, ScalarAttributeType, KeyType)],
        view: StreamViewType,
    ) {
        let mut request = self
            .client
            .create_table()
            .table_name(table)
            .provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(5)
                    .write_capacity_units(5)
                    .build()
                    .unwrap(),
            )
            .stream_specification(
                StreamSpecification::builder().stream_enabled(true).stream_view_type(view).build().unwrap(),
            );
        for (name, ty, kind) in keys {
            request = request
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(*name)
                        .attribute_type(ty.clone())
                        .build()
                        .unwrap(),
                )
                .key_schema(
                    KeySchemaElement::builder().attribute_name(*name).key_type(kind.clone()).build().unwrap(),
                );
        }
        self.rt.block_on(request.send()).unwrap();
    }

    fn put(&self, table: &str, item: Vec<(&str, Av)>) {
        let item: HashMap<String, Av> = item.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.rt.block_on(self.client.put_item().table_name(table).set_item(Some(item)).send()).unwrap();
    }

    fn update(&self, table: &str, key: Vec<(&str, Av)>, expression: &str, values: Vec<(&str, Av)>) {
        let key: HashMap<String, Av> = key.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let mut request =
            self.client.update_item().table_name(table).set_key(Some(key)).update_expression(expression);
        for (name, v) in values {
            request = request.expression_attribute_values(name, v);
        }
        self.rt.block_on(request.send()).unwrap();
    }

    fn delete(&self, table: &str, key: Vec<(&str, Av)>) {
        let key: HashMap<String, Av> = key.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.rt.block_on(self.client.delete_item().table_name(table).set_key(Some(key)).send()).unwrap();
    }

    /// The table as a model: key text → item.
    fn scan(&self, table: &str, keys: &[&str]) -> BTreeMap<String, Item> {
        let out = self.rt.block_on(self.client.scan().table_name(table).send()).unwrap();
        out.items()
            .iter()
            .map(|raw| {
                let item = Item::from_typed_json(&object(raw)).unwrap();
                let key: Item = keys.iter().map(|k| (k.to_string(), item.get(k).unwrap().clone())).collect();
                (key_text(&key), item)
            })
            .collect()
    }
}

fn n(s: &str) -> Av {
    Av::N(s.into())
}

fn s(s: &str) -> Av {
    Av::S(s.into())
}

fn sync_output(config: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["sync", "--once", "--config"])
        .arg(config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap()
}

fn sync(config: &std::path::Path) {
    let out = sync_output(config);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A config reading `tables`' streams on `moto` into PostgreSQL at `url`.
fn write_config(dir: &std::path::Path, moto: &MotoServer, tables: &str, url: &str) -> std::path::PathBuf {
    let config = dir.join("streams.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"dynamodb-streams\"\ntables = [{tables}]\nregion = \"us-east-1\"\n\
             endpoint_url = \"{}\"\nflush_interval_ms = 200\n[target]\nkind = \"postgres\"\nurl = \"{url}\"\n",
            moto.endpoint()
        ),
    )
    .unwrap();
    config
}

fn assert_equal_to_scans(url: &str, db: &Dynamo) {
    let mut model: BTreeMap<String, BTreeMap<String, Item>> = BTreeMap::new();
    model.insert("Orders".into(), db.scan("Orders", &["customer", "orderNo"]));
    model.insert("Users".into(), db.scan("Users", &["id"]));
    model.retain(|_, items| !items.is_empty());
    let mut w = PostgresWarehouse::open(PgSettings::parse(url, "PGPASSWORD", "dynamodb").unwrap()).unwrap();
    let actual = support::read_back(&mut w);
    let expected = support::expected(&model, ColumnMode::Typed, &BTreeMap::new());
    support::assert_tables_equal(&actual, &expected);
}

#[test]
fn tables_written_through_the_api_replicate_cell_for_cell() {
    let moto = MotoServer::start();
    let server = PgServer::start();
    let url = server.create_db("streams");
    let db = Dynamo::new(&moto);
    db.create(
        "Orders",
        &[
            ("customer", ScalarAttributeType::S, KeyType::Hash),
            ("orderNo", ScalarAttributeType::N, KeyType::Range),
        ],
    );
    db.create("Users", &[("id", ScalarAttributeType::S, KeyType::Hash)]);

    let every_type = || {
        vec![
            ("customer", s("c-1")),
            ("orderNo", n("1")),
            ("noteText", s("it's \"quoted\"; DROP TABLE x; --")),
            ("amount", n("19.90")),
            ("big", n("12345678901234567890123456789012345678")),
            ("payload", Av::B(Blob::new(vec![0, 1, 2, 255]))),
            ("paid", Av::Bool(true)),
            ("giftWrap", Av::Null(true)),
            ("address", Av::M([("city".to_string(), s("Zürich")), ("zip".to_string(), n("8001"))].into())),
            ("lineItems", Av::L(vec![s("a"), n("2"), Av::L(vec![Av::Bool(false)])])),
            ("tags", Av::Ss(vec!["x".into(), "y".into()])),
            ("sizes", Av::Ns(vec!["1".into(), "2.5".into()])),
            ("blobs", Av::Bs(vec![Blob::new(vec![7]), Blob::new(vec![8, 9])])),
        ]
    };
    db.put("Orders", every_type());
    db.put("Orders", vec![("customer", s("c-1")), ("orderNo", n("2")), ("amount", n("5"))]);
    db.put("Orders", vec![("customer", s("c-2")), ("orderNo", n("1")), ("amount", n("7.25"))]);
    db.put("Users", vec![("id", s("u-1")), ("name", s("Ada")), ("userAge", n("36"))]);
    db.put("Users", vec![("id", s("u-2")), ("name", s("Grace"))]);
    // Updates that add and remove attributes, a type change, deletes.
    db.update(
        "Orders",
        vec![("customer", s("c-1")), ("orderNo", n("2"))],
        "SET isShipped = :t, amount = :v",
        vec![(":t", Av::Bool(true)), (":v", s("five"))],
    );
    db.update(
        "Orders",
        vec![("customer", s("c-1")), ("orderNo", n("1"))],
        "REMOVE giftWrap, lineItems SET noteText = :n",
        vec![(":n", s("changed"))],
    );
    db.delete("Orders", vec![("customer", s("c-2")), ("orderNo", n("1"))]);
    db.update("Users", vec![("id", s("u-2"))], "SET userAge = :a", vec![(":a", n("40"))]);

    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &moto, r#""Orders", "Users""#, &url);
    sync(&config);
    assert_equal_to_scans(&url, &db);

    // More changes; the next pass applies exactly those.
    db.delete("Users", vec![("id", s("u-1"))]);
    db.put("Users", vec![("id", s("u-3")), ("name", s("Edsger")), ("langs", Av::Ss(vec!["ALGOL".into()]))]);
    db.update(
        "Orders",
        vec![("customer", s("c-1")), ("orderNo", n("1"))],
        "SET amount = :v",
        vec![(":v", n("21"))],
    );
    sync(&config);
    assert_equal_to_scans(&url, &db);
    let changes = server.query("streams", "SELECT CAST(SUM(records) AS TEXT) FROM _dynashift.runs");
    // Nine writes before the first pass, three after: one stream record each.
    assert_eq!(changes[0].as_deref(), Some("12"), "every stream record read once");
    // Positions are kept per stream: `<table>/<stream label>/<shard id>`.
    let keys = server.query("streams", "SELECT shard FROM _dynashift.checkpoints WHERE shard NOT LIKE '@%'");
    assert!(!keys.is_empty());
    for key in keys.iter().flatten() {
        assert_eq!(key.split('/').count(), 3, "{key}");
    }
}

/// A stream whose records carry no new image cannot be replicated: one line says so, before
/// anything is read.
#[test]
fn a_keys_only_stream_is_refused_in_one_line() {
    let moto = MotoServer::start();
    let server = PgServer::start();
    let url = server.create_db("keys_only");
    let db = Dynamo::new(&moto);
    db.create_with_view("Events", &[("id", ScalarAttributeType::S, KeyType::Hash)], StreamViewType::KeysOnly);
    db.put("Events", vec![("id", s("e-1"))]);
    let dir = tempfile::tempdir().unwrap();
    let out = sync_output(&write_config(dir.path(), &moto, r#""Events""#, &url));
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("KEYS_ONLY") && message.contains("NEW_AND_OLD_IMAGES"), "{message}");
}

/// `check` with credentials whose policy denies one source call and one staging call (moto's
/// IAM enforcement): it tries every call a run needs, says which are allowed, names each
/// denied action with what to grant, and fails.
#[test]
fn check_names_every_denied_permission() {
    let moto = MotoServer::start();
    let server = PgServer::start();
    server.create_db("dev");
    let db = Dynamo::new(&moto);
    db.create("Orders", &[("id", ScalarAttributeType::S, KeyType::Hash)]);
    db.put("Orders", vec![("id", s("o-1"))]);
    let settings = moto.aws_settings();
    db.rt.block_on(async {
        let client = dynashift::aws::s3_client(&sdk_config(&settings).await, &settings);
        client.create_bucket().bucket("stage-bucket").send().await.unwrap();
    });
    let api = support::data_api::DataApiStandIn::start(&server.url("dev"), &moto.endpoint());
    let (key, secret) = moto.restricted_user("reader", &["dynamodb:GetRecords", "s3:PutObject"]);
    let (full_key, full_secret) = moto.restricted_user("replicator", &[]);
    moto.enforce_iam();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("check.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"dynamodb-streams\"\ntables = [\"Orders\"]\nregion = \"us-east-1\"\nendpoint_url = \"{0}\"\n\
             [target]\nkind = \"redshift\"\nconnection = \"data-api\"\ndatabase = \"dev\"\n\
             cluster_identifier = \"analytics\"\ndb_user = \"replicator\"\n\
             s3_staging = \"s3://stage-bucket/dynashift/\"\ncopy_role = \"arn:aws:iam::123456789012:role/copy\"\n\
             region = \"us-east-1\"\nendpoint_url = \"{0}\"\ndata_api_endpoint_url = \"{1}\"\n",
            moto.endpoint(),
            api.endpoint()
        ),
    )
    .unwrap();
    let check = |key: &str, secret: &str| {
        Command::new(BIN)
            .args(["check", "--config"])
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .unwrap()
    };
    let out = check(&key, &secret);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "check passed with denied permissions:\n{stdout}");
    let line = |action: &str| {
        let lines: Vec<&str> =
            stdout.lines().filter(|l| l.starts_with(&format!("permission {action} "))).collect();
        assert_eq!(lines.len(), 1, "one line for {action} expected:\n{stdout}");
        lines[0].to_string()
    };
    for action in ["dynamodb:GetRecords", "s3:PutObject"] {
        let l = line(action);
        assert!(l.contains("DENIED") && l.contains(&format!("grant `{action}`")), "{l}");
    }
    for action in [
        "dynamodb:DescribeTable",
        "dynamodb:ListStreams",
        "dynamodb:DescribeStream",
        "dynamodb:GetShardIterator",
        "s3:DeleteObject",
    ] {
        assert!(
            line(action).ends_with(": allowed") || line(action).contains(": allowed ("),
            "{}",
            line(action)
        );
    }
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("2 of the 7") && stderr.contains("dynamodb:GetRecords, s3:PutObject"),
        "{stderr}"
    );
    // With every permission: all allowed, and the staging probe's object is gone again.
    let out = check(&full_key, &full_secret);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let probes: Vec<&str> = stdout.lines().filter(|l| l.starts_with("permission ")).collect();
    assert_eq!(probes.len(), 7, "{stdout}");
    assert!(probes.iter().all(|l| l.contains(": allowed")), "{stdout}");
    let credentials = aws_credential_types::Credentials::new(&full_key, &full_secret, None, None, "test");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&db.rt.block_on(sdk_config(&settings)))
            .credentials_provider(credentials)
            .force_path_style(true)
            .build(),
    );
    let listed = db.rt.block_on(s3.list_objects_v2().bucket("stage-bucket").send()).unwrap();
    assert_eq!(listed.key_count(), Some(0), "the staging probe left {:?}", listed.contents());
    // A key no user owns is refused on every call.
    let out = check("AKIAUNKNOWN000000000", "nope");
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.lines().filter(|l| l.starts_with("permission ")).all(|l| !l.contains(": allowed")),
        "{stdout}"
    );
}
