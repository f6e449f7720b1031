//! The planner's decisions on small hand-made reads: folding, positions held back by
//! held tables, table marks, rejects.
use super::decode::{decode_all, furthest_positions};
use super::*;
use dynashift_core::plan::TableOptions;

impl Planner {
    fn ingest_one(&mut self, records: Vec<RawRecord>) {
        self.ingest(records, 1, 0);
    }
}

fn planner(extra: &str) -> Planner {
    let text = format!(
        "[source]\nkind = \"file\"\npath = \"x.jsonl\"\n[target]\nkind = \"duckdb\"\npath = \"x.duckdb\"\n{extra}"
    );
    let config = Config::parse(&text, std::path::Path::new("x.toml")).unwrap();
    Planner::new(config, Catalog::default(), Limits::default())
}

fn record(sequence: u64, key: &str, micros: u64) -> RawRecord {
    let data = format!(
        r#"{{"eventName":"MODIFY","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":{micros},"ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":{{"k":{{"S":"{key}"}}}},"NewImage":{{"k":{{"S":"{key}"}},"v":{{"N":"{micros}"}}}}}}}}"#
    );
    RawRecord { data: data.into_bytes(), position: Position::new("f", sequence.to_string()), problem: None }
}

#[test]
fn reads_fold_into_one_batch_with_one_row_per_key() {
    let mut p = planner("");
    p.ingest_one(vec![record(1, "a", 10), record(2, "b", 10), record(3, "a", 30)]);
    p.ingest_one(vec![
        record(4, "a", 20),
        record(5, "zz", 5),
        RawRecord { data: b"not json".to_vec(), position: Position::new("f", "6"), problem: None },
    ]);
    assert_eq!(p.gathered().records, 6);
    let prepared = p.flush(Take::All);
    let batch = &prepared.batch;
    assert_eq!((batch.records, batch.changes, batch.rejects.len()), (6, 5, 1));
    assert_eq!(batch.checkpoints, vec![Position::new("f", "6")]);
    let rows = &batch.tables[0].rows;
    assert_eq!(rows.len(), 3, "one row per key");
    let a = rows.iter().find(|r| r.key_text.contains("\"a\"")).unwrap();
    assert_eq!(a.version.micros, 30, "the newest change of `a` across both reads wins");
    assert_eq!(prepared.seen["T"], 5);
    assert_eq!(p.gathered().records, 0, "a flush empties the pending batch");
}

#[test]
fn tables_planned_in_parallel_match_one_at_a_time() {
    let record = |i: u64| {
        let table = ["A", "B", "C"][(i % 3) as usize];
        let data = format!(
            r#"{{"eventName":"INSERT","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":{i},"ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":{{"k":{{"N":"{i}"}}}},"NewImage":{{"k":{{"N":"{i}"}},"v{}":{{"S":"x"}},"m":{{"M":{{"n":{{"N":"1.5"}}}}}}}}}}}}"#,
            i % 7
        );
        RawRecord { data: data.into_bytes(), position: Position::new("f", i.to_string()), problem: None }
    };
    let records: Vec<RawRecord> = (1..=9_000).map(record).collect();
    let mut p = planner("");
    let parallel = p.prepare(records.clone()).batch;
    let mut catalog = Catalog::default();
    let mut serial = Vec::new();
    for (table, changes) in dynashift_core::reduce::reduce(records.iter().map(|r| {
        dynashift_core::decode::decode(&r.data, r.position.clone(), &DecodeContext::default()).unwrap()
    })) {
        serial.push(dynashift_core::plan::plan_table(
            &mut catalog,
            &table,
            changes,
            TableOptions::default(),
            Limits::default(),
        ));
    }
    assert_eq!(parallel.tables.len(), 3);
    for (a, b) in parallel.tables.iter().zip(&serial) {
        assert_eq!((&a.source_table, a.create, &a.staged), (&b.source_table, b.create, &b.staged));
        assert_eq!(
            a.new_columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
            b.new_columns.iter().map(|c| &c.name).collect::<Vec<_>>()
        );
        assert_eq!(a.rows, b.rows);
    }
    assert_eq!(p.catalog.tables.len(), 3);
}

