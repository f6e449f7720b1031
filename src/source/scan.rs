//! The `scan` source: a table read with a parallel `Scan`, for a backfill of a table without
//! point-in-time recovery (so no export).
//!
//! Each segment is a shard (`segment I of N`). The records of a page carry the page's number
//! and the key it started from; the page's end is committed after its last record (the next
//! page's start, or `end`), so a killed scan resumes each segment at the page it was in —
//! reading at most that page again, which the version guard makes harmless. Read capacity is
//! shared by the segments: after each page, the capacity it consumed is paid for in time at
//! `rate` units a second.

pub mod item_json;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use dynashift_core::checkpoint::ENDED;
use dynashift_core::Position;

use super::RawRecord;
use crate::aws::{sdk_config, sdk_message, AwsSettings};

/// Pages a segment may read ahead of the run (a page is at most 1 MB of items).
const PAGES_AHEAD: usize = 2;
/// Segments read at once; the others wait for one to finish. With `PAGES_AHEAD`, this bounds
/// what the scan holds to about 50 MB of items, and the pages requested before `--rate` can
/// pace them.
const SEGMENTS_AT_ONCE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0}")]
    Setup(String),
    #[error(
        "a scan of `{table}` with {found} segments is under way or done (its positions are in the \
         warehouse, source `scan:{table}`): resume it with --segments {found}"
    )]
    Segments { table: String, found: u32 },
    #[error("segment {segment}: the committed position `{position}` is not one a scan writes")]
    Position { segment: u32, position: String },
    #[error("Scan of `{table}` (segment {segment}) failed: {message}")]
    Scan { table: String, segment: u32, message: String },
}

/// The shard name of `segment` of `total`.
pub fn segment_shard(segment: u32, total: u32) -> String {
    format!("segment {segment} of {total}")
}

/// Where a segment starts: its page number and the key it starts after (`None`: the start).
type Start = (u64, Option<HashMap<String, AttributeValue>>);

/// The segment's committed position as a start; `None` when it was read to its end.
fn start_of(segment: u32, committed: Option<&String>) -> Result<Option<Start>, ScanError> {
    let Some(text) = committed else { return Ok(Some((0, None))) };
    if text == ENDED {
        return Ok(None);
    }
    let bad = || ScanError::Position { segment, position: text.clone() };
    let (page, key) = text.split_once(':').ok_or_else(bad)?;
    let page: u64 = page.parse().map_err(|_| bad())?;
    let key = if key.is_empty() { None } else { Some(item_json::parse_key(key).map_err(|_| bad())?) };
    Ok(Some((page, key)))
}

/// A page's sequence: its number (zero-padded, so text order is page order) and its start key.
fn page_sequence(page: u64, key: Option<&HashMap<String, AttributeValue>>) -> String {
    format!("{page:010}:{}", key.map(item_json::key_json).unwrap_or_default())
}

enum Entry {
    Record(RawRecord),
    /// A page's end: committed with the records before it.
    Mark(Position),
}

/// Read capacity paid for in time: each page's consumed units delay the next request by
/// `units / rate` seconds, across every segment.
struct Limiter {
    rate: Option<f64>,
    next: Mutex<Instant>,
}

