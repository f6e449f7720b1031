//! The PostgreSQL warehouse against a real, throwaway server: hostile names and values, a
//! backend killed in the middle of applies, a server that is down at start, the binary
//! killed and restarted, `status` and `plan`.
#![cfg(feature = "duckdb")]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift_core::number::Number;
use dynashift_core::value::{AttrValue, Item};
use dynashift_testkit::{kinesis_record, Event, EventKindGen, Model, WorkloadSpec};
use support::generate;
use support::pg::PgServer;

const BIN: &str = env!("CARGO_BIN_EXE_dynashift");

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
}

fn write_config(dir: &Path, input: &Path, url: &str, extra: &str) -> PathBuf {
    let config = dir.join("pg.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\npath = {:?}\n[target]\nkind = \"postgres\"\nurl = {url:?}\n{extra}",
            input.display().to_string()
        ),
    )
    .unwrap();
    config
}

fn warehouse(url: &str) -> PostgresWarehouse {
    PostgresWarehouse::open(PgSettings::parse(url, "PGPASSWORD", "dynamodb").unwrap()).unwrap()
}

fn assert_model(url: &str, model: &Model) {
    let mut w = warehouse(url);
    let actual = support::read_back(&mut w);
    support::assert_tables_equal(&actual, &support::expected_model(model));
}

fn count(server: &PgServer, db: &str, sql: &str) -> i64 {
    server.query(db, sql)[0].as_deref().unwrap_or("0").parse().unwrap()
}

fn n(s: &str) -> AttrValue {
    AttrValue::N(Number::parse(s).unwrap())
}

#[test]
fn hostile_names_and_values_round_trip() {
    let server = PgServer::start();
    let url = server.create_db("hostile");
    let dir = tempfile::tempdir().unwrap();
    let long_name = "n".repeat(65_536);
    // Shares its first 63 bytes with `long_name`: cut by the server, the two would collide.
    let long_twin = format!("{}twin", "n".repeat(70));
    let hostile = [
        "quote\"d",
        "semi;colon",
        "dollar$$quoted$$",
        "back\\slash",
        "drop\"; DROP TABLE x; --",
        "Ünïcødé 名前",
        "ItemCount",
        "itemCount",
        long_name.as_str(),
        long_twin.as_str(),
    ];
    let values = [
        AttrValue::S("it's; DROP TABLE t; --".into()),
        AttrValue::S("$$ dollar $$ quoted $tag$".into()),
        AttrValue::S("back\\slash \\N \\. tab\tnewline\n".into()),
        AttrValue::B(vec![1, 2, 3, 255, 254, 0x5c, 0x27]),
        AttrValue::S("日本語 ünïcødé 🚀".into()),
        n("12345678901234567890123456789012345678"),
        n("-1E-130"),
        AttrValue::M([("k\"ey".to_string(), AttrValue::S("v'al\\ue".into()))].into()),
        AttrValue::Bool(false),
    ];
    let mut model = Model::default();
    let mut lines = Vec::new();
    let mut rng = dynashift_testkit::Rng::new(17);
    let tables = ["Evil\"Table; DROP SCHEMA public; --", "$$weird$$", long_name.as_str()];
    for (t, table) in tables.iter().enumerate() {
        for k in 0..3 {
            let mut keys = Item::new();
            keys.insert("pk'\"".into(), AttrValue::S(format!("key '{k}'; --").into()));
            let mut image = keys.clone();
            for (i, attr) in hostile.iter().enumerate() {
                image.insert(attr.to_string().into(), values[(i + k + t) % values.len()].clone());
            }
            let event = Event {
                table: table.to_string(),
                keys,
                kind: EventKindGen::Insert,
                image: Some(image),
                old_image: None,
                micros: 1_764_000_000_000_000 + (t * 10 + k) as i64,
            };
            model.apply(&event);
            let id = lines.len() as u64;
            lines.push(support::oracle::RecordWriter { rng: &mut rng }.kinesis_record(&event, true, id));
        }
    }
    let input = dir.path().join("hostile.jsonl");
    write_lines(&input, &lines);
    let config = write_config(dir.path(), &input, &url, "");
    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(support::count_before(&text(&out), " rejected"), Some(0), "{}", text(&out));
    assert_model(&url, &model);
    // The names PostgreSQL holds are the registry's, byte for byte: none was cut by the
    // server (which would cut a longer name to 63 bytes silently), and none is missing.
    let registered = count(&server, "hostile", "SELECT COUNT(*) FROM _dynashift.columns");
    let in_catalog = count(
        &server,
        "hostile",
        "SELECT COUNT(*) FROM _dynashift.columns c JOIN _dynashift.tables t ON t.source_table = c.source_table \
         JOIN pg_namespace n ON n.nspname = t.target_schema \
         JOIN pg_class r ON r.relnamespace = n.oid AND r.relname = t.target_name \
         JOIN pg_attribute a ON a.attrelid = r.oid AND a.attname = c.column_name AND NOT a.attisdropped",
    );
    assert_eq!(in_catalog, registered, "registered column names missing from the catalog");
    let twins = count(
        &server,
        "hostile",
        "SELECT COUNT(DISTINCT source_table || '/' || column_name) FROM _dynashift.columns \
         WHERE attribute LIKE 'nnnnnnnnnn%' AND NOT is_variant",
    );
    assert_eq!(twins, 6, "the two long names have columns of their own in each of three tables");
    let status = Command::new(BIN).args(["status", "--config"]).arg(&config).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("Evil\"Table"), "{}", text(&status));
    let json = Command::new(BIN).args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    assert!(json.status.success(), "{}", text(&json));
    let listed = support::status_schema::assert_status_json(&String::from_utf8_lossy(&json.stdout));
    assert!(
        listed.iter().any(|t| t.contains("Evil\"Table")),
        "hostile names come back as JSON text: {listed:?}"
    );
}