#[test]
fn decoding_on_several_threads_keeps_order_and_results() {
    let mut records: Vec<RawRecord> = (1..=5_000).map(|i| record(i, &format!("k{}", i % 700), i)).collect();
    records[1234].data = b"{broken".to_vec();
    let context = DecodeContext::default();
    let summary = |threads| {
        decode_all(&context, &records, threads)
            .into_iter()
            .map(|r| match r {
                Ok(p) => Ok((p.key_text, p.held)),
                Err(reject) => Err((reject.position, reject.reason)),
            })
            .collect::<Vec<_>>()
    };
    let one = summary(1);
    assert_eq!(one.len(), records.len());
    assert_eq!(one, summary(3));
    assert!(one[1234].is_err() && one[1235].is_ok());
}

#[test]
fn the_furthest_position_of_each_shard_is_kept_in_any_order() {
    let at = |shard: &str, sequence: &str| RawRecord {
        data: Vec::new(),
        position: Position::new(shard, sequence),
        problem: None,
    };
    // Sequences compare as numbers, not text: "10" is further than "9".
    let records = vec![at("a", "9"), at("b", "5"), at("a", "10"), at("a", "2"), at("b", "5")];
    let mut furthest: Vec<(String, String)> = furthest_positions(&records)
        .into_iter()
        .map(|p| (p.shard.to_string(), p.sequence.to_string()))
        .collect();
    furthest.sort();
    assert_eq!(furthest, [("a".into(), "10".into()), ("b".into(), "5".into())]);
}

fn of(table: &str, shard: &str, sequence: u64) -> RawRecord {
    let data = format!(
        r#"{{"eventName":"MODIFY","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":1,"Keys":{{"k":{{"S":"{sequence}"}}}},"NewImage":{{"k":{{"S":"{sequence}"}}}}}}}}"#
    );
    RawRecord { data: data.into_bytes(), position: Position::new(shard, sequence.to_string()), problem: None }
}

fn shards(batch: &Batch) -> Vec<(String, String)> {
    batch.checkpoints.iter().map(|p| (p.shard.to_string(), p.sequence.to_string())).collect()
}

use dynashift_core::checkpoint::PRUNED;

#[test]
fn held_tables_keep_positions_at_their_first_change() {
    let mut p = planner("");
    p.hold_tables(&HashMap::from([("a".to_string(), "1".to_string())]), HashMap::new());
    // A's first held change of shard a comes in a read that starts after a:1; shard b has
    // no committed position before it.
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3), of("A", "b", 1), of("B", "b", 2)]);
    let held = p.gathered();
    assert_eq!(held.tables.len(), 2);
    assert!(!held.marks, "nothing can be committed while A holds both shards");
    let b = p.flush(Take::Tables(&["B".to_string()]));
    assert_eq!(b.batch.tables.len(), 1);
    assert!(shards(&b.batch).is_empty(), "A holds a from a:1 and b from its start");
    p.ingest_one(vec![of("B", "a", 4), of("B", "b", 3)]);
    let a = p.flush(Take::Tables(&["A".to_string()]));
    assert_eq!(a.seen.keys().collect::<Vec<_>>(), vec!["A"]);
    let pair = |s: &str, q: &str| (s.to_string(), q.to_string());
    assert_eq!(shards(&a.batch), vec![pair("a", "3"), pair("b", "2")], "up to B's first changes");
    let rest = p.flush(Take::All);
    assert_eq!(shards(&rest.batch), vec![pair("a", "4"), pair("b", "3")]);
    assert!(p.flush(Take::All).batch.checkpoints.is_empty(), "nothing new to commit");
}

fn marks(batch: &Batch) -> Vec<(String, String, String)> {
    let mark =
        |m: &TableMark| (m.table.clone(), m.position.shard.to_string(), m.position.sequence.to_string());
    batch.table_marks.iter().map(mark).collect()
}

