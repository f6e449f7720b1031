//! The Redshift rule checker can fail: for every rule, a statement that breaks it is caught,
//! and the form the Redshift dialect emits instead passes.
#![cfg(feature = "duckdb")]

mod support;

use support::redshift_rules::*;

fn fired(rules: &mut RedshiftRules, sql: &str, binds: &[Bind]) -> Vec<Rule> {
    rules.check(sql, binds).into_iter().map(|v| v.rule).collect()
}

/// `bad` breaks `rule` (and `good`, its fix, breaks nothing), after `setup` ran.
fn case(rule: Rule, setup: &[&str], bad: &str, good: &str) {
    case_with(rule, setup, (bad, &[]), (good, &[]));
}

fn case_with(rule: Rule, setup: &[&str], bad: (&str, &[Bind]), good: (&str, &[Bind])) {
    let run = |sql: &str, binds: &[Bind]| {
        let mut rules = RedshiftRules::new();
        for s in setup {
            let v = rules.check(s, &[]);
            assert!(
                v.is_empty(),
                "setup statement breaks rules: {:?}",
                v.iter().map(|v| v.to_string()).collect::<Vec<_>>()
            );
        }
        fired(&mut rules, sql, binds)
    };
    let caught = run(bad.0, bad.1);
    assert!(caught.contains(&rule), "{} did not fire on: {}\n(fired: {caught:?})", rule.name, bad.0);
    let clean = run(good.0, good.1);
    assert!(clean.is_empty(), "the fixed form still breaks {clean:?}: {}", good.0);
}

const STAGE: &str = "CREATE TEMP TABLE \"stage\" (\"_ddb_key\" VARCHAR(65535) COLLATE CASE_SENSITIVE, \
    \"_ddb_version\" BIGINT, \"c0\" VARCHAR(65535), \"c1\" VARCHAR(65535)) DISTKEY(\"_ddb_key\")";
const TARGET: &str = "CREATE TABLE \"dynamodb\".\"t\" (\"paid\" BOOLEAN, \"blob\" VARBYTE(1024000), \
    \"_ddb_key\" VARCHAR(65535) COLLATE CASE_SENSITIVE, \"_ddb_version\" BIGINT, \"_ddb_synced_at\" TIMESTAMP)";

#[test]
fn leader_node_only_functions() {
    case(
        LEADER_NODE_ONLY,
        &[STAGE, TARGET],
        "INSERT INTO \"dynamodb\".\"t\" (\"_ddb_key\", \"_ddb_synced_at\") SELECT \"_ddb_key\", CURRENT_TIMESTAMP FROM \"stage\"",
        "INSERT INTO \"dynamodb\".\"t\" (\"_ddb_key\", \"_ddb_synced_at\") SELECT \"_ddb_key\", GETDATE() FROM \"stage\"",
    );
    case(
        LEADER_NODE_ONLY,
        &[TARGET],
        "UPDATE \"dynamodb\".\"t\" SET \"_ddb_synced_at\" = NOW()",
        "UPDATE \"dynamodb\".\"t\" SET \"_ddb_synced_at\" = GETDATE()",
    );
}

#[test]
fn no_character_to_boolean_casts() {
    case(
        CHAR_TO_BOOLEAN,
        &[STAGE, TARGET],
        "INSERT INTO \"dynamodb\".\"t\" (\"paid\") SELECT CAST(\"stage\".\"c0\" AS BOOLEAN) FROM \"stage\"",
        "INSERT INTO \"dynamodb\".\"t\" (\"paid\") SELECT CASE \"stage\".\"c0\" WHEN 'true' THEN TRUE WHEN 'false' THEN FALSE END FROM \"stage\"",
    );
}

#[test]
fn decimal_precision_and_scale() {
    case(
        DECIMAL_LIMITS,
        &[TARGET],
        "ALTER TABLE \"dynamodb\".\"t\" ADD COLUMN \"tiny\" DECIMAL(38, 38)",
        "ALTER TABLE \"dynamodb\".\"t\" ADD COLUMN \"tiny\" DECIMAL(38, 37)",
    );
    case(
        DECIMAL_LIMITS,
        &[STAGE],
        "SELECT CAST(\"c0\" AS DECIMAL(39, 2)) FROM \"stage\"",
        "SELECT CAST(\"c0\" AS DECIMAL(38, 2)) FROM \"stage\"",
    );
}

