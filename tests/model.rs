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
use dynashift::warehouse::pg_data_api::{DataApiOnPostgres, DataApiOnPostgresWarehouse};
use dynashift::warehouse::postgres::{PgSettings, PostgresWarehouse};
use dynashift::warehouse::redshift_wire::RedshiftWireWarehouse;
use dynashift::warehouse::Warehouse;
use dynashift_core::number::Number;
use dynashift_core::types::ColumnMode;
use dynashift_core::value::{AttrValue, Item};
use dynashift_testkit::{Event, EventKindGen, Rng};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::cell::Cell;
use support::oracle::{self, RecordWriter};
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
    .prop_map(|s| {
        let n = Number::parse(&s).unwrap();
        // The model holds the product's number: it must be the number the test meant.
        assert_eq!(Some(oracle::Decimal::of(&n)), oracle::Decimal::parse(&s), "{s}");
        AttrValue::N(n)
    })
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

/// (table, key, milliseconds since the change before — 0 for the same time, step).
type Steps = Vec<(usize, usize, u8, Step)>;

fn step() -> impl Strategy<Value = (usize, usize, u8, Step)> {
    let attrs = || prop::collection::vec((0..ATTRS.len(), value()), 0..4);
    (
        0usize..2,
        0usize..4,
        prop_oneof![2 => Just(0u8), 3 => 1u8..4],
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

/// Turns steps into the events DynamoDB would emit, in the order they happened. Changes may
/// share a millisecond, even changes of one item (DynamoDB's time is approximate).
fn history(steps: &[(usize, usize, u8, Step)]) -> Vec<Event> {
    let mut live: BTreeMap<(usize, usize), Item> = BTreeMap::new();
    let mut events = Vec::new();
    let mut micros = 1_764_000_000_000_000i64;
    for (table, key, gap, step) in steps {
        micros += 1000 * i64::from(*gap);
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
        events.push(Event { table: name, keys: k, kind, image, old_image: old, micros });
    }
    events
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

/// Feeds `lines` through the pipeline in reads cut at `cuts`, as the run loop receives them,
/// its state machine deciding what becomes a batch: a read whose length is a multiple of
/// three arrives while the warehouse still applies the batch before (the others once it has
/// finished), and one whose length is a multiple of four is full (the source has a backlog,
/// so it is folded into the next batch). Returns the warehouse and the batch each record
/// joined.
fn replicate_into<W: Warehouse>(
    warehouse: W,
    config: Config,
    lines: &[String],
    cuts: &[usize],
) -> (W, Vec<usize>) {
    let mut pipeline = Pipeline::new(config, warehouse).unwrap();
    let records = support::records(lines);
    let mut batch_of = Vec::with_capacity(records.len());
    let mut start = 0;
    let mut cut = cuts.iter().cycle();
    while start < records.len() {
        let n = (*cut.next().unwrap_or(&1)).max(1);
        let end = (start + n).min(records.len());
        if !n.is_multiple_of(3) {
            pipeline.settle().unwrap();
        }
        // What is read now joins the batch handed over next.
        batch_of.resize(end, pipeline.batches_planned() as usize);
        pipeline.read(records[start..end].to_vec(), !n.is_multiple_of(4)).unwrap();
        start = end;
    }
    pipeline.finish().unwrap();
    assert_eq!(pipeline.summary.rejects, 0);
    assert_eq!(pipeline.summary.records, records.len() as u64, "every record was applied");
    (pipeline.into_parts().1, batch_of)
}

fn replicate(
    lines: &[String],
    cuts: &[usize],
    mode: ColumnMode,
    deletes: &str,
) -> (support::Tables, Vec<usize>) {
    let warehouse = DuckDbWarehouse::open(Path::new(":memory:"), "dynamodb").unwrap();
    let (mut warehouse, batch_of) = replicate_into(warehouse, config(mode, deletes), lines, cuts);
    (support::read_back(&mut warehouse), batch_of)
}

/// Records in the order they arrive, and which event each one carries.
struct Delivery {
    lines: Vec<String>,
    events: Vec<usize>,
}

impl Delivery {
    /// The place (numbered from 1, as `support::records` numbers them) of the first copy of
    /// event `e`: later copies are re-deliveries, recognised by their `eventID`.
    fn places(&self, e: usize) -> Vec<String> {
        let first = self.events.iter().position(|&x| x == e).expect("every event is delivered");
        vec![(first + 1).to_string()]
    }

    /// Where each event first arrives.
    fn first_arrivals(&self) -> BTreeMap<usize, usize> {
        let mut first = BTreeMap::new();
        for (i, &e) in self.events.iter().enumerate() {
            first.entry(e).or_insert(i);
        }
        first
    }
}

/// Random histories as Kinesis delivers them: some records twice (re-spelled, as a relay
/// may re-serialise them), shuffled within a window, each event in µs or ms precision. One
/// item's changes of the same millisecond keep their order (they share a shard, which
/// orders them); their re-deliveries may come anywhere later.
fn delivered(events: &[Event], seed: u64, window: usize) -> Delivery {
    let mut rng = Rng::new(seed);
    let mut copies: Vec<(usize, String)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let micros = rng.chance(50);
        let times = if rng.chance(20) { 2 } else { 1 };
        for _ in 0..times {
            let line = RecordWriter { rng: &mut rng }.kinesis_record(e, micros, i as u64);
            copies.push((i, line));
        }
    }
    dynashift_testkit::shuffle_within_windows(&mut copies, window, &mut rng);
    // Same item, same time: the first copies take the group's earliest places in the
    // order the changes happened; the other copies keep the later places.
    let mut groups: BTreeMap<(String, String, i64), Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        groups.entry((e.table.clone(), oracle::key_name(&e.keys), e.micros)).or_default().push(i);
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        let places: Vec<usize> = (0..copies.len()).filter(|&p| members.contains(&copies[p].0)).collect();
        let mut firsts = Vec::new();
        let mut rest = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for &p in &places {
            if seen.insert(copies[p].0) {
                firsts.push(copies[p].clone());
            } else {
                rest.push(copies[p].clone());
            }
        }
        firsts.sort_by_key(|(e, _)| *e);
        for (p, copy) in places.into_iter().zip(firsts.into_iter().chain(rest)) {
            copies[p] = copy;
        }
    }
    let (events, lines) = copies.into_iter().unzip();
    Delivery { lines, events }
}

/// How deletes and TTL expiries are kept: `"hard"` removes both rows; `"soft"` flags a
/// deleted row and keeps an expired one (`ttl_deletes = "keep"`).
/// `version` and `sequences` give what the source stores for an event.
fn final_rows(
    events: &[Event],
    mode: ColumnMode,
    deletes: &str,
    version: impl Fn(usize) -> i64,
    sequences: impl Fn(usize) -> Vec<String>,
) -> support::Tables {
    // The last change of each item in the order they happened wins: later changes have
    // later times, and changes of the same time arrive in order.
    let mut last: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        last.insert((e.table.clone(), oracle::key_name(&e.keys)), i);
    }
    let names = key_names();
    let mut out = support::Tables::new();
    for ((table, key), i) in last {
        let e = &events[i];
        let soft = deletes == "soft";
        let (image, deleted) = match (e.kind, &e.image) {
            (EventKindGen::Insert | EventKindGen::Modify, Some(image)) => (image, false),
            (EventKindGen::Remove, _) if soft => (e.old_image.as_ref().expect("a delete's old image"), true),
            (EventKindGen::Expire, _) if soft => {
                (e.old_image.as_ref().expect("an expiry's old image"), false)
            }
            _ => continue,
        };
        let row = support::Row {
            cells: support::expected_cells(image, mode, &names[&table]),
            deleted,
            event: Some(oracle::stored_event(e.kind).to_string()),
            version: Some(version(i)),
            sequences: Some(sequences(i)),
        };
        out.entry(table).or_default().insert(key, row);
    }
    out
}