#[test]
fn tables_applied_past_the_watermark_are_marked_and_skip_their_changes_when_read_again() {
    let triple = |t: &str, s: &str, q: &str| (t.to_string(), s.to_string(), q.to_string());
    let mut p = planner("");
    p.hold_tables(&HashMap::from([("a".to_string(), "1".to_string())]), HashMap::new());
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3), of("B", "b", 1)]);
    // A holds shard a from a:1, so B's apply commits only b; B's changes on a are in up to 3.
    let b = p.flush(Take::Tables(&["B".to_string()]));
    assert_eq!(shards(&b.batch), vec![("b".to_string(), "1".to_string())]);
    assert_eq!(marks(&b.batch), vec![triple("B", "a", "3")]);
    // Once A is applied, the positions pass B's mark: the mark is dropped.
    p.ingest_one(vec![of("B", "a", 5)]);
    let a = p.flush(Take::Tables(&["A".to_string()]));
    assert_eq!(shards(&a.batch), vec![("a".to_string(), "3".to_string())], "up to B's held change");
    assert_eq!(marks(&a.batch), vec![triple("A", "a", "5")], "A is in up to the read");
    let rest = p.flush(Take::All);
    assert_eq!(marks(&rest.batch), vec![triple("B", "a", PRUNED)]);

    // A restart from a:1 with B's mark at a:3: B's changes up to it are not taken again.
    let mut p = planner("");
    let marks_in = HashMap::from([("B".to_string(), HashMap::from([("a".to_string(), "3".to_string())]))]);
    p.hold_tables(&HashMap::from([("a".to_string(), "1".to_string())]), marks_in);
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3), of("B", "a", 5)]);
    let again = p.flush(Take::Tables(&["B".to_string()]));
    assert_eq!(again.seen.get("B"), Some(&1), "only B's change after its mark");
    assert_eq!(marks(&again.batch), vec![triple("B", "a", "5")]);
}

#[test]
fn marks_count_only_past_a_committed_position_and_never_move_back() {
    let triple = |t: &str, s: &str, q: &str| (t.to_string(), s.to_string(), q.to_string());
    let marks_in = || {
        HashMap::from([(
            "B".to_string(),
            HashMap::from([
                ("a".to_string(), "9".to_string()),
                ("b".to_string(), "5".to_string()),
                ("gone".to_string(), "7".to_string()),
            ]),
        )])
    };
    // Shard a is committed at 1 (its mark at 9 counts); b at 5 (its mark is not past it);
    // `gone` has no position (deleted, a re-created stream): its mark would skip changes
    // never applied. The last two are dropped with the next batch.
    let resume = HashMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), "5".to_string())]);
    let mut p = planner("");
    p.hold_tables(&resume, marks_in());
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3), of("B", "gone", 4)]);
    let b = p.flush(Take::Tables(&["B".to_string()]));
    assert_eq!(b.seen.get("B"), Some(&1), "B's change at a:3 is in (mark a:9); gone:4 is not");
    // B is taken before shard a is read again up to its mark: the mark stays at 9 (so it
    // is not written again); the invalid ones are deleted.
    assert_eq!(marks(&b.batch), vec![triple("B", "b", PRUNED), triple("B", "gone", PRUNED)]);
    let kept = &p.watermark.as_ref().unwrap().marks["B"];
    assert_eq!(kept.get("a").map(|m| m.sequence.to_string()), Some("9".to_string()));

    // Standard input is read from its start each run: its marks never count.
    let mut p = planner("");
    p.config.source =
        crate::config::SourceConfig::File(crate::config::FileSourceConfig { path: "-".into(), table: None });
    p.hold_tables(&resume, marks_in());
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3)]);
    let b = p.flush(Take::Tables(&["B".to_string()]));
    assert_eq!(b.seen.get("B"), Some(&1), "B's change is taken again");
    assert!(marks(&b.batch).iter().all(|(_, _, q)| q == PRUNED), "{:?}", marks(&b.batch));
}

