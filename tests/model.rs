//! Model-based property test: random histories over several tables, delivered as DynamoDB
//! would (duplicated, shuffled within a window, cut into random batches), must leave the
//! warehouse equal to the model's final state, value for value, in every column mode.
#![cfg(feature = "duckdb")]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use dynashift::config::Config;
use dynashift::pipeline::Pipeline;
use dynashift::warehouse::duckdb::DuckDbWarehouse;
use dynashift::warehouse::pg_data_api::DataApiOnPostgres;
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift::warehouse::Warehouse;
use dynashift::workload::{kinesis_record, streams_record, Event, EventKindGen, Model, Rng};
use dynashift_core::dialect::{Dialect, Postgres};
use dynashift_core::number::Number;
use dynashift_core::types::ColumnMode;
use dynashift_core::value::{AttrValue, Item};
use proptest::prelude::*;
use support::redshift_on_pg::{self, CheckedRedshift, RedshiftOnPostgres};

const ATTRS: [&str; 11] = [
    "a",
    "B",
    "user",
    "select",
    "x\"y; DROP TABLE t;--",
    "naïve",
    "ItemCount",
    "itemCount",
    "_ddb_version",
    "xmin",
    "tab\there",
];

fn number() -> impl Strategy<Value = AttrValue> {
    prop_oneof![
        (-1000i64..1000).prop_map(|i| i.to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775809".to_string()),
        (0u32..100000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b:03}")),
        Just("0.000000000001234".to_string()),
        Just("1.5E+100".to_string()),
        Just("12345678901234567890123456789012345678".to_string()),
        Just("-1E-130".to_string()),
    ]
    .prop_map(|s| AttrValue::N(Number::parse(&s).unwrap()))
}

fn scalar() -> impl Strategy<Value = AttrValue> {
    prop_oneof![
        3 => "[a-zA-Z0-9 '\"\\\\$;é日]{0,12}".prop_map(|s| AttrValue::S(s.into())),
        3 => number(),
        1 => any::<bool>().prop_map(AttrValue::Bool),
        1 => Just(AttrValue::Null),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(AttrValue::B),
        1 => prop::collection::btree_set("[a-c]{1,2}", 1..3).prop_map(|s| AttrValue::Ss(s.into_iter().map(Into::into).collect())),
        1 => prop::collection::btree_set(0u32..50, 1..3)
            .prop_map(|s| AttrValue::Ns(s.into_iter().map(|n| Number::parse(&n.to_string()).unwrap()).collect())),
        1 => prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..3), 1..3).prop_map(|s| AttrValue::Bs(s.into_iter().collect())),
    ]
}