/// Cases worth having, counted over all runs: the test fails if a kind never occurred.
#[derive(Default)]
struct Seen {
    /// A delete read a batch before an older change of its item, which it must block.
    delete_before_older_change: Cell<usize>,
    /// Two changes of one item with the same time, read in different batches.
    tie_across_batches: Cell<usize>,
}

impl Seen {
    /// Counts the cases in `delivery` as it was cut into batches (`batch`: each record's).
    fn count(&self, events: &[Event], delivery: &Delivery, batch: &[usize]) {
        let first = delivery.first_arrivals();
        for (&a, &pa) in &first {
            for (&b, &pb) in &first {
                let (ea, eb) = (&events[a], &events[b]);
                if a == b || ea.table != eb.table || ea.keys != eb.keys || batch[pa] >= batch[pb] {
                    continue;
                }
                let a_deletes = matches!(ea.kind, EventKindGen::Remove | EventKindGen::Expire);
                if a_deletes && eb.micros < ea.micros {
                    self.delete_before_older_change.set(self.delete_before_older_change.get() + 1);
                }
                if ea.micros == eb.micros {
                    self.tie_across_batches.set(self.tie_across_batches.get() + 1);
                }
            }
        }
    }

    fn assert_all_seen(&self) {
        let (d, t) = (self.delete_before_older_change.get(), self.tie_across_batches.get());
        eprintln!("{d} deletes read a batch before an older change; {t} ties split across batches");
        assert!(d > 0, "no delete was ever read a batch before an older change of its item");
        assert!(t > 0, "no two changes of one time were ever read in different batches");
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default)
}