#[test]
fn rejects_wait_for_the_positions_that_pass_them() {
    let mut p = planner("");
    p.hold_tables(&HashMap::from([("a".to_string(), "1".to_string())]), HashMap::new());
    let bad = RawRecord { data: b"not json".to_vec(), position: Position::new("a", "4"), problem: None };
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3), bad]);
    assert!(!p.gathered().marks, "A pins shard a at 1: the reject at 4 waits");
    let b = p.flush(Take::Tables(&["B".to_string()]));
    assert!(b.batch.rejects.is_empty());
    let a = p.flush(Take::All);
    assert_eq!(a.batch.rejects.len(), 1, "recorded with the position that passes it");
    assert_eq!(shards(&a.batch), vec![("a".to_string(), "4".to_string())]);
}

#[test]
fn a_shard_ending_in_the_read_of_a_held_change_stays_pinned() {
    let mut p = planner("");
    p.hold_tables(&HashMap::from([("old".to_string(), "7".to_string())]), HashMap::new());
    let decoded = p.decoder().decode(
        vec![of("A", "a", 2)],
        vec![Position::new("a", "1"), Position::new("a", ENDED), Position::new("old", PRUNED)],
        1,
    );
    p.fold(decoded, 0);
    let b = p.flush(Take::Tables(&[]));
    // Shard a's carried-over position counts before the change (which pins it there); its
    // end only after, so the end is not committed while A holds the change.
    let pair = |s: &str, q: &str| (s.to_string(), q.to_string());
    assert_eq!(shards(&b.batch), vec![pair("a", "1"), pair("old", PRUNED)]);
    let a = p.flush(Take::All);
    assert_eq!(shards(&a.batch), vec![pair("a", ENDED)]);
}

#[test]
fn pending_is_full_at_the_record_or_memory_limit() {
    // Full: the run loop's flow hands a backlog's batch over at once (or spills it).
    let pending_full = |p: &Planner| {
        let mut flow = crate::flow::Flow::new(p.config.flow_limits(None));
        flow.read(p.gathered(), false);
        matches!(
            flow.next_step(0),
            crate::flow::Step::Plan(crate::flow::Selection::All) | crate::flow::Step::Spill
        )
    };
    let mut p = planner("[defaults]\nbatch_size = 2\nmax_batch_records = 4\n");
    p.ingest_one(vec![record(1, "a", 1), record(2, "b", 1)]);
    assert!(!pending_full(&p));
    p.ingest_one(vec![record(3, "c", 1), record(4, "d", 1)]);
    assert!(pending_full(&p), "four records reach max_batch_records");
    let mut p = planner("[defaults]\nmax_batch_memory = \"2KB\"\n");
    p.ingest_one(vec![record(1, "a", 1)]);
    assert!(!pending_full(&p), "one small change is far below 2 KB");
    p.ingest_one((2..12).map(|i| record(i, &format!("k{i}"), 1)).collect());
    assert!(pending_full(&p), "eleven held changes pass 2 KB");
}

#[test]
fn held_figures_are_written_only_when_they_change() {
    use crate::flow::Selection;
    use dynashift_core::schedule::Choice;
    let mut p = planner("");
    p.record_applies();
    // The warehouse lists A as holding 1 change made at 0 s, and C, which holds nothing now.
    p.held_listed(HashMap::from([("A".to_string(), (1, 0)), ("C".to_string(), (4, 1))]));
    p.ingest_one(vec![of("A", "a", 2), of("B", "a", 3)]);
    let choose = |t: &str| Selection::Chosen(Choice { due: vec![t.to_string()], ..Choice::default() });
    let held = |p: &mut Planner, t: &str| p.hand_over(&choose(t), 10).batch.held;
    let row = |t: &str, text: &str| (t.to_string(), text.to_string());
    // B is applied; A's figures are what the warehouse has; C is pruned.
    let first = held(&mut p, "B");
    assert_eq!(first, vec![row("C", PRUNED)], "A unchanged since it was written");
    // Nothing changed: nothing written.
    assert!(held(&mut p, "B").is_empty());
    p.ingest_one(vec![of("A", "b", 4)]);
    assert_eq!(held(&mut p, "B"), vec![row("A", "2 0")], "A holds one more change");
    assert_eq!(held(&mut p, "A"), vec![row("A", PRUNED)], "A applied");
    assert!(held(&mut p, "A").is_empty());
}
