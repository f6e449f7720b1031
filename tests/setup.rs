//! `dynashift setup`: the printed SQL is the snapshot in `tests/snapshots/`, passes Redshift's
//! documented rules and connects to nothing; run against a real PostgreSQL server it adopts an
//! existing view after checking its columns (twice alike), prepares the target, and refuses
//! in one line what it cannot use.
#![cfg(feature = "duckdb")]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::pg::PgServer;
use support::redshift_rules::{assert_conforms, RedshiftRules};

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");
const STREAMING: &str =
    "stream = \"redshift_cdc\"\niam_role = \"arn:aws:iam::123456789012:role/my_streaming_role\"\n";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write_config(dir: &Path, source: &str, target: &str) -> PathBuf {
    let path = dir.join("setup.toml");
    let config = format!(
        "[source]\nkind = \"redshift-mv\"\nview = \"cdc.ddb_changes\"\n{source}\n[target]\n{target}\n"
    );
    std::fs::write(&path, config).unwrap();
    path
}

fn setup(config: &Path, print: bool) -> Output {
    let mut command = Command::new(BIN);
    command.arg("setup").arg("--config").arg(config);
    if print {
        command.arg("--print");
    }
    command.output().unwrap()
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_printed_sql_is_the_snapshot_and_follows_redshifts_rules_without_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("host=127.0.0.1 port={} dbname=dev user=etl connect_timeout=2", closed_port());
    let config = write_config(
        dir.path(),
        &format!("url = \"{nowhere}\"\n{STREAMING}"),
        &format!(
            "kind = \"redshift\"\nurl = \"{nowhere}\"\ns3_staging = \"s3://stage/dynashift/\"\n\
             copy_role = \"arn:aws:iam::123456789012:role/copy\"\nregion = \"us-east-1\""
        ),
    );
    let out = setup(&config, true);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/setup-redshift-mv.sql");
    if std::env::var_os("DYNASHIFT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &printed).unwrap();
    }
    let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert_eq!(
        printed,
        expected,
        "the printed SQL differs from {} (DYNASHIFT_UPDATE_SNAPSHOTS=1 rewrites it)",
        snapshot.display()
    );

    let sql: String = printed.lines().filter(|l| !l.starts_with("--")).collect::<Vec<_>>().join("\n");
    let statements: Vec<&str> = sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()).collect();
    assert!(statements
        .iter()
        .any(|s| s.starts_with("CREATE EXTERNAL SCHEMA IF NOT EXISTS \"kds\" FROM KINESIS")));
    assert!(statements
        .iter()
        .any(|s| s.starts_with("CREATE MATERIALIZED VIEW \"cdc\".\"ddb_changes\" AUTO REFRESH YES")));
    assert!(statements.iter().any(|s| s.contains("\"_dynashift\".\"checkpoints\"")), "{printed}");
    let mut rules = RedshiftRules::new();
    let violations: Vec<_> =
        statements.iter().flat_map(|s| rules.check(s.trim_end_matches(';'), &[])).collect();
    assert_conforms(&violations);
}

#[test]
fn print_creates_nothing() {
    let server = PgServer::start();
    let source = server.create_db("source");
    let target = server.create_db("target");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("url = \"{source}\"\n{STREAMING}"),
        &format!("kind = \"postgres\"\nurl = \"{target}\""),
    );
    let out = setup(&config, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("CREATE TABLE IF NOT EXISTS \"_dynashift\""), "{}", text(&out));
    for db in ["source", "target"] {
        let schemas = server.query(
            db,
            "SELECT CAST(COUNT(*) AS TEXT) FROM pg_namespace WHERE nspname IN ('_dynashift', 'dynamodb', 'kds', 'cdc')",
        );
        assert_eq!(schemas[0].as_deref(), Some("0"), "{db}: --print created schemas");
    }
}