#[test]
fn varchar_and_varbyte_sizes() {
    case(
        VARCHAR_LIMITS,
        &[],
        "CREATE TABLE \"a\" (\"x\" VARCHAR(65536))",
        "CREATE TABLE \"a\" (\"x\" VARCHAR(65535))",
    );
    case(
        VARCHAR_LIMITS,
        &[],
        "CREATE TABLE \"a\" (\"x\" VARCHAR)",
        "CREATE TABLE \"a\" (\"x\" VARCHAR(100))",
    );
    case(
        VARBYTE_LIMITS,
        &[],
        "CREATE TABLE \"a\" (\"x\" VARBYTE(16777217))",
        "CREATE TABLE \"a\" (\"x\" VARBYTE(1024000))",
    );
}

#[test]
fn identifiers() {
    let long = "x".repeat(128);
    case(
        IDENTIFIERS,
        &[],
        &format!("CREATE TABLE \"{long}\" (\"a\" BIGINT)"),
        &format!("CREATE TABLE \"{}\" (\"a\" BIGINT)", &long[..127]),
    );
    case(
        IDENTIFIERS,
        &[],
        "CREATE TABLE \"tab\there\" (\"a\" BIGINT)",
        "CREATE TABLE \"tab_here\" (\"a\" BIGINT)",
    );
}

#[test]
fn system_column_names() {
    case(
        SYSTEM_COLUMN_NAMES,
        &[],
        "CREATE TABLE \"a\" (\"xmin\" BIGINT)",
        "CREATE TABLE \"a\" (\"xmin_2\" BIGINT)",
    );
    case(
        SYSTEM_COLUMN_NAMES,
        &["CREATE TABLE \"a\" (\"b\" BIGINT)"],
        "ALTER TABLE \"a\" ADD COLUMN \"CTID\" BIGINT",
        "ALTER TABLE \"a\" ADD COLUMN \"ctid_2\" BIGINT",
    );
}

#[test]
fn column_count() {
    let cols = |n: usize| (0..n).map(|i| format!("\"c{i}\" BIGINT")).collect::<Vec<_>>().join(", ");
    let at_limit = format!("CREATE TABLE \"wide\" ({})", cols(1600));
    case(COLUMN_COUNT, &[], &format!("CREATE TABLE \"wide\" ({})", cols(1601)), &at_limit);
    case(
        COLUMN_COUNT,
        &[&at_limit],
        "ALTER TABLE \"wide\" ADD COLUMN \"one_more\" BIGINT",
        "SELECT COUNT(*) FROM \"wide\"",
    );
}

#[test]
fn alter_table() {
    case(
        ALTER_TABLE,
        &[TARGET],
        "ALTER TABLE \"dynamodb\".\"t\" ADD COLUMN \"a\" BIGINT, ADD COLUMN \"b\" BIGINT",
        "ALTER TABLE \"dynamodb\".\"t\" ADD COLUMN \"a\" BIGINT",
    );
    case(
        ALTER_TABLE,
        &[TARGET],
        "ALTER TABLE \"dynamodb\".\"t\" ADD COLUMN \"k\" VARCHAR(100) COLLATE CASE_SENSITIVE",
        "ALTER TABLE \"dynamodb\".\"t\" ADD COLUMN \"k\" VARCHAR(100)",
    );
}

#[test]
fn untyped_parameters() {
    case_with(
        UNTYPED_PARAMETER,
        &[STAGE],
        ("SELECT $1, \"_ddb_key\" FROM \"stage\"", &[Bind::Text(3)]),
        ("SELECT CAST($1 AS VARCHAR(65535)), \"_ddb_key\" FROM \"stage\"", &[Bind::Text(3)]),
    );
    case_with(
        UNTYPED_PARAMETER,
        &[],
        ("SELECT TO_VARBYTE($1, 'hex')", &[Bind::Text(4)]),
        ("SELECT TO_VARBYTE(CAST($1 AS VARCHAR(65535)), 'hex')", &[Bind::Text(4)]),
    );
}

#[test]
fn binds_of_types_redshift_lacks() {
    let sql = "INSERT INTO \"r\" (\"raw\") VALUES ($1)";
    case_with(BIND_TYPES, &[], (sql, &[Bind::Bytes]), (sql, &[Bind::Text(10)]));
}

#[test]
fn postgres_only_syntax() {
    let t = "CREATE TABLE \"a\" (\"k\" VARCHAR(10) COLLATE CASE_SENSITIVE, \"v\" BIGINT)";
    case(POSTGRES_ONLY, &[t], "CREATE INDEX \"i\" ON \"a\" (\"k\")", "SELECT COUNT(*) FROM \"a\"");
    case(POSTGRES_ONLY, &[t], "TRUNCATE \"a\"", "DELETE FROM \"a\"");
    case(
        POSTGRES_ONLY,
        &[t],
        "INSERT INTO \"a\" (\"k\", \"v\") VALUES ('x', 1) ON CONFLICT (\"k\") DO NOTHING",
        "INSERT INTO \"a\" (\"k\", \"v\") VALUES ('x', 1)",
    );
    case(POSTGRES_ONLY, &[t], "DELETE FROM \"a\" RETURNING \"k\"", "DELETE FROM \"a\"");
    case(POSTGRES_ONLY, &[], "CREATE TABLE \"b\" (\"j\" JSONB)", "CREATE TABLE \"b\" (\"j\" SUPER)");
    case(POSTGRES_ONLY, &[], "CREATE TABLE \"b\" (\"j\" BYTEA)", "CREATE TABLE \"b\" (\"j\" VARBYTE(100))");
}