/// W1-shaped history with a few undecodable lines spread through it.
fn workload(records: usize, keys: usize) -> (Vec<String>, Model, usize) {
    let spec = WorkloadSpec {
        records,
        keys,
        duplicate_percent: 5,
        shuffle_window: 500,
        seed: 11,
        expire_percent: 1,
    };
    let (mut lines, model) = generate(&spec, false);
    let bad =
        ["{\"eventName\":\"INSERT\",\"tableName\":\"Orders\"", "not json", "{\"tableName\":\"Orders\"}"];
    for (i, b) in bad.iter().enumerate() {
        lines.insert((i + 1) * records / 4, b.to_string());
    }
    (lines, model, bad.len())
}

#[test]
fn backend_killed_mid_apply_loses_and_doubles_nothing() {
    let server = PgServer::start();
    let url = server.create_db("faults");
    let dir = tempfile::tempdir().unwrap();
    let (lines, model, bad) = workload(60_000, 6_000);
    let input = dir.path().join("changes.jsonl");
    write_lines(&input, &lines);
    // Fixed-size batches: many short transactions for the terminations to land in.
    let config =
        write_config(dir.path(), &input, &url, "[defaults]\nbatch_size = 2000\nmax_batch_records = 2000\n");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("DYNASHIFT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Terminate dynashift's backend whenever it is busy, a bounded number of times.
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while kills < 6 && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let killed = server.query(
            "postgres",
            // Only terminations that succeeded count (the function returns false otherwise).
            "SELECT COALESCE(SUM(CASE WHEN pg_terminate_backend(pid) THEN 1 ELSE 0 END), 0) \
             FROM pg_stat_activity WHERE application_name = 'dynashift' AND state <> 'idle'",
        );
        kills += killed[0].as_deref().unwrap_or("0").parse::<i64>().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(kills >= 3, "only {kills} backends were terminated; the run ended too soon to prove much");
    assert!(text(&out).contains("retrying"), "the outage was not reported: {}", text(&out));
    assert_model(&url, &model);
    let records = count(&server, "faults", "SELECT SUM(records) FROM _dynashift.runs");
    assert_eq!(records as usize, lines.len(), "every record consumed exactly once");
    let rejects = count(&server, "faults", "SELECT COUNT(*) FROM _dynashift.rejects");
    assert_eq!(rejects as usize, bad, "each bad line rejected exactly once");
}

#[test]
fn server_down_at_start_is_waited_for() {
    let server = PgServer::start();
    let url = server.create_db("late");
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let (lines, model, _) = workload(3_000, 500);
    let input = dir.path().join("changes.jsonl");
    write_lines(&input, &lines);
    let config = write_config(dir.path(), &input, &url, "");

    let check = Command::new(BIN).args(["check", "--config"]).arg(&config).output().unwrap();
    assert!(!check.status.success());
    let message = String::from_utf8_lossy(&check.stderr).to_string();
    assert_eq!(message.trim().lines().count(), 1, "{message}");
    assert!(message.contains("cannot connect to PostgreSQL at 127.0.0.1"), "{message}");

    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    server.start_again();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("retrying"), "{}", text(&out));
    assert_model(&url, &model);
}

