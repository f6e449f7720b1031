//! Decoding for the planner: records into packed changes on a pool of threads, the furthest
//! position of each shard read, and how many cores decoding may take.

use dynashift_core::checkpoint::compare_checkpoint;
use dynashift_core::decode::{decode_packed, table_from_arn, DecodeContext};
use dynashift_core::held::Packed;
use dynashift_core::Position;

use crate::source::RawRecord;
use crate::warehouse::Reject;

/// Decodes records for a planner; a clone can run on another thread than the planner's.
#[derive(Clone)]
pub struct Decoder {
    pub(super) context: DecodeContext,
}

/// Records decoded, to fold into a batch (`Planner::fold`).
pub struct Decoded {
    pub(super) records: u64,
    /// The furthest position read of each shard.
    pub(super) positions: Vec<Position>,
    /// Shard markers the reader gave with these records.
    pub(super) marks: Vec<Position>,
    pub(super) results: Vec<Result<Packed, Reject>>,
}

impl Decoded {
    /// Nothing was read: the input is consumed (or, following, nothing new came).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

impl Decoder {
    /// Decodes `records` on `threads` threads; `marks` are shard markers to commit with them.
    pub fn decode(&self, records: Vec<RawRecord>, marks: Vec<Position>, threads: usize) -> Decoded {
        let positions = furthest_positions(&records);
        let results = decode_all(&self.context, &records, threads);
        Decoded { records: records.len() as u64, positions, marks, results }
    }
}

/// The furthest position of each shard among `records`. Only the winners are cloned: this runs
/// before decoding can start, and a clone of each record's position (a shard's records mostly
/// come in order, each further than the last) cost a tenth of a second per million records.
pub(super) fn furthest_positions(records: &[RawRecord]) -> Vec<Position> {
    let mut furthest: foldhash::HashMap<&str, &Position> = foldhash::HashMap::default();
    for record in records {
        let p = &record.position;
        match furthest.get_mut(&*p.shard) {
            Some(best) if compare_checkpoint(&best.sequence, &p.sequence).is_ge() => {}
            Some(best) => *best = p,
            None => {
                furthest.insert(&p.shard, p);
            }
        }
    }
    furthest.into_values().cloned().collect()
}

/// Cores to decode on: all of them while the applier waits for a batch, all but one while it
/// applies (the applier and the warehouse need that one). On two cores, decoding on both
/// while the applier waited for a batch to fill made W1 10–15% faster.
pub fn decode_threads(applier_idle: bool) -> usize {
    let cores = machine_cores();
    let threads = if applier_idle { cores } else { cores - 1 };
    threads.clamp(1, MAX_THREADS)
}

/// The cores this process may use (its CPU affinity and quota, as the system reports them).
pub(super) fn machine_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// No pool grows past this, however many cores the machine has: past it, threads cost memory
/// and scheduling for batches that rarely hold enough work to share.
pub(super) const MAX_THREADS: usize = 64;

/// Decodes records on `threads` threads, packing each change for the batch to hold; results
/// keep the records' order.
pub(super) fn decode_all(
    context: &DecodeContext,
    records: &[RawRecord],
    threads: usize,
) -> Vec<Result<Packed, Reject>> {
    let decode_one = |record: &RawRecord| -> Result<Packed, Reject> {
        if let Some(problem) = &record.problem {
            return Err(Reject {
                position: record.position.clone(),
                table: None,
                reason: problem.clone(),
                raw: record.data.clone(),
            });
        }
        decode_packed(&record.data, record.position.clone(), context).map_err(|e| Reject {
            table: guess_table(&record.data),
            position: record.position.clone(),
            reason: e.to_string(),
            raw: record.data.clone(),
        })
    };
    if threads < 2 || records.len() < 2_000 {
        return records.iter().map(decode_one).collect();
    }
    use rayon::prelude::*;
    decode_pool(threads).install(|| records.par_iter().with_min_len(1_000).map(decode_one).collect())
}

/// A pool of `threads` decoding threads (2 to `MAX_THREADS`), kept for the whole run: threads
/// started for each read took fresh memory from the allocator each time (W1 into DuckDB, seven
/// alternating pairs: 5.43 → 5.24 s on average). A run asks for two sizes at most (all cores,
/// and all but one), so each size's pool is built once and kept.
fn decode_pool(threads: usize) -> &'static rayon::ThreadPool {
    static POOLS: std::sync::Mutex<Vec<(usize, &'static rayon::ThreadPool)>> =
        std::sync::Mutex::new(Vec::new());
    let threads = threads.clamp(2, MAX_THREADS);
    let mut pools = POOLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return pool;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("decode-{i}"))
        .build()
        .unwrap_or_else(|e| panic!("cannot start decoding threads: {e}"));
    // Kept for the life of the process, like the threads themselves.
    let pool: &'static rayon::ThreadPool = Box::leak(Box::new(pool));
    pools.push((threads, pool));
    pool
}

/// Best effort: which table an undecodable record meant, for `status`. Falls back to a plain
/// text search so even a truncated record is counted against its table.
fn guess_table(raw: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) {
        if let Some(t) = v.get("tableName").and_then(|t| t.as_str()) {
            return Some(t.to_string());
        }
        return v.get("eventSourceARN").and_then(|a| a.as_str()).and_then(table_from_arn);
    }
    let text = std::str::from_utf8(raw).ok()?;
    let rest = text.split_once("\"tableName\":\"")?.1;
    let name = rest.split('"').next()?;
    let valid = (3..=255).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    valid.then(|| name.to_string())
}