#[test]
fn correlated_subquery_patterns() {
    let guard = |cond: &str| format!("DELETE FROM \"stage\" WHERE {cond}");
    let row = "EXISTS (SELECT 1 FROM \"dynamodb\".\"t\" AS cur WHERE cur.\"_ddb_key\" = \"stage\".\"_ddb_key\" AND cur.\"_ddb_version\" >= \"stage\".\"_ddb_version\")";
    let tomb = "EXISTS (SELECT 1 FROM \"_dynashift\".\"tombstones\" AS tomb WHERE tomb.item_key = \"stage\".\"_ddb_key\")";
    case(CORRELATED_SUBQUERIES, &[STAGE, TARGET], &guard(&format!("{row} OR {tomb}")), &guard(row));
    case(
        CORRELATED_SUBQUERIES,
        &[STAGE, TARGET],
        "SELECT 1 FROM \"stage\" AS s WHERE EXISTS (SELECT 1 FROM \"dynamodb\".\"t\" AS a WHERE EXISTS \
         (SELECT 1 FROM \"dynamodb\".\"t\" AS b WHERE b.\"_ddb_key\" = s.\"_ddb_key\"))",
        "SELECT 1 FROM \"stage\" AS s WHERE EXISTS (SELECT 1 FROM \"dynamodb\".\"t\" AS a WHERE EXISTS \
         (SELECT 1 FROM \"dynamodb\".\"t\" AS b WHERE b.\"_ddb_key\" = a.\"_ddb_key\"))",
    );
    case(
        CORRELATED_SUBQUERIES,
        &[STAGE, TARGET],
        "SELECT 1 FROM \"stage\" AS s LEFT JOIN \"dynamodb\".\"t\" AS a ON a.\"_ddb_key\" IN (SELECT \"_ddb_key\" FROM \"stage\")",
        "SELECT 1 FROM \"stage\" AS s LEFT JOIN \"dynamodb\".\"t\" AS a ON a.\"_ddb_key\" = s.\"_ddb_key\"",
    );
}

#[test]
fn super_is_never_a_key() {
    case(
        SUPER_KEYS,
        &[],
        "CREATE TABLE \"a\" (\"doc\" SUPER, \"k\" BIGINT) DISTKEY(\"doc\")",
        "CREATE TABLE \"a\" (\"doc\" SUPER, \"k\" BIGINT) DISTKEY(\"k\")",
    );
}

#[test]
fn keys_compare_with_case() {
    case(
        CASE_SENSITIVE_KEYS,
        &[],
        "CREATE TABLE \"a\" (\"_ddb_key\" VARCHAR(65535), \"v\" BIGINT)",
        "CREATE TABLE \"a\" (\"_ddb_key\" VARCHAR(65535) COLLATE CASE_SENSITIVE, \"v\" BIGINT)",
    );
    case(
        CASE_SENSITIVE_KEYS,
        &[],
        "CREATE TABLE \"tombstones\" (source_table VARCHAR(65535) NOT NULL, item_key VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL)",
        "CREATE TABLE \"tombstones\" (source_table VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL, item_key VARCHAR(65535) COLLATE CASE_SENSITIVE NOT NULL)",
    );
}

#[test]
fn value_sizes() {
    let big = "x".repeat(65_536);
    case(
        VALUE_SIZE,
        &[],
        &format!("INSERT INTO \"r\" (\"t\") VALUES ('{big}')"),
        &format!("INSERT INTO \"r\" (\"t\") VALUES ('{}')", &big[..65_535]),
    );
    let sql = "INSERT INTO \"r\" (\"t\") VALUES ($1)";
    case_with(VALUE_SIZE, &[], (sql, &[Bind::Text(70_000)]), (sql, &[Bind::Text(65_535)]));
}

#[test]
fn statement_size() {
    let huge = format!("SELECT '{}'", "x".repeat(17 * 1024 * 1024));
    assert!(huge.len() > 16 * 1024 * 1024);
    let mut rules = RedshiftRules::new();
    assert!(rules.check(&huge, &[]).iter().any(|v| v.rule == STATEMENT_SIZE));
    assert!(RedshiftRules::new().check("SELECT 1", &[]).is_empty());
}

