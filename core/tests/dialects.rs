//! Every statement each dialect emits for representative batches parses with that
//! warehouse's SQL grammar (sqlparser): Redshift cannot run here, so its SQL is checked here.

use dynashift_core::change::{Change, EventKind, Position, Version};
use dynashift_core::dialect::{copy_from_manifest, Dialect, DuckDb, Postgres, Redshift};
use dynashift_core::literal::{inline_params, redshift_literal};
use dynashift_core::naming::NamingStyle;
use dynashift_core::number::Number;
use dynashift_core::plan::{plan_table, DeleteMode, TableOptions, TtlMode};
use dynashift_core::schema::Catalog;
use dynashift_core::sql::{
    applied_counts_query, apply_statements, control_tables, counters_update, counters_update_from_stage,
    schema_changes, stage_columns, AppliedCounts, Layout, Statement,
};
use dynashift_core::types::ColumnMode;
use dynashift_core::value::{key_text, AttrValue, Item};
use sqlparser::dialect::{Dialect as ParserDialect, GenericDialect, PostgreSqlDialect, RedshiftSqlDialect};
use sqlparser::parser::Parser;

fn n(s: &str) -> AttrValue {
    AttrValue::N(Number::parse(s).unwrap())
}

fn change(id: &str, attrs: Vec<(&str, AttrValue)>, event: EventKind, micros: i64) -> Change {
    let mut keys = Item::new();
    keys.insert("user\"Id".into(), AttrValue::S(id.into()));
    keys.insert("order".into(), n("1"));
    let mut image = keys.clone();
    image.extend(attrs.into_iter().map(|(k, v)| (k.to_string(), v)));
    Change {
        table: "Orders;--".into(),
        key_text: key_text(&keys),
        keys,
        new_image: (!event.is_delete()).then(|| image.clone()),
        old_image: event.is_delete().then_some(image),
        event,
        version: Version::new(micros, Some("12345678901234567890123")),
        position: Position::new("shard", "1"),
        ids: Default::default(),
    }
}

/// All statements of a two-batch history (create, then evolve) in every mode and option.
fn statements(d: &dyn Dialect) -> Vec<Statement> {
    let mut out: Vec<Statement> = control_tables(d, &Layout::default());
    for columns in [ColumnMode::Typed, ColumnMode::Varchar, ColumnMode::Document] {
        for deletes in [DeleteMode::Hard, DeleteMode::Soft] {
            let opts =
                TableOptions { columns, naming: NamingStyle::SnakeCase, deletes, ttl_deletes: TtlMode::Keep };
            let mut cat = Catalog::default();
            let batches = vec![
                vec![
                    change(
                        "a",
                        vec![("price", n("10")), ("tags", AttrValue::Ss(vec!["x".into()]))],
                        EventKind::Insert,
                        1,
                    ),
                    change("b", vec![("select", AttrValue::Bool(true))], EventKind::Modify, 2),
                ],
                vec![
                    change(
                        "a",
                        vec![("price", n("19.99")), ("blob", AttrValue::B(vec![1, 2]))],
                        EventKind::Modify,
                        3,
                    ),
                    change("b", vec![], EventKind::Remove, 4),
                    change("c", vec![("x", AttrValue::S("y".into()))], EventKind::Expire, 5),
                ],
            ];
            for batch in batches {
                let plan = plan_table(&mut cat, "Orders;--", batch, opts, d.limits());
                let schema = &cat.tables["Orders;--"];
                let layout = Layout::default();
                out.extend(schema_changes(d, &layout, schema, &plan));
                let stage = stage_columns(d, schema, &plan);
                out.push(Statement::new(d.create_stage("_dynashift_stage", &stage)));
                if d.name() == "redshift" {
                    let manifest = "s3://stage-bucket/dynashift/1/manifest.json";
                    let role = "arn:aws:iam::123456789012:role/dynashift-copy";
                    out.push(Statement::new(
                        copy_from_manifest("_dynashift_stage", &stage, manifest, role, Some("eu-west-1"))
                            .unwrap(),
                    ));
                }
                out.extend(apply_statements(d, &layout, schema, &plan, "_dynashift_stage"));
                out.push(Statement::new(applied_counts_query(d, "_dynashift_stage")));
                out.push(counters_update(d, &layout, "Orders;--", AppliedCounts::default(), 0));
                out.push(counters_update_from_stage(d, &layout, "Orders;--", "_dynashift_stage", 0));
                out.push(Statement::new(d.drop_stage("_dynashift_stage")));
            }
        }
    }
    out
}

fn assert_all_parse(d: &dyn Dialect, parser: &dyn ParserDialect) {
    assert_parse(d.name(), &statements(d).into_iter().map(|s| s.sql).collect::<Vec<_>>(), parser);
}

fn assert_parse(name: &str, all: &[String], parser: &dyn ParserDialect) {
    assert!(all.len() > 100);
    for sql in all {
        if let Err(e) = Parser::parse_sql(parser, sql) {
            panic!("{name} statement does not parse: {e}\n{sql}");
        }
    }
}

#[test]
fn redshift_statements_parse() {
    assert_all_parse(&Redshift, &RedshiftSqlDialect {});
}

/// The Data API takes no parameters: the same statements with their values written in.
#[test]
fn redshift_data_api_statements_parse() {
    let inlined: Vec<String> = statements(&Redshift)
        .iter()
        .map(|s| inline_params(&s.sql, &s.params, redshift_literal).unwrap())
        .collect();
    assert!(inlined.iter().any(|s| s.contains("source_table = 'Orders;--'")));
    if let Some(s) = inlined.iter().find(|s| s.contains('$')) {
        panic!("placeholder left in {s}");
    }
    assert_parse("redshift (data api)", &inlined, &RedshiftSqlDialect {});
}

#[test]
fn postgres_statements_parse() {
    assert_all_parse(&Postgres, &PostgreSqlDialect {});
}

#[test]
fn duckdb_statements_parse() {
    assert_all_parse(&DuckDb, &GenericDialect {});
}

#[test]
fn redshift_types() {
    let all = statements(&Redshift).into_iter().map(|s| s.sql).collect::<Vec<_>>().join("\n");
    assert!(all.contains("SUPER") && all.contains("JSON_PARSE(") && all.contains("VARBYTE(1024000)"));
    assert!(all.contains("TO_VARBYTE(") && all.contains("DISTKEY(\"_ddb_key\") SORTKEY(\"_ddb_key\")"));
    assert!(all.contains("\"_ddb_key\" VARCHAR(65535) COLLATE CASE_SENSITIVE") && all.contains("GETDATE()"));
    assert!(!all.contains("CURRENT_TIMESTAMP") && !all.contains("FROM_HEX(") && !all.contains("AS BOOLEAN"));
    assert!(all.contains("FORMAT AS JSON 'auto' GZIP MANIFEST"));
    assert!(all.contains("VARCHAR(65535)") && !all.contains("VARCHAR,") && !all.contains("VARCHAR)"));
}