#[test]
fn killed_and_restarted_ends_at_the_model() {
    let server = PgServer::start();
    let url = server.create_db("crash");
    let dir = tempfile::tempdir().unwrap();
    let (lines, model, bad) = workload(60_000, 4_000);
    let input = dir.path().join("changes.jsonl");
    write_lines(&input, &lines);
    // Fixed-size batches: 120 transactions, so twenty kills, each a moment after a commit,
    // land inside the work however fast it goes.
    let config =
        write_config(dir.path(), &input, &url, "[defaults]\nbatch_size = 500\nmax_batch_records = 500\n");
    let mut progress = || {
        let exists = server.query("crash", "SELECT CAST(to_regclass('_dynashift.runs') IS NOT NULL AS TEXT)");
        if exists[0].as_deref() != Some("true") {
            return 0;
        }
        count(&server, "crash", "SELECT COALESCE(SUM(records), 0) FROM _dynashift.runs") as usize
    };
    let landed = support::kill_and_restart(BIN, &config, 20, 5, lines.len(), &mut progress);
    eprintln!("{landed} of 20 kills landed between commits, with progress made since the kill before");
    assert!(landed >= 15, "only {landed} of 20 kills landed inside the work");
    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_model(&url, &model);
    let records = count(&server, "crash", "SELECT SUM(records) FROM _dynashift.runs");
    assert_eq!(records as usize, lines.len());
    let rejects = count(&server, "crash", "SELECT COUNT(*) FROM _dynashift.rejects");
    assert_eq!(rejects as usize, bad);
}