#[test]
fn data_api_calls() {
    let mut rules = RedshiftRules::new();
    let many: Vec<String> = (0..41).map(|_| "SELECT 1".to_string()).collect();
    assert!(rules.check_call(&many).iter().any(|v| v.rule == DATA_API_CALLS));
    let long = vec![format!("SELECT '{}'", "x".repeat(100_000))];
    assert!(rules.check_call(&long).iter().any(|v| v.rule == DATA_API_CALLS));
    assert!(rules.check_call(&many[..40]).is_empty());
    assert!(rules.check_call(&[]).iter().any(|v| v.rule == DATA_API_CALLS));
}

#[test]
fn copy_json_auto_column_names() {
    let copy = |col: &str| {
        format!(
            "COPY \"stage\" (\"_ddb_key\", \"{col}\") FROM 's3://b/m.json' IAM_ROLE 'arn:aws:iam::1:role/r' \
             FORMAT AS JSON 'auto' GZIP MANIFEST"
        )
    };
    case(COPY_JSON_AUTO, &[], &copy("C0"), &copy("c0"));
}

#[test]
fn external_schemas_over_kinesis_follow_the_documented_grammar() {
    let good = "CREATE EXTERNAL SCHEMA IF NOT EXISTS \"kds\" FROM KINESIS IAM_ROLE 'arn:aws:iam::123456789012:role/r'";
    for bad in [
        "CREATE EXTERNAL SCHEMA \"kds\" FROM KINESIS",
        "CREATE EXTERNAL SCHEMA \"kds\" FROM KAFKA IAM_ROLE default",
        "CREATE EXTERNAL SCHEMA \"kds\" FROM KINESIS IAM_ROLE 'arn:aws:iam::1:role/a, arn:aws:iam::1:role/b'",
        "CREATE EXTERNAL SCHEMA \"kds\" FROM KINESIS IAM_ROLE default AUTHENTICATION iam",
    ] {
        case(EXTERNAL_SCHEMA, &[], bad, good);
    }
    case(
        EXTERNAL_SCHEMA,
        &[],
        "CREATE EXTERNAL SCHEMA kds FROM KINESIS IAM_ROLE 'my_role'",
        "CREATE EXTERNAL SCHEMA kds FROM KINESIS REGION 'eu-west-1' IAM_ROLE default",
    );
}

#[test]
fn streaming_views_follow_the_documented_grammar() {
    let columns =
        "approximate_arrival_timestamp, partition_key, shard_id, sequence_number, refresh_time, kinesis_data";
    let good =
        format!("CREATE MATERIALIZED VIEW cdc.v AUTO REFRESH YES AS SELECT {columns} FROM kds.\"my-stream\"");
    for bad in [
        format!("CREATE MATERIALIZED VIEW IF NOT EXISTS cdc.v AS SELECT {columns} FROM kds.s"),
        format!("CREATE MATERIALIZED VIEW cdc.v AUTO REFRESH YES BACKUP NO AS SELECT {columns} FROM kds.s"),
        format!("CREATE MATERIALIZED VIEW cdc.v AUTO REFRESH YES AS SELECT {columns} FROM kds.s ORDER BY shard_id"),
        "CREATE MATERIALIZED VIEW cdc.v AS SELECT shard_id, payload FROM kds.s".to_string(),
        "CREATE MATERIALIZED VIEW cdc.v AS SELECT a.shard_id FROM kds.s a JOIN kds.t b ON a.shard_id = b.shard_id"
            .to_string(),
    ] {
        case(STREAMING_VIEW, &[], &bad, &good);
    }
    // The query is checked as any statement too.
    let leader = format!("CREATE MATERIALIZED VIEW cdc.v AS SELECT {columns}, NOW() AS t FROM kds.s");
    let mut rules = RedshiftRules::new();
    assert!(fired(&mut rules, &leader, &[]).contains(&LEADER_NODE_ONLY));
    let attributes = format!(
        "CREATE MATERIALIZED VIEW cdc.v BACKUP NO DISTKEY(shard_id) SORTKEY(shard_id, sequence_number) \
         AUTO REFRESH NO AS SELECT {columns}, JSON_PARSE(kinesis_data) AS payload FROM kds.s \
         WHERE CAN_JSON_PARSE(kinesis_data)"
    );
    assert_eq!(fired(&mut rules, &attributes, &[]), Vec::<Rule>::new());
}

/// Every rule has a case above that makes it fire.
#[test]
fn every_rule_is_exercised() {
    assert_eq!(RULES.len(), 21);
    let names: std::collections::HashSet<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), RULES.len(), "two rules share a name");
}
