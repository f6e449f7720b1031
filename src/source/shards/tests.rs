//! The reader's decisions against a scripted stream that behaves as Kinesis does where the
//! emulators do not: positions past the retention continue silently at the trim horizon,
//! expired shards leave the listing, errors come with their service codes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::source::lineage::ShardInfo;

#[derive(Default)]
struct Shard {
    parent: Option<String>,
    closed: bool,
    listed: bool,
    /// (sequence, arrival µs)
    records: Vec<(u64, i64)>,
    /// Records below this sequence have expired.
    trimmed_below: u64,
}

#[derive(Default)]
struct State {
    shards: BTreeMap<String, Shard>,
    identity: String,
    /// Errors the next GetRecords calls answer with, first to last.
    failures: Vec<ApiError>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<State>>);

impl Scripted {
    fn shard(&self, id: &str, parent: Option<&str>, records: &[(u64, i64)]) {
        let mut s = self.0.lock().unwrap();
        s.shards.insert(
            id.into(),
            Shard {
                parent: parent.map(Into::into),
                listed: true,
                records: records.to_vec(),
                ..Shard::default()
            },
        );
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

impl ShardApi for Scripted {
    fn describe(&self) -> String {
        "Kinesis stream `scripted`".into()
    }

    async fn list(&self) -> Result<Listing, ApiError> {
        let shards = self.with(|s| {
            s.shards
                .iter()
                .filter(|(_, sh)| sh.listed)
                .map(|(id, sh)| ShardInfo::new(id.clone(), sh.parent.clone(), None, sh.closed))
                .collect()
        });
        Ok(Listing { shards, complete: true })
    }

    async fn children(&self, _shard: &str) -> Result<Listing, ApiError> {
        self.list().await
    }

    async fn identity(&self) -> Result<Option<String>, ApiError> {
        Ok(Some(self.with(|s| s.identity.clone())))
    }

    async fn iterator(&self, shard: &str, start: &IteratorStart) -> Result<Option<String>, ApiError> {
        self.with(|s| {
            let sh = &s.shards[shard];
            let live = |&&(seq, _): &&(u64, i64)| seq >= sh.trimmed_below;
            // As Kinesis does: a position before the trim horizon reads from the horizon.
            let index = match start {
                IteratorStart::At(q) => {
                    sh.records.iter().filter(live).position(|r| r.0 >= q.parse().unwrap())
                }
                IteratorStart::After(q) => {
                    sh.records.iter().filter(live).position(|r| r.0 > q.parse().unwrap())
                }
                IteratorStart::TrimHorizon => Some(0),
                IteratorStart::Latest => None,
                IteratorStart::Timestamp(t) => {
                    sh.records.iter().filter(live).position(|r| r.1 as f64 >= t * 1e6)
                }
            };
            let live_count = sh.records.iter().filter(live).count();
            Ok(Some(format!("{shard}|{}", index.unwrap_or(live_count))))
        })
    }

    async fn records(&self, shard: &str, iterator: String, limit: usize) -> Result<Page, ApiError> {
        self.with(|s| {
            if !s.failures.is_empty() {
                return Err(s.failures.remove(0));
            }
            let index: usize = iterator.rsplit_once('|').unwrap().1.parse().unwrap();
            let sh = &s.shards[shard];
            let live: Vec<&(u64, i64)> = sh.records.iter().filter(|r| r.0 >= sh.trimmed_below).collect();
            let end = (index + limit).min(live.len());
            let records = live[index.min(end)..end]
                .iter()
                .map(|(seq, _)| Payload {
                    sequence: seq.to_string(),
                    data: seq.to_string().into_bytes(),
                    problem: None,
                })
                .collect();
            let at_end = end == live.len();
            Ok(Page {
                records,
                next: if at_end && sh.closed { None } else { Some(format!("{shard}|{end}")) },
                behind_ms: Some(if at_end { 0 } else { 1000 }),
                newest_made_ms: None,
                children: Vec::new(),
            })
        })
    }

    fn verifies_resume(&self) -> bool {
        true
    }

    fn has_timestamps(&self) -> bool {
        true
    }
}

fn options(start: StartPosition) -> ReaderOptions {
    ReaderOptions {
        start,
        once: true,
        flush_interval: Duration::from_millis(50),
        skip_trim_check: false,
        round_bytes: 64 << 20,
    }
}

fn open(
    api: &Scripted,
    start: StartPosition,
    resume: &[(&str, &str)],
) -> Result<ShardReader<Scripted>, SourceError> {
    let resume: HashMap<String, String> =
        resume.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let runtime = crate::runtime::background("test-reader").unwrap();
    ShardReader::open(runtime, api.clone(), options(start), resume)
}

fn sequences(records: &[RawRecord]) -> Vec<String> {
    records.iter().map(|r| format!("{}@{}", r.position.shard, r.position.sequence)).collect()
}

fn now() -> i64 {
    now_micros()
}

#[test]
fn shards_found_after_the_first_listing_are_read_from_their_start_even_with_latest() {
    let api = Scripted::default();
    api.shard("s0", None, &[(1, now() - 5_000_000)]);
    let mut reader = open(&api, StartPosition::Latest, &[]).unwrap();
    let marks = reader.take_marks();
    assert!(marks.iter().any(|m| &*m.shard == START_KEY), "a new reader records when it started: {marks:?}");
    assert!(reader.next_batch(100).unwrap().is_empty(), "latest: what came before is not read");
    // The shard splits; its children take records at once.
    let t = now() + 1;
    api.with(|s| s.shards.get_mut("s0").unwrap().closed = true);
    api.shard("s1", Some("s0"), &[(10, t), (11, t)]);
    api.shard("s2", Some("s0"), &[(20, t)]);
    reader.listed_at = None;
    let mut read = Vec::new();
    for _ in 0..5 {
        read.extend(sequences(&reader.next_batch(100).unwrap()));
    }
    read.sort();
    assert_eq!(read, ["s1@10", "s1@11", "s2@20"]);
    let marks = reader.take_marks();
    assert!(marks.iter().any(|m| &*m.shard == "s0" && &*m.sequence == ENDED), "{marks:?}");
}

#[test]
fn a_restarted_reader_is_not_new_and_never_starts_a_shard_at_latest() {
    let api = Scripted::default();
    let started = now() - 10_000_000;
    // A shard that gave no record before the restart, then took two.
    api.shard("s0", None, &[(1, started - 120_000_000), (2, started + 1_000_000), (3, started + 2_000_000)]);
    let mut reader = open(&api, StartPosition::Latest, &[(START_KEY, &started.to_string())]).unwrap();
    assert!(reader.take_marks().iter().all(|m| &*m.shard != START_KEY));
    assert_eq!(sequences(&reader.next_batch(100).unwrap()), ["s0@2", "s0@3"]);
}

#[test]
fn a_position_past_the_retention_is_a_stop_not_a_skip() {
    let api = Scripted::default();
    api.shard("s0", None, &[(5, 0), (6, 0), (7, 0), (8, 0)]);
    // Resuming at a record that still exists: it is seen again and not handed out twice.
    let mut reader = open(&api, StartPosition::TrimHorizon, &[("s0", "6")]).unwrap();
    assert_eq!(sequences(&reader.next_batch(100).unwrap()), ["s0@7", "s0@8"]);
    // The committed record has expired: Kinesis would continue at 7 without a word.
    api.with(|s| s.shards.get_mut("s0").unwrap().trimmed_below = 7);
    let mut reader = open(&api, StartPosition::TrimHorizon, &[("s0", "6")]).unwrap();
    let err = reader.next_batch(100).unwrap_err();
    assert!(matches!(err, SourceError::Trimmed { .. }), "{err}");
    assert!(err.to_string().contains("skip_trim_check"), "{err}");
    // Known to be idle: the opt-out continues.
    let mut opts = options(StartPosition::TrimHorizon);
    opts.skip_trim_check = true;
    let runtime = crate::runtime::background("test-reader").unwrap();
    let resume = [("s0".to_string(), "6".to_string())].into();
    let mut reader = ShardReader::open(runtime, api.clone(), opts, resume).unwrap();
    assert_eq!(sequences(&reader.next_batch(100).unwrap()), ["s0@7", "s0@8"]);
}

#[test]
fn committed_shards_gone_from_the_listing_stop_unless_they_ended() {
    let api = Scripted::default();
    api.shard("s1", None, &[]);
    let err = open(&api, StartPosition::TrimHorizon, &[("s0", "6"), ("s1", "1")]).err().unwrap();
    assert!(matches!(err, SourceError::Trimmed { .. }), "{err}");
    assert!(err.to_string().contains("s0"), "{err}");
    let mut reader = open(&api, StartPosition::TrimHorizon, &[("s0", ENDED)]).unwrap();
    let marks = reader.take_marks();
    assert!(marks.iter().any(|m| &*m.shard == "s0" && &*m.sequence == PRUNED), "{marks:?}");
}

#[test]
fn a_recreated_stream_is_recognised() {
    let api = Scripted::default();
    api.with(|s| s.identity = "arn:stream/x created 200".into());
    api.shard("s0", None, &[]);
    let err =
        open(&api, StartPosition::TrimHorizon, &[(STREAM_KEY, "arn:stream/x created 100"), ("s0", "1")])
            .err()
            .unwrap();
    assert!(err.to_string().contains("re-created"), "{err}");
    let mut reader = open(&api, StartPosition::TrimHorizon, &[]).unwrap();
    assert!(reader
        .take_marks()
        .iter()
        .any(|m| &*m.shard == STREAM_KEY && &*m.sequence == "arn:stream/x created 200"));
}

#[test]
fn throttling_is_waited_out_and_permanent_errors_stop() {
    let api = Scripted::default();
    api.shard("s0", None, &[(1, 0)]);
    api.with(|s| {
        s.failures.push(ApiError::Throttled("GetRecords: ProvisionedThroughputExceededException".into()))
    });
    let mut reader = open(&api, StartPosition::TrimHorizon, &[]).unwrap();
    let mut read = Vec::new();
    for _ in 0..20 {
        read.extend(sequences(&reader.next_batch(100).unwrap()));
        if !read.is_empty() {
            break;
        }
    }
    assert_eq!(read, ["s0@1"]);
    api.with(|s| {
        s.failures.push(ApiError::Permanent("GetRecords: KMSDisabledException: key disabled".into()))
    });
    let err = reader.next_batch(100).unwrap_err();
    assert!(err.to_string().contains("KMSDisabledException"), "{err}");
}

#[test]
fn an_iterator_expiring_before_the_first_record_is_not_renewed_at_latest() {
    let api = Scripted::default();
    api.shard("s0", None, &[]);
    let mut reader = open(&api, StartPosition::Latest, &[]).unwrap();
    assert!(reader.next_batch(100).unwrap().is_empty());
    // Records arrive, then the iterator expires before they are read.
    api.with(|s| s.shards.get_mut("s0").unwrap().records.extend([(1, now()), (2, now())]));
    api.with(|s| s.failures.push(ApiError::Expired));
    let mut read = Vec::new();
    for _ in 0..10 {
        read.extend(sequences(&reader.next_batch(100).unwrap()));
        if read.len() == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(read, ["s0@1", "s0@2"]);
}

#[test]
fn an_idle_shard_is_asked_less_often_up_to_the_cap() {
    let pauses: Vec<u64> = (1..=6).map(|rounds| idle_pause(rounds).as_secs()).collect();
    assert_eq!(pauses, [1, 2, 4, 8, 10, 10]);
    assert_eq!(idle_pause(u32::MAX), IDLE_PAUSE_MAX);
}