#[test]
fn plan_status_and_check_change_nothing_on_postgres() {
    let server = PgServer::start();
    let url = server.create_db("plan");
    let dir = tempfile::tempdir().unwrap();
    let (lines, _, _) = workload(200, 50);
    let input = dir.path().join("changes.jsonl");
    write_lines(&input, &lines);
    let config = write_config(dir.path(), &input, &url, "");
    // Every schema and relation (table, index, sequence, view) outside the system's own.
    let objects = || {
        let mut all = server.query(
            "plan",
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
        );
        all.extend(server.query(
            "plan",
            "SELECT table_schema || '.' || table_name || '.' || column_name || ' ' || data_type \
             FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        ));
        all.extend(server.query(
            "plan",
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') \
             AND nspname NOT LIKE 'pg_toast%' AND nspname NOT LIKE 'pg_temp%' ORDER BY 1",
        ));
        all
    };
    let out = Command::new(BIN).args(["plan", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sql = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(sql.contains("CREATE UNIQUE INDEX"), "{sql}");
    assert!(sql.contains("JSONB") && sql.contains("ANALYZE"), "{sql}");
    assert!(objects().is_empty(), "plan created {:?}", objects());
    let status = Command::new(BIN).args(["status", "--config"]).arg(&config).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("nothing replicated yet"), "{}", text(&status));
    let check = Command::new(BIN).args(["check", "--config"]).arg(&config).output().unwrap();
    assert!(check.status.success(), "{}", text(&check));
    assert!(objects().is_empty(), "status or check created {:?}", objects());

    // On a replicated target, the three leave every object as it was.
    let run = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let before = objects();
    assert!(!before.is_empty());
    for command in ["plan", "status", "check"] {
        let out = Command::new(BIN).args([command, "--config"]).arg(&config).output().unwrap();
        assert!(out.status.success(), "{command}: {}", text(&out));
    }
    assert_eq!(objects(), before, "plan, status or check changed the catalog");
}

/// A server that asks for TLS: trusted through `ca_file`, the session is encrypted; with
/// the certificate unknown, the connection is refused with a message that says why.
#[test]
fn tls_with_a_private_ca() {
    let server = PgServer::start_with(|dir| {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let subj_ca = "/CN=dynashift test CA";
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subj_ca, "-keyout",
            "ca.key", "-out", "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        format!(
            "-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        )
    });
    let url = format!("{} sslmode=require", server.create_db("tls"));
    let cert = server.dir().join("ca.crt");
    let mut settings = PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap();
    settings.ca_file = Some(cert);
    let mut w = PostgresWarehouse::open(settings).unwrap();
    let ssl = w
        .session_mut()
        .query_text("SELECT CAST(ssl AS TEXT) FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .unwrap();
    assert_eq!(ssl[0][0].as_deref(), Some("true"));

    let mut untrusted = warehouse(&url);
    let e = untrusted.session_mut().query_text("SELECT 1").unwrap_err().to_string();
    assert!(e.contains("certificate") || e.contains("UnknownIssuer"), "{e}");
}

/// U+0000 in a string or inside a map: PostgreSQL cannot store it, so the value is kept with
/// U+FFFD in its place, the original goes to the rejects with its bytes, and the run goes on.
#[test]
fn nul_characters_are_replaced_and_recorded() {
    let server = PgServer::start();
    let url = server.create_db("nul");
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Item::new();
    keys.insert("id".into(), AttrValue::S("k1".into()));
    let mut image = keys.clone();
    image.insert("note".into(), AttrValue::S("a\0b".into()));
    image.insert("doc".into(), AttrValue::M([("x".to_string(), AttrValue::S("y\0".into()))].into()));
    image.insert("plain".into(), AttrValue::S("kept \\u0000 as written".into()));
    let event = Event {
        table: "Nul".into(),
        keys,
        kind: EventKindGen::Insert,
        image: Some(image),
        old_image: None,
        micros: 1_764_000_000_000_000,
    };
    let input = dir.path().join("nul.jsonl");
    write_lines(&input, &[kinesis_record(&event, true, 1)]);
    let config = write_config(dir.path(), &input, &url, "");
    let out = Command::new(BIN).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let row =
        server.query("nul", "SELECT note || '|' || CAST(doc AS TEXT) || '|' || plain FROM dynamodb.nul");
    assert_eq!(row[0].as_deref(), Some("a\u{FFFD}b|{\"x\": \"y\u{FFFD}\"}|kept \\u0000 as written"));
    let rejects = server.query(
        "nul",
        "SELECT CAST(COUNT(*) AS TEXT) || ':' || CAST(SUM(CASE WHEN position('\\x00'::bytea IN raw_bytes) > 0 THEN 1 ELSE 0 END) AS TEXT) \
         FROM _dynashift.rejects WHERE reason LIKE '%U+0000%'",
    );
    assert_eq!(
        rejects[0].as_deref(),
        Some("2:1"),
        "two values recorded; the string's bytes kept with its NUL"
    );
}

/// 450 items of 350 KB (158 MB of changes) into PostgreSQL against the smallest memory
/// budget, whose share for held changes is 128 MB: every row lands whole, in more than one
/// batch, and the run stays within the
/// budget plus the documented constant.
#[test]
fn large_items_stay_within_the_memory_budget() {
    let server = PgServer::start();
    let url = server.create_db("large");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("large.jsonl");
    write_lines(&input, &support::large_item_lines(450, 350_000));
    let config = write_config(dir.path(), &input, &url, "[defaults]\nmemory = \"256MB\"\n");
    let out = Command::new(BIN).args(["sync", "--once", "--config"]).arg(&config).output().unwrap();
    let summary = text(&out);
    assert!(out.status.success(), "{summary}");
    assert!(support::count_before(&summary, " batches").unwrap() >= 2, "{summary}");
    let peak = support::peak_memory_mb(&summary);
    assert!(peak <= 256 + support::MEMORY_PAST_BUDGET_MB, "peak {peak} MB: {summary}");
    assert_eq!(count(&server, "large", "SELECT COUNT(*) FROM dynamodb.large"), 450);
    assert_eq!(count(&server, "large", "SELECT SUM(LENGTH(body)) FROM dynamodb.large"), 450 * 350_000);
}