/// One case: the changes, the delivery's seed and shuffle window, the cuts into reads.
fn case() -> impl Strategy<Value = (Steps, u64, usize, Vec<usize>)> {
    (prop::collection::vec(step(), 1..40), any::<u64>(), 1usize..8, prop::collection::vec(1usize..12, 1..6))
}

/// Runs `test` on `cases` cases of `strategy`; a failure is shrunk and reported.
fn run_cases<S: Strategy>(
    cases: u32,
    shrink: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner =
        TestRunner::new(ProptestConfig { cases, max_shrink_iters: shrink, ..ProptestConfig::default() });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Kinesis records: the stored version is the change's time, the stored sequence one of
/// the places its copies were read at.
fn final_kinesis_rows(
    events: &[Event],
    delivery: &Delivery,
    mode: ColumnMode,
    deletes: &str,
) -> support::Tables {
    final_rows(events, mode, deletes, |e| events[e].micros, |e| delivery.places(e))
}

/// The oracle's own checks: an oracle that is wrong proves nothing.
#[test]
fn the_oracle_reads_numbers_and_json_right() {
    support::oracle::oracle_checks();
}

/// Random histories into DuckDB in `mode` with `deletes`, compared with the model's final
/// state; over its cases the interesting interleavings must have happened.
fn warehouse_equals_model(mode: ColumnMode, deletes: &str) {
    let seen = Seen::default();
    run_cases(cases(256), 200, case(), |(steps, seed, window, cuts)| {
        let events = history(&steps);
        let delivery = delivered(&events, seed, window);
        let (actual, batch_of) = replicate(&delivery.lines, &cuts, mode, deletes);
        seen.count(&events, &delivery, &batch_of);
        support::assert_tables_equal(&actual, &final_kinesis_rows(&events, &delivery, mode, deletes));
        Ok(())
    });
    seen.assert_all_seen();
}

/// A backlog past `max_batch_memory` goes to disk and comes back a part of the keys at a
/// time, each part a batch of its own: the tables still equal the model, and every record
/// is counted once.
#[test]
fn spilled_backlogs_equal_the_model() {
    let spills = std::sync::atomic::AtomicU64::new(0);
    run_cases(cases(256), 200, case(), |(steps, seed, window, cuts)| {
        let events = history(&steps);
        let delivery = delivered(&events, seed, window);
        let mut config = config(ColumnMode::Typed, "hard");
        config.defaults.max_batch_memory = Some(1_000);
        config.defaults.spill = Some(100_000_000);
        let warehouse = DuckDbWarehouse::open(Path::new(":memory:"), "dynamodb").unwrap();
        let mut pipeline = Pipeline::new(config, warehouse).unwrap();
        let records = support::records(&delivery.lines);
        let mut start = 0;
        for n in cuts.iter().cycle() {
            if start == records.len() {
                break;
            }
            let end = (start + n.max(&1)).min(records.len());
            // Every read full: the source has a backlog, so a full batch spills.
            pipeline.read(records[start..end].to_vec(), false).unwrap();
            start = end;
        }
        pipeline.finish().unwrap();
        assert_eq!(pipeline.summary.records, records.len() as u64, "every record counted once");
        let (planner, mut warehouse, _) = pipeline.into_parts();
        spills.fetch_add(planner.spills(), std::sync::atomic::Ordering::Relaxed);
        let expected = final_kinesis_rows(&events, &delivery, ColumnMode::Typed, "hard");
        support::assert_tables_equal(&support::read_back(&mut warehouse), &expected);
        Ok(())
    });
    assert!(spills.into_inner() > 0, "no case spilled");
}

#[test]
fn typed_tables_equal_the_model() {
    warehouse_equals_model(ColumnMode::Typed, "hard");
}

#[test]
fn varchar_tables_equal_the_model() {
    warehouse_equals_model(ColumnMode::Varchar, "hard");
}

/// The reference design's layout: text columns under lower-cased names, and `dist_key`.
#[test]
fn reference_layout_tables_equal_the_model() {
    warehouse_equals_model(ColumnMode::Reference, "hard");
}

#[test]
fn document_tables_equal_the_model() {
    warehouse_equals_model(ColumnMode::Document, "hard");
}

/// Soft deletes, and TTL expiries kept (`ttl_deletes = "keep"`).
#[test]
fn soft_deleted_tables_equal_the_model() {
    warehouse_equals_model(ColumnMode::Typed, "soft");
}

/// DynamoDB Streams records carry whole seconds, so most changes of one item share a time;
/// their sequence numbers (growing past a power of ten, compared as numbers) decide.
#[test]
fn streams_records_order_by_sequence_number() {
    run_cases(cases(256), 200, case(), |(steps, seed, _, cuts)| {
        let events = history(&steps);
        let mut rng = Rng::new(seed);
        let sequence = |i: usize| 99_999_990 + 7 * i as u128;
        let mut lines: Vec<String> = events
            .iter()
            .enumerate()
            .map(|(i, e)| RecordWriter { rng: &mut rng }.streams_record(e, sequence(i)))
            .collect();
        // Streams records are delivered once and in order per shard; batches may still split
        // one item's changes, and a whole batch may be replayed after a crash.
        let replay: Vec<String> =
            lines.iter().take(rng.below(lines.len() as u64 + 1) as usize).cloned().collect();
        lines.extend(replay);
        let (actual, _) = replicate(&lines, &cuts, ColumnMode::Typed, "hard");
        let expected = final_rows(
            &events,
            ColumnMode::Typed,
            "hard",
            |e| events[e].micros / 1_000_000 * 1_000_000,
            |e| vec![sequence(e).to_string()],
        );
        support::assert_tables_equal(&actual, &expected);
        Ok(())
    });
}

/// The same histories against a real PostgreSQL server: every column mode, soft deletes,
/// with PostgreSQL's plan and with Redshift's.
#[test]
fn postgres_equals_model() {
    let server = support::pg::PgServer::start();
    let url = server.create_db("model");
    let redshift_url = redshift_on_pg::prepare(&server, "model");
    let checked = Cell::new(0);
    run_cases(server_cases(), 100, case(), |(steps, seed, window, cuts)| {
        let events = history(&steps);
        let delivery = delivered(&events, seed, window);
        let runs = [
            (ColumnMode::Typed, "hard"),
            (ColumnMode::Varchar, "hard"),
            (ColumnMode::Document, "hard"),
            (ColumnMode::Reference, "hard"),
            (ColumnMode::Typed, "soft"),
        ];
        // PostgreSQL's plan; Redshift's; Redshift's as the Data API sends it (calls of
        // literal-only SQL, each its own transaction).
        let targets = [Target::Postgres, Target::RedshiftWire, Target::RedshiftDataApi];
        for ((mode, deletes), target) in runs.iter().flat_map(|r| targets.map(|t| (*r, t))) {
            server.exec(
                "model",
                "DROP SCHEMA IF EXISTS dynamodb CASCADE; DROP SCHEMA IF EXISTS _dynashift CASCADE",
            );
            // Redshift's plan logs in as Redshift would let it: no catalog tables it lacks.
            let login = if target == Target::Postgres { &url } else { &redshift_url };
            let settings = PgSettings::parse(login, "PGPASSWORD", "dynamodb").unwrap();
            let (config, lines) = (config(mode, deletes), &delivery.lines);
            let actual = match target {
                Target::Postgres => {
                    let warehouse = PostgresWarehouse::open(settings).unwrap();
                    let mut warehouse = replicate_into(warehouse, config, lines, &cuts).0;
                    support::read_back(&mut warehouse)
                }
                Target::RedshiftWire => {
                    let warehouse =
                        RedshiftWireWarehouse::on_postgres(settings, &RedshiftOnPostgres).unwrap();
                    replicate_checked(warehouse, config, lines, &cuts, &checked)
                }
                Target::RedshiftDataApi => {
                    let mode = DataApiOnPostgres::new(40, None);
                    let warehouse =
                        DataApiOnPostgresWarehouse::open(settings, &RedshiftOnPostgres, mode).unwrap();
                    replicate_checked(warehouse, config, lines, &cuts, &checked)
                }
            };
            support::assert_tables_equal(&actual, &final_kinesis_rows(&events, &delivery, mode, deletes));
        }
        Ok(())
    });
    assert!(checked.get() > 100, "only {} Redshift statements were checked", checked.get());
}

/// The warehouses the model is replicated into on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Postgres,
    /// Redshift's plan, staged over the connection.
    RedshiftWire,
    /// Redshift's plan in Data API calls.
    RedshiftDataApi,
}