impl Limiter {
    async fn pay(&self, units: f64) {
        let Some(rate) = self.rate.filter(|r| *r > 0.0) else { return };
        let wait_until = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(units / rate);
            start
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

pub struct ScanSource {
    _runtime: tokio::runtime::Runtime,
    pages: tokio::sync::mpsc::Receiver<Result<Vec<Entry>, ScanError>>,
    queue: VecDeque<Entry>,
    marks: Vec<Position>,
    read_bytes: usize,
    cut: bool,
    /// Items in the table when the scan started, as `DescribeTable` says (approximate).
    pub item_count: Option<i64>,
}

impl ScanSource {
    /// Starts `segments` segment readers of `table` (those not ended in `resume`), pages of
    /// at most `page_items` items (else DynamoDB's 1 MB), at most `rate` read capacity units a
    /// second in all.
    pub fn open(
        table: &str,
        (segments, page_items, rate): (u32, Option<u32>, Option<f64>),
        aws: &AwsSettings,
        resume: HashMap<String, String>,
    ) -> Result<ScanSource, ScanError> {
        let setup = |e: String| ScanError::Setup(e);
        if let Some(found) =
            resume.keys().find_map(|k| k.rsplit_once(" of ").and_then(|(_, n)| n.parse::<u32>().ok()))
        {
            if found != segments {
                return Err(ScanError::Segments { table: table.to_string(), found });
            }
        }
        let runtime = crate::runtime::background("dynashift-scan").map_err(|e| setup(e.to_string()))?;
        let sdk = runtime.block_on(sdk_config(aws));
        runtime.block_on(crate::aws::require_credentials(&sdk)).map_err(|e| setup(e.to_string()))?;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let described = runtime
            .block_on(client.describe_table().table_name(table).send())
            .map_err(|e| setup(format!("DescribeTable of `{table}` failed: {}", sdk_message(&e))))?;
        let item_count = described.table().and_then(|t| t.item_count());
        let running = (segments as usize).clamp(1, SEGMENTS_AT_ONCE);
        let (tx, rx) = tokio::sync::mpsc::channel(PAGES_AHEAD * running);
        let limiter = Arc::new(Limiter { rate, next: Mutex::new(Instant::now()) });
        let turns = Arc::new(tokio::sync::Semaphore::new(running));
        for segment in 0..segments {
            let shard = segment_shard(segment, segments);
            let Some(start) = start_of(segment, resume.get(&shard))? else { continue };
            let reader = SegmentReader {
                client: client.clone(),
                table: table.to_string(),
                segment,
                segments,
                page_items,
                shard: Arc::from(shard.as_str()),
                limiter: limiter.clone(),
                tx: tx.clone(),
            };
            let turns = turns.clone();
            runtime.spawn(async move {
                // Closed only when the source is dropped, which ends the scan anyway.
                let Ok(_turn) = turns.acquire_owned().await else { return };
                reader.run(start).await;
            });
        }
        Ok(ScanSource {
            _runtime: runtime,
            pages: rx,
            queue: VecDeque::new(),
            marks: Vec::new(),
            read_bytes: super::file::READ_BYTES,
            cut: false,
            item_count,
        })
    }

    /// Reads stop past `bytes` (an item larger than that is still read, alone).
    pub fn with_read_bytes(mut self, bytes: usize) -> ScanSource {
        self.read_bytes = bytes.max(1);
        self
    }

    pub fn read_was_cut(&self) -> bool {
        self.cut
    }

    pub fn take_marks(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.marks)
    }

    /// Up to `max` items, with the ends of the pages they complete; empty when every segment
    /// is read to its end.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, ScanError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        loop {
            match self.queue.pop_front() {
                Some(Entry::Mark(mark)) => self.marks.push(mark),
                Some(Entry::Record(record)) if out.len() < max && bytes < self.read_bytes => {
                    bytes += record.data.len();
                    out.push(record);
                }
                Some(record) => {
                    self.queue.push_front(record);
                    break;
                }
                // Wait for a page while no record is taken: an empty read (marks alone) would
                // tell the run the input is over while other segments still read.
                None if out.is_empty() => match self.pages.blocking_recv() {
                    Some(page) => self.queue.extend(page?),
                    None => break,
                },
                None => match self.pages.try_recv() {
                    Ok(page) => self.queue.extend(page?),
                    Err(_) => break,
                },
            }
        }
        self.cut = out.len() < max && bytes >= self.read_bytes;
        Ok(out)
    }
}

/// One segment's reader: pages in order, each sent with its end mark.
struct SegmentReader {
    client: aws_sdk_dynamodb::Client,
    table: String,
    segment: u32,
    segments: u32,
    page_items: Option<u32>,
    shard: Arc<str>,
    limiter: Arc<Limiter>,
    tx: tokio::sync::mpsc::Sender<Result<Vec<Entry>, ScanError>>,
}

impl SegmentReader {
    async fn run(self, (mut page, mut key): Start) {
        // Each request first pays for what the one before it consumed, so that no segment
        // asks again before its share of `--rate` allows.
        let mut owed = 0.0;
        loop {
            self.limiter.pay(owed).await;
            let request = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(self.segment as i32)
                .total_segments(self.segments as i32)
                .consistent_read(true)
                .set_limit(self.page_items.map(|n| n.clamp(1, i32::MAX as u32) as i32))
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .set_exclusive_start_key(key.clone());
            let out = match request.send().await {
                Ok(out) => out,
                Err(e) => {
                    let message = sdk_message(&e);
                    let _ = self
                        .tx
                        .send(Err(ScanError::Scan {
                            table: self.table.clone(),
                            segment: self.segment,
                            message,
                        }))
                        .await;
                    return;
                }
            };
            let sequence = page_sequence(page, key.as_ref());
            let mut entries: Vec<Entry> = out
                .items()
                .iter()
                .map(|item| {
                    Entry::Record(RawRecord {
                        data: item_json::item_line(item),
                        position: Position::new(self.shard.clone(), sequence.as_str()),
                        problem: None,
                    })
                })
                .collect();
            let next = out.last_evaluated_key().cloned();
            let end = match &next {
                Some(k) => page_sequence(page + 1, Some(k)),
                None => ENDED.to_string(),
            };
            entries.push(Entry::Mark(Position::new(self.shard.clone(), end)));
            if self.tx.send(Ok(entries)).await.is_err() {
                return;
            }
            owed = out.consumed_capacity().and_then(|c| c.capacity_units()).unwrap_or(0.0);
            match next {
                Some(k) => {
                    key = Some(k);
                    page += 1;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_positions_give_where_each_segment_resumes() {
        assert_eq!(start_of(0, None).unwrap(), Some((0, None)));
        assert_eq!(start_of(0, Some(&ENDED.to_string())).unwrap(), None);
        let key = HashMap::from([("id".to_string(), AttributeValue::S("k9".into()))]);
        let text = page_sequence(12, Some(&key));
        assert_eq!(text, r#"0000000012:{"id":{"S":"k9"}}"#);
        assert_eq!(start_of(3, Some(&text)).unwrap(), Some((12, Some(key))));
        assert!(start_of(3, Some(&"garbage".to_string())).is_err());
        // Text order is page order, and an ended segment comes after every page.
        let later = page_sequence(100, None);
        assert!(dynashift_core::checkpoint::compare_checkpoint(&text, &later).is_lt());
        assert!(dynashift_core::checkpoint::compare_checkpoint(&later, ENDED).is_lt());
    }
}