fn value() -> impl Strategy<Value = AttrValue> {
    scalar().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(AttrValue::L),
            prop::collection::btree_map("[a-z\"]{1,3}", inner, 0..3)
                .prop_map(|m| AttrValue::M(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Step {
    /// Put a whole new item (an INSERT or a MODIFY replacing every attribute).
    Put(Vec<(usize, AttrValue)>),
    /// Update: set some attributes and remove others.
    Update(Vec<(usize, AttrValue)>, Vec<usize>),
    Delete,
    Expire,
}

fn step() -> impl Strategy<Value = (usize, usize, Step)> {
    let attrs = || prop::collection::vec((0..ATTRS.len(), value()), 0..4);
    (
        0usize..2,
        0usize..4,
        prop_oneof![
            4 => attrs().prop_map(Step::Put),
            4 => (attrs(), prop::collection::vec(0..ATTRS.len(), 0..2)).prop_map(|(s, r)| Step::Update(s, r)),
            2 => Just(Step::Delete),
            1 => Just(Step::Expire),
        ],
    )
}

fn keys(table: usize, key: usize) -> (String, Item) {
    let mut k = Item::new();
    if table == 0 {
        k.insert("pk".into(), AttrValue::S(format!("p{}", key / 2).into()));
        k.insert("sk".into(), AttrValue::N(Number::parse(&(key % 2).to_string()).unwrap()));
        ("Alpha".into(), k)
    } else {
        k.insert("id".into(), AttrValue::N(Number::parse(&(key * 7).to_string()).unwrap()));
        ("beta-Table".into(), k)
    }
}

/// Turns steps into the events DynamoDB would emit, and the model's final state.
fn history(steps: &[(usize, usize, Step)]) -> (Vec<Event>, Model) {
    let mut live: BTreeMap<(usize, usize), Item> = BTreeMap::new();
    let mut model = Model::default();
    let mut events = Vec::new();
    let mut micros = 1_764_000_000_000_000i64;
    for (table, key, step) in steps {
        micros += 1000 * (1 + (events.len() as i64 % 3));
        let (name, k) = keys(*table, *key);
        let old = live.get(&(*table, *key)).cloned();
        let (kind, image) = match step {
            Step::Put(set) | Step::Update(set, _) => {
                let mut image = match (step, &old) {
                    (Step::Update(..), Some(o)) => o.clone(),
                    _ => Item::new(),
                };
                if let Step::Update(_, remove) = step {
                    for r in remove {
                        image.remove(ATTRS[*r]);
                    }
                }
                for (a, v) in set {
                    image.insert(ATTRS[*a].to_string().into(), v.clone());
                }
                for (kn, kv) in &k {
                    image.insert(kn.clone(), kv.clone());
                }
                (if old.is_some() { EventKindGen::Modify } else { EventKindGen::Insert }, Some(image))
            }
            Step::Delete | Step::Expire if old.is_none() => continue,
            Step::Delete => (EventKindGen::Remove, None),
            Step::Expire => (EventKindGen::Expire, None),
        };
        match &image {
            Some(i) => live.insert((*table, *key), i.clone()),
            None => live.remove(&(*table, *key)),
        };
        let event = Event { table: name, keys: k, kind, image, old_image: old, micros };
        model.apply(&event);
        events.push(event);
    }
    (events, model)
}

fn config(mode: ColumnMode, deletes: &str) -> Config {
    let text = format!(
        "[source]\nkind = \"file\"\npath = \"-\"\n[target]\nkind = \"duckdb\"\npath = \":memory:\"\n\
         [defaults]\ncolumns = \"{}\"\ndeletes = \"{deletes}\"\nttl_deletes = \"{}\"\n",
        mode.as_str(),
        if deletes == "soft" { "keep" } else { "delete" }
    );
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

fn key_names() -> BTreeMap<String, Vec<String>> {
    [
        ("Alpha".to_string(), vec!["pk".to_string(), "sk".to_string()]),
        ("beta-Table".to_string(), vec!["id".to_string()]),
    ]
    .into()
}

/// Feeds `lines` through the pipeline in reads cut at `cuts`; returns the warehouse. A read
/// whose length is a multiple of three is only taken in, to be folded into the next batch,
/// as the run loop does while the warehouse is busy.
fn replicate_into<W: Warehouse>(warehouse: W, config: Config, lines: &[String], cuts: &[usize]) -> W {
    let mut pipeline = Pipeline::new(config, warehouse).unwrap();
    let records = support::records(lines);
    let mut start = 0;
    let mut cut = cuts.iter().cycle();
    while start < records.len() {
        let n = (*cut.next().unwrap_or(&1)).max(1);
        let end = (start + n).min(records.len());
        if n.is_multiple_of(3) {
            pipeline.planner.ingest(records[start..end].to_vec(), 2);
        } else {
            pipeline.process(records[start..end].to_vec()).unwrap();
        }
        start = end;
    }
    if pipeline.planner.pending_records() > 0 {
        pipeline.process(Vec::new()).unwrap();
    }
    assert_eq!(pipeline.summary.rejects, 0);
    pipeline.into_parts().1
}

fn replicate(lines: &[String], cuts: &[usize], mode: ColumnMode, deletes: &str) -> support::Tables {
    let warehouse = DuckDbWarehouse::open(Path::new(":memory:"), "dynamodb").unwrap();
    let mut warehouse = replicate_into(warehouse, config(mode, deletes), lines, cuts);
    support::read_back(&mut warehouse)
}

/// Random histories as DynamoDB emits them: duplicated, shuffled within a window.
fn delivered(events: &[Event], seed: u64, window: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut lines = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let line = kinesis_record(e, rng.chance(50), i as u64);
        if rng.chance(20) {
            lines.push(line.clone());
        }
        lines.push(line);
    }
    dynashift::workload::shuffle_within_windows(&mut lines, window, &mut rng);
    lines
}

/// Live rows with soft deletes and expired items kept: the model's items plus the items
/// whose last change was a TTL expiry.
fn kept_after_expiry(model: &Model) -> BTreeMap<String, BTreeMap<String, Item>> {
    let mut kept = model.tables.clone();
    for (table, items) in &model.expired {
        kept.entry(table.clone()).or_default().extend(items.clone());
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn warehouse_equals_model(
        steps in prop::collection::vec(step(), 1..40),
        seed in any::<u64>(),
        window in 1usize..8,
        cuts in prop::collection::vec(1usize..12, 1..6),
    ) {
        let (events, model) = history(&steps);
        let lines = delivered(&events, seed, window);
        for mode in [ColumnMode::Typed, ColumnMode::Varchar, ColumnMode::Document] {
            let actual = replicate(&lines, &cuts, mode, "hard");
            support::assert_tables_equal(&actual, &support::expected(&model.tables, mode, &key_names()));
        }
        let soft = replicate(&lines, &cuts, ColumnMode::Typed, "soft");
        let kept = kept_after_expiry(&model);
        support::assert_tables_equal(&soft, &support::expected(&kept, ColumnMode::Typed, &key_names()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    /// DynamoDB Streams records carry whole seconds, so most changes of one item share a time;
    /// their sequence numbers (growing past a power of ten, compared as numbers) decide.
    #[test]
    fn streams_records_order_by_sequence_number(
        steps in prop::collection::vec(step(), 1..40),
        seed in any::<u64>(),
        cuts in prop::collection::vec(1usize..12, 1..6),
    ) {
        let (events, model) = history(&steps);
        let mut rng = Rng::new(seed);
        let mut lines: Vec<String> = events
            .iter()
            .enumerate()
            .map(|(i, e)| streams_record(e, 99_999_990 + 7 * i as u128))
            .collect();
        // Streams records are delivered once and in order per shard; batches may still split
        // one item's changes, and a whole batch may be replayed after a crash.
        let replay: Vec<String> = lines.iter().take(rng.below(lines.len() as u64 + 1) as usize).cloned().collect();
        lines.extend(replay);
        let actual = replicate(&lines, &cuts, ColumnMode::Typed, "hard");
        support::assert_tables_equal(&actual, &support::expected(&model.tables, ColumnMode::Typed, &key_names()));
    }
}

/// The same histories against a real PostgreSQL server: every column mode, soft deletes,
/// with PostgreSQL's plan and with Redshift's.
#[test]
fn postgres_equals_model() {
    let server = support::pg::PgServer::start();
    let url = server.create_db("model");
    let redshift_url = redshift_on_pg::prepare(&server, "model");
    let checked = std::cell::Cell::new(0);
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 100,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(step(), 1..40),
        any::<u64>(),
        1usize..8,
        prop::collection::vec(1usize..12, 1..6),
    );
    let result = runner.run(&strategy, |(steps, seed, window, cuts)| {
        let (events, model) = history(&steps);
        let lines = delivered(&events, seed, window);
        let runs = [
            (ColumnMode::Typed, "hard", model.tables.clone()),
            (ColumnMode::Varchar, "hard", model.tables.clone()),
            (ColumnMode::Document, "hard", model.tables.clone()),
            (ColumnMode::Typed, "soft", kept_after_expiry(&model)),
        ];
        // PostgreSQL's plan; Redshift's; Redshift's as the Data API sends it (calls of
        // literal-only SQL, each its own transaction).
        let dialects: [(&'static dyn Dialect, bool); 3] =
            [(&Postgres, false), (&RedshiftOnPostgres, false), (&RedshiftOnPostgres, true)];
        for (mode, deletes, items, (dialect, data_api)) in
            runs.iter().flat_map(|(m, d, i)| dialects.map(|w| (*m, *d, i, w)))
        {
            server.exec(
                "model",
                "DROP SCHEMA IF EXISTS dynamodb CASCADE; DROP SCHEMA IF EXISTS _dynashift CASCADE",
            );
            let redshift = dialect.name() != "postgres";
            // Redshift's plan logs in as Redshift would let it: no catalog tables it lacks.
            let login = if redshift { &redshift_url } else { &url };
            let settings = PgSettings::parse(login, "PGPASSWORD", "dynamodb").unwrap();
            let mut warehouse = PostgresWarehouse::open_with_dialect(settings, dialect).unwrap();
            if data_api {
                warehouse = warehouse.as_data_api(DataApiOnPostgres::new(40, None));
            }
            let mut warehouse = if redshift {
                // Every batch's Redshift statements are checked against Redshift's rules.
                let checked_warehouse = replicate_into(
                    CheckedRedshift::new(warehouse, "dynamodb"),
                    config(mode, deletes),
                    &lines,
                    &cuts,
                );
                checked.set(checked.get() + checked_warehouse.checked());
                checked_warehouse.inner
            } else {
                replicate_into(warehouse, config(mode, deletes), &lines, &cuts)
            };
            let actual = support::read_back(&mut warehouse);
            let expected = support::normalized(&mut warehouse, support::expected(items, mode, &key_names()));
            support::assert_tables_equal(&actual, &expected);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(checked.get() > 100, "only {} Redshift statements were checked", checked.get());
}

/// Like `replicate_into`, but a batch that stops part-way (between two Data API calls, as a
/// crash would) is resumed as a restarted process would: a new pipeline reads the catalog and
/// the committed position, and the records after it are read again. Returns the stops.
fn replicate_with_stops<W: Warehouse>(
    warehouse: W,
    config: Config,
    lines: &[String],
    cuts: &[usize],
) -> (W, usize) {
    let records = support::records(lines);
    let mut pipeline = Pipeline::new(config.clone(), warehouse).unwrap();
    let mut stops = 0;
    let mut start = 0;
    let mut cut = cuts.iter().cycle();
    while start < records.len() {
        let n = (*cut.next().unwrap_or(&1)).max(1);
        let end = (start + n).min(records.len());
        match pipeline.process(records[start..end].to_vec()) {
            Ok(_) => start = end,
            Err(e) => {
                assert!(e.to_string().contains("as a crash would"), "{e}");
                stops += 1;
                let warehouse = pipeline.into_parts().1;
                pipeline = Pipeline::new(config.clone(), warehouse).unwrap();
                let committed = pipeline.checkpoints().unwrap();
                start = committed.get("s").map_or(0, |s| s.parse().unwrap());
            }
        }
    }
    (pipeline.into_parts().1, stops)
}

/// The Data API's calls (here at most 16 statements each, so batches span several calls)
/// stopped at call boundaries and resumed from the committed positions: what committed
/// before a stop is replayed, and the version guards make the replay change nothing.
#[test]
fn data_api_calls_resume_after_stops_between_calls() {
    let server = support::pg::PgServer::start();
    server.create_db("calls");
    let url = redshift_on_pg::prepare(&server, "calls");
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(16);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 50,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(step(), 1..40),
        any::<u64>(),
        1usize..8,
        prop::collection::vec(4usize..30, 1..6),
        2usize..5,
    );
    let total_stops = std::cell::Cell::new(0);
    let result = runner.run(&strategy, |(steps, seed, window, cuts, stop_every)| {
        let (events, model) = history(&steps);
        let lines = delivered(&events, seed, window);
        for (mode, deletes, items) in [
            (ColumnMode::Typed, "hard", model.tables.clone()),
            (ColumnMode::Typed, "soft", kept_after_expiry(&model)),
        ] {
            server.exec(
                "calls",
                "DROP SCHEMA IF EXISTS dynamodb CASCADE; DROP SCHEMA IF EXISTS _dynashift CASCADE",
            );
            let settings = PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap();
            let warehouse = PostgresWarehouse::open_with_dialect(settings, &RedshiftOnPostgres)
                .unwrap()
                .as_data_api(DataApiOnPostgres::new(16, Some(stop_every)));
            let (mut warehouse, stops) =
                replicate_with_stops(warehouse, config(mode, deletes), &lines, &cuts);
            total_stops.set(total_stops.get() + stops);
            let actual = support::read_back(&mut warehouse);
            let expected = support::normalized(&mut warehouse, support::expected(&items, mode, &key_names()));
            support::assert_tables_equal(&actual, &expected);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(total_stops.get() > 0, "no batch was ever stopped between calls");
}