/// Replicates into `warehouse` with every batch's Redshift statements checked against
/// Redshift's rules (counted in `checked`), and reads it back.
fn replicate_checked<W: Warehouse + support::ReadBack>(
    warehouse: W,
    config: Config,
    lines: &[String],
    cuts: &[usize],
    checked: &Cell<usize>,
) -> support::Tables {
    let (checked_warehouse, _) =
        replicate_into(CheckedRedshift::new(warehouse, "dynamodb"), config, lines, cuts);
    checked.set(checked.get() + checked_warehouse.checked());
    let mut warehouse = checked_warehouse.inner;
    support::read_back(&mut warehouse)
}

/// Cases of the tests against a PostgreSQL server, each a dozen replications: a sixteenth
/// of `PROPTEST_CASES`, at least 16.
fn server_cases() -> u32 {
    (cases(256) / 16).max(16)
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
                let message = e.to_string();
                assert!(message.contains("as a crash would"), "{e}");
                // A stop before a batch's first call leaves nothing of it committed: only a
                // stop after some of its calls tests the resumption of a partial batch.
                if !message.contains("call 1 of ") {
                    stops += 1;
                }
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
    let strategy = (
        prop::collection::vec(step(), 1..40),
        any::<u64>(),
        1usize..8,
        prop::collection::vec(4usize..30, 1..6),
        2usize..5,
    );
    let total_stops = Cell::new(0);
    run_cases(server_cases(), 50, strategy, |(steps, seed, window, cuts, stop_every)| {
        let events = history(&steps);
        let delivery = delivered(&events, seed, window);
        for deletes in ["hard", "soft"] {
            server.exec(
                "calls",
                "DROP SCHEMA IF EXISTS dynamodb CASCADE; DROP SCHEMA IF EXISTS _dynashift CASCADE",
            );
            let settings = PgSettings::parse(&url, "PGPASSWORD", "dynamodb").unwrap();
            let mode = DataApiOnPostgres::new(16, Some(stop_every));
            let warehouse = DataApiOnPostgresWarehouse::open(settings, &RedshiftOnPostgres, mode).unwrap();
            let (mut warehouse, stops) =
                replicate_with_stops(warehouse, config(ColumnMode::Typed, deletes), &delivery.lines, &cuts);
            total_stops.set(total_stops.get() + stops);
            let actual = support::read_back(&mut warehouse);
            support::assert_tables_equal(
                &actual,
                &final_kinesis_rows(&events, &delivery, ColumnMode::Typed, deletes),
            );
        }
        Ok(())
    });
    assert!(total_stops.get() > 0, "no batch was ever stopped after some of its calls");
}