#[test]
fn an_existing_view_is_adopted_and_the_target_prepared_twice_alike() {
    let server = PgServer::start();
    let source = server.create_db("landing");
    let target = server.create_db("target");
    support::create_mv_landing(&server, "landing", "cdc.ddb_changes", "BYTEA");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("url = \"{source}\"\n{STREAMING}"),
        &format!("kind = \"postgres\"\nurl = \"{target}\""),
    );
    let first = setup(&config, false);
    assert!(first.status.success(), "{}", text(&first));
    let said = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(said.contains("source: adopted cdc.ddb_changes, which has the columns shard_id"), "{said}");
    assert!(said.contains("target: the control tables are ready in _dynashift (postgres)"), "{said}");
    let ready = server.query(
        "target",
        "SELECT CAST(to_regclass('_dynashift.checkpoints') IS NOT NULL AND to_regclass('_dynashift.runs') IS NOT NULL AS TEXT)",
    );
    assert_eq!(ready[0].as_deref(), Some("true"));
    let again = setup(&config, false);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(String::from_utf8_lossy(&again.stdout), said, "a second setup differs");
    // The external schema was not made: an existing view needs none.
    let external =
        server.query("landing", "SELECT CAST(COUNT(*) AS TEXT) FROM pg_namespace WHERE nspname = 'kds'");
    assert_eq!(external[0].as_deref(), Some("0"));
}

#[test]
fn what_setup_cannot_use_is_refused_in_one_line() {
    let server = PgServer::start();
    let source = server.create_db("source");
    let target = server.create_db("target");
    let dir = tempfile::tempdir().unwrap();
    let postgres = format!("kind = \"postgres\"\nurl = \"{target}\"");
    let refused = |source_settings: &str, wanted: &str| {
        let config = write_config(dir.path(), source_settings, &postgres);
        let out = setup(&config, false);
        assert!(!out.status.success(), "{}", text(&out));
        let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains(wanted), "wanted {wanted:?} in: {message}");
    };
    // No view, and nothing to make one from.
    refused(&format!("url = \"{source}\""), "cdc.ddb_changes does not exist: create it with `dynashift setup` (which needs source.stream and source.iam_role)");
    // Half of what making one takes; a role that is not one.
    refused(&format!("url = \"{source}\"\nstream = \"redshift_cdc\""), "source.iam_role");
    refused(
        &format!("url = \"{source}\"\nstream = \"s\"\niam_role = \"my_streaming_role\""),
        "is neither an IAM role ARN",
    );
    // A view in the external schema, which only names the stream.
    refused(&format!("url = \"{source}\"\n{STREAMING}external_schema = \"cdc\"\n"), "source.external_schema");
    // A stream name with capitals, where names fold to lower case.
    refused(
        &format!("url = \"{source}\"\nstream = \"RedshiftCdc\"\niam_role = \"default\""),
        "source.stream = \"RedshiftCdc\" has capitals, and enable_case_sensitive_identifier is not set",
    );
    // The view is made on the server, statement by statement: PostgreSQL has no Kinesis, and
    // says so about the first one.
    refused(
        &format!("url = \"{source}\"\n{STREAMING}"),
        "running `CREATE EXTERNAL SCHEMA IF NOT EXISTS \"kds\" FROM KINESIS IAM_ROLE 'arn:aws:iam::123456789012:role/my_streaming_role'`",
    );
    // A relation of the view's name without the raw record.
    server.exec(
        "source",
        "CREATE SCHEMA cdc; CREATE TABLE cdc.ddb_changes (shard_id CHAR(20), sequence_number VARCHAR(128), payload TEXT)",
    );
    refused(&format!("url = \"{source}\"\n{STREAMING}"), "cdc.ddb_changes lacks the column(s) kinesis_data");
    let prepared = server
        .query("target", "SELECT CAST(COUNT(*) AS TEXT) FROM pg_namespace WHERE nspname = '_dynashift'");
    assert_eq!(prepared[0].as_deref(), Some("0"), "the target was prepared although the source was refused");
}
