//! Redshift's plan over the wire, on PostgreSQL made to behave like Redshift (see
//! `support::redshift_on_pg`): rejected records of every kind and size land without stalling,
//! serialization conflicts are retried, and items wider than the column limit keep every
//! attribute. Every batch's Redshift statements are checked against Redshift's rules.
#![cfg(feature = "duckdb")]

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use dynashift::config::Config;
use dynashift::pipeline::Pipeline;
use dynashift::source::RawRecord;
use dynashift::warehouse::postgres::PgSettings;
use dynashift::warehouse::redshift_wire::RedshiftWireWarehouse;
use dynashift::warehouse::retry::apply_with_retry;
use dynashift_core::Position;
use support::pg::PgServer;
use support::redshift_on_pg::{self, CheckedRedshift, RedshiftOnPostgres};

fn config() -> Config {
    let text = "[source]\nkind = \"file\"\npath = \"-\"\n[target]\nkind = \"duckdb\"\npath = \":memory:\"\n";
    Config::parse(text, Path::new("test.toml")).unwrap()
}

fn record(n: usize, data: Vec<u8>) -> RawRecord {
    RawRecord { data, position: Position::new("s", n.to_string()), problem: None }
}

fn insert(id: &str, attrs: &str, millis: u64) -> Vec<u8> {
    format!(
        r#"{{"eventName":"INSERT","tableName":"Wide","dynamodb":{{"ApproximateCreationDateTime":{millis},"Keys":{{"id":{{"S":"{id}"}}}},"NewImage":{{"id":{{"S":"{id}"}}{attrs}}}}}}}"#
    )
    .into_bytes()
}

fn pipeline(server: &PgServer, db: &str) -> Pipeline<CheckedRedshift<RedshiftWireWarehouse>> {
    server.create_db(db);
    let url = redshift_on_pg::prepare(server, db);
    let settings = PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap();
    let warehouse = RedshiftWireWarehouse::on_postgres(settings, &RedshiftOnPostgres).unwrap();
    Pipeline::new(config(), CheckedRedshift::new(warehouse, "dynamodb")).unwrap()
}

/// Records that are not UTF-8, hold U+0000, or are larger than a Redshift VARCHAR: each is a
/// reject row, with its bytes whole where they fit, and the batch commits. (Binding the bytes
/// made the driver look up Redshift's VARBYTE type in a catalog table Redshift lacks; a record
/// over 65,535 bytes failed the batch on every retry.)
#[test]
fn rejects_of_every_kind_and_size_land() {
    let server = PgServer::start();
    let mut p = pipeline(&server, "rejects");
    let big = format!("{{\"not json\": \"{}", "é".repeat(40_000));
    let records = vec![
        record(1, vec![0xff, 0xfe, b'{', 0x80]),
        record(2, b"{\"nul\": \"a\0b\"".to_vec()),
        record(3, big.clone().into_bytes()),
        record(4, insert("k", "", 1_764_000_000_000)),
    ];
    let outcome = p.process(records).unwrap();
    assert_eq!(outcome.applied.get("Wide"), Some(&1));
    let rows = |sql: &str| server.query("rejects", sql);
    assert_eq!(rows("SELECT COUNT(*) FROM _dynashift.rejects"), vec![Some("3".to_string())]);
    assert_eq!(
        rows("SELECT encode(raw_bytes, 'hex') FROM _dynashift.rejects WHERE sequence = '1'"),
        vec![Some("fffe7b80".to_string())]
    );
    assert_eq!(
        rows("SELECT encode(raw_bytes, 'hex') FROM _dynashift.rejects WHERE sequence = '2'"),
        vec![Some(dynashift_core::value::hex_encode(b"{\"nul\": \"a\0b\""))]
    );
    let cut = rows("SELECT raw_text FROM _dynashift.rejects WHERE sequence = '3'").remove(0).unwrap();
    assert!(cut.len() <= 65_535, "{} bytes", cut.len());
    assert!(
        cut.ends_with(&format!("(cut here: the record is {} bytes)", big.len())),
        "{}",
        &cut[cut.len() - 80..]
    );
    assert!(big.starts_with(cut.split(" … (cut here").next().unwrap()));
    assert_eq!(rows("SELECT COUNT(*) FROM dynamodb.wide"), vec![Some("1".to_string())]);
}

/// Redshift's serialization conflict (`ERROR: 1023`, SQLSTATE XX000), raised at commit by a
/// test-only trigger for the first two attempts: the batch is applied again and lands once.
#[test]
fn serialization_conflicts_are_retried() {
    let server = PgServer::start();
    let mut p = pipeline(&server, "conflicts");
    server.exec("conflicts", redshift_on_pg::CONFLICTS_AT_COMMIT);
    let records = vec![
        record(1, insert("a", r#","n":{"N":"1"}"#, 1_764_000_000_000)),
        record(2, insert("b", "", 1_764_000_000_001)),
    ];
    let prepared = p.planner.prepare(records);
    let stop = AtomicBool::new(false);
    let outcome = apply_with_retry(p.warehouse(), &prepared.batch, &stop).unwrap();
    assert_eq!(outcome.applied.get("Wide"), Some(&2));
    let rows = |sql: &str| server.query("conflicts", sql);
    assert_eq!(
        rows("SELECT last_value FROM public.conflicts"),
        vec![Some("3".to_string())],
        "two conflicts, then the commit"
    );
    assert_eq!(rows("SELECT COUNT(*) FROM dynamodb.wide"), vec![Some("2".to_string())]);
    assert_eq!(rows("SELECT COUNT(*) FROM _dynashift.runs"), vec![Some("1".to_string())]);
}

/// Items wider than the 1,600 columns a table may have (PostgreSQL's limit, and Redshift's):
/// the table stops at the limit, and the attributes that found no column are kept, as plain
/// JSON, in its one overflow column — none dropped, the batch never refused.
#[test]
fn attributes_past_the_column_limit_are_kept_in_the_overflow_column() {
    let server = PgServer::start();
    let mut p = pipeline(&server, "wide");
    let attrs = |from: usize, to: usize| -> String {
        // One-character values: PostgreSQL's rows must fit a page, Redshift's need not.
        (from..to).map(|i| format!(r#","a{i:04}":{{"S":"{}"}}"#, i % 10)).collect()
    };
    p.process(vec![record(1, insert("first", &attrs(0, 1700), 1_764_000_000_000))]).unwrap();
    p.process(vec![record(
        2,
        insert("second", &(attrs(1650, 1700) + &attrs(1800, 1810)), 1_764_000_000_001),
    )])
    .unwrap();
    let rows = |sql: &str| server.query("wide", sql);
    let columns = rows(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = 'dynamodb' AND table_name = 'wide'",
    );
    assert_eq!(columns, vec![Some("1600".to_string())]);
    let overflow = rows("SELECT CAST(_ddb_overflow AS TEXT) FROM dynamodb.wide ORDER BY id");
    let first: serde_json::Value = serde_json::from_str(overflow[0].as_deref().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(overflow[1].as_deref().unwrap()).unwrap();
    // 7 system columns, the key, the overflow column: 1,591 attribute columns.
    assert_eq!(first.as_object().unwrap().len(), 1700 - 1591);
    assert_eq!(first["a1699"], "9");
    assert_eq!(second.as_object().unwrap().len(), 60);
    assert_eq!(second["a1805"], "5");
    assert_eq!(rows("SELECT a0000 || a1590 FROM dynamodb.wide WHERE id = 'first'"), vec![Some("00".into())]);
}