/// A configuration of `config(Typed, "hard")` with a schedule for each of the two tables:
/// `(every, paused)`, `every` one of continuous, a minute, an hour.
fn scheduled_config(schedules: &[(usize, bool)]) -> Config {
    let mut text =
        "[source]\nkind = \"file\"\npath = \"-\"\n[target]\nkind = \"duckdb\"\npath = \":memory:\"\n"
            .to_string();
    for (table, (every, paused)) in ["Alpha", "beta-Table"].iter().zip(schedules) {
        let every = ["0s", "1m", "1h"][*every % 3];
        text.push_str(&format!("[tables.\"{table}\"]\nevery = \"{every}\"\npaused = {paused}\n"));
    }
    Config::parse(&text, Path::new("scheduled.toml")).unwrap()
}

/// Random histories with random schedules and pauses, time passing between reads and the
/// process restarting at random (held changes gone, reading again from the committed
/// positions): positions never pass a change a table still holds, so a last pass applying
/// every table (`sync --once --all`) leaves the warehouse equal to the model. A paused table
/// is never applied before that pass.
#[test]
fn schedules_and_restarts_equal_model() {
    let strategy = (
        case(),
        prop::collection::vec((0usize..3, prop::bool::weighted(0.25)), 2),
        prop::collection::vec(prop::bool::weighted(0.3), 1..8),
        prop::collection::vec(0i64..5_000, 1..8),
    );
    let applied_held = Cell::new(0);
    run_cases(cases(256) / 4, 100, strategy, |((steps, seed, window, cuts), schedules, restarts, gaps)| {
        let events = history(&steps);
        let delivery = delivered(&events, seed, window);
        let records = support::records(&delivery.lines);
        let config = scheduled_config(&schedules);
        let open = |warehouse: DuckDbWarehouse, now: i64| {
            let mut p = Pipeline::new(config.clone(), warehouse).unwrap().with_schedules(&config).unwrap();
            p.set_time(now);
            p
        };
        let mut now = 1_796_601_600;
        let mut pipeline = open(DuckDbWarehouse::open(Path::new(":memory:"), "dynamodb").unwrap(), now);
        // Each restart flag is used once: a paused table holds positions back, so restarts
        // without end would read the same records for ever.
        let (mut start, mut cut, mut restart, mut gap) =
            (0, cuts.iter().cycle(), restarts.iter(), gaps.iter().cycle());
        while start < records.len() {
            let n = (*cut.next().unwrap_or(&1)).max(1);
            let end = (start + n).min(records.len());
            now += gap.next().copied().unwrap_or(0);
            pipeline.set_time(now);
            pipeline.read(records[start..end].to_vec(), !n.is_multiple_of(4)).unwrap();
            pipeline.settle().unwrap();
            start = end;
            if *restart.next().unwrap_or(&false) {
                let warehouse = pipeline.into_parts().1;
                pipeline = open(warehouse, now);
                start = pipeline.checkpoints().unwrap().get("s").map_or(0, |s| s.parse().unwrap());
            }
        }
        let mut warehouse = pipeline.into_parts().1;
        let before_all = support::read_back(&mut warehouse);
        for (table, (_, paused)) in ["Alpha", "beta-Table"].iter().zip(&schedules) {
            prop_assert!(!paused || !before_all.contains_key(*table), "paused {table} was applied");
        }
        // The last pass: every table, from the committed positions.
        let mut pipeline = Pipeline::new(config.clone(), warehouse).unwrap();
        let start = pipeline.checkpoints().unwrap().get("s").map_or(0, |s| s.parse::<usize>().unwrap());
        if start < records.len() {
            applied_held.set(applied_held.get() + 1);
        }
        pipeline.read(records[start.min(records.len())..].to_vec(), true).unwrap();
        pipeline.finish().unwrap();
        let mut warehouse = pipeline.into_parts().1;
        support::assert_tables_equal(
            &support::read_back(&mut warehouse),
            &final_kinesis_rows(&events, &delivery, ColumnMode::Typed, "hard"),
        );
        Ok(())
    });
    assert!(applied_held.get() > 0, "no case held changes until the last pass");
}
