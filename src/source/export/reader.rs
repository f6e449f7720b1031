//! Reading an export's data files on several threads at once: each thread takes the next file
//! not yet taken, checks it, decompresses it and sends its lines on, in order, in chunks of
//! bounded bytes. One file's chunks all come from one thread, so its lines keep their order;
//! the files' chunks interleave.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

use base64::Engine as _;
use dynashift_core::checkpoint::ENDED;
use dynashift_core::Position;
use md5::Digest as _;

use super::manifest::DataFile;
use super::object::{self, ExportLocation, ObjectError};
use super::ExportError;
use crate::source::RawRecord;

/// A file's next lines, in order, and its end mark once it was read whole (sent with its
/// last lines, so the mark is committed with them).
pub(super) struct Chunk {
    pub records: Vec<RawRecord>,
    pub ended: Option<Position>,
}

/// Bytes a record costs besides its line: its position and its slot.
const RECORD_OVERHEAD: usize = 96;

/// What the reading threads share.
pub(super) struct Files {
    pub location: Arc<ExportLocation>,
    pub files: Arc<[DataFile]>,
    /// Committed line per data file (or `end`), from the warehouse.
    pub resume: Arc<HashMap<String, String>>,
    /// Bytes of lines past which a chunk is sent (it ends with the line that passed them).
    pub chunk_bytes: usize,
    /// Set when the source is dropped: the threads stop at their next line or buffer.
    pub stop: Arc<AtomicBool>,
    /// Where downloaded files are kept while they are read, if anywhere.
    pub copies: Option<LocalCopies>,
}

/// A data file from S3 is downloaded once for its MD5 and once more for its lines, unless a
/// copy is kept on disk as it is checked: then its lines are read from the copy. A copy is an
/// unnamed file in `dir` (gone once closed, even if the process is killed), kept for files of
/// `max_file_bytes` at most, so the readers' copies together stay within the disk allowed.
#[derive(Debug, Clone)]
pub(super) struct LocalCopies {
    pub dir: PathBuf,
    pub max_file_bytes: u64,
    /// Whether a refused copy was warned about: once per load, not once per file.
    pub warned: Arc<AtomicBool>,
}

impl LocalCopies {
    /// A new copy for `key`, or `None` (with a warning, the first time) when the directory
    /// refuses one.
    fn start(&self, key: &str) -> Option<File> {
        tempfile::tempfile_in(&self.dir)
            .inspect_err(|e| {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{key}: cannot keep a copy in {} ({e}); data files are downloaded twice",
                        self.dir.display()
                    )
                }
            })
            .ok()
    }
}

/// The reading threads: their chunks, or the error that stopped one of them, arrive on
/// `chunks`, which ends once every file is read.
pub(super) struct Readers {
    pub chunks: Receiver<Result<Chunk, ExportError>>,
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts up to `threads` threads reading `files` (no more than there are files). One chunk
/// per thread waits in the channel at most, so with the one each thread is building and the
/// one being handed out, `2 × threads + 1` chunks are in memory at most. A thread that could
/// not be started is left out, unless none could.
pub(super) fn start(files: Files, threads: usize) -> Result<Readers, ExportError> {
    let threads = threads.clamp(1, files.files.len().max(1));
    let (tx, rx) = std::sync::mpsc::sync_channel(threads);
    let files = Arc::new(files);
    let next = Arc::new(AtomicUsize::new(0));
    let mut started = Vec::with_capacity(threads);
    for i in 0..threads {
        let (files, next, tx) = (files.clone(), next.clone(), tx.clone());
        let spawned = std::thread::Builder::new().name(format!("export-{i}")).spawn(move || {
            // A panic is reported like any other failure, not taken for the end of the files.
            let read =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_files(&files, &next, &tx)));
            if let Err(panic) = read {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let _ = tx.send(Err(ExportError::Failed(format!(
                    "a thread reading the data files panicked: {why}"
                ))));
            }
        });
        match spawned {
            Ok(handle) => started.push(handle),
            Err(e) if started.is_empty() => {
                let what = "starting a thread to read the export's files".to_string();
                return Err(ExportError::Object { what, source: ObjectError::Read(e) });
            }
            Err(e) => tracing::warn!("reading the export's files on {} threads only: {e}", started.len()),
        }
    }
    Ok(Readers { chunks: rx, threads: started })
}

/// Reads the files not taken yet, one after another, until none is left, the receiver is
/// gone, or one fails (the error is sent on).
fn read_files(files: &Files, next: &AtomicUsize, tx: &SyncSender<Result<Chunk, ExportError>>) {
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(file) = files.files.get(index) else { return };
        match read_file(files, file, tx) {
            Ok(Sent::All) => {}
            Ok(Sent::Abandoned) => return,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}

/// Whether a file's chunks all went out, or the receiver was gone.
enum Sent {
    All,
    Abandoned,
}

/// Reads one data file past its committed line and sends its lines on. A file whose MD5
/// differs from the manifest's is refused before any of its lines are read; a file that
/// cannot be decompressed, or holds another number of items than the manifest lists, is sent
/// with a problem record naming it and no end mark. S3 failing is no fault of the file: an
/// error (a rerun resumes from the positions).
fn read_file(
    files: &Files,
    file: &DataFile,
    tx: &SyncSender<Result<Chunk, ExportError>>,
) -> Result<Sent, ExportError> {
    let committed = files.resume.get(&file.key).map(String::as_str);
    if committed == Some(ENDED) {
        return Ok(Sent::All);
    }
    let start: u64 = committed.and_then(|c| c.parse().ok()).unwrap_or(0);
    let shard: Arc<str> = Arc::from(file.key.as_str());
    let object_error = |source| ExportError::Object { what: file.key.clone(), source };
    let send = |records: Vec<RawRecord>, ended: Option<Position>| {
        if tx.send(Ok(Chunk { records, ended })).is_ok() {
            Sent::All
        } else {
            Sent::Abandoned
        }
    };
    let mut copy = None;
    if let Some(expected) = &file.md5_base64 {
        let (stream, download) = files.location.open_sized(file).map_err(object_error)?;
        copy = match (&files.copies, download) {
            (Some(copies), Some(size)) if size <= copies.max_file_bytes => copies.start(&file.key),
            _ => None,
        };
        let actual = md5_base64(stream, &files.stop, &mut copy, &file.key)
            .map_err(|e| object_error(ObjectError::Read(e)))?;
        let Some(actual) = actual else { return Ok(Sent::Abandoned) };
        if &actual != expected {
            let problem = format!(
                "{}: MD5 {actual} differs from the manifest's {expected}: the file is damaged or not \
                 this export's; none of it was loaded",
                file.key
            );
            return Ok(send(vec![problem_record(&shard, start, problem)], None));
        }
    }
    let input: Box<dyn Read + Send> = match copy.map(|mut f| f.rewind().map(|()| f)) {
        Some(Ok(copy)) => Box::new(copy),
        Some(Err(e)) => {
            tracing::warn!("{}: cannot read its copy back ({e}); downloading it again", file.key);
            files.location.open(file).map_err(object_error)?
        }
        None => files.location.open(file).map_err(object_error)?,
    };
    let mut raw = BufReader::with_capacity(1 << 20, input);
    // An empty partition's file may hold no gzip stream at all (0 bytes): no items.
    let empty = raw.fill_buf().map_err(|e| object_error(ObjectError::Read(e)))?.is_empty();
    let mut lines: Box<dyn BufRead + Send> = if empty {
        Box::new(std::io::empty())
    } else {
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(raw)))
    };
    let mut line = Vec::with_capacity(4096);
    let mut taken = 0u64;
    let mut records = Vec::new();
    let mut bytes = 0usize;
    loop {
        // Skipping to the committed line sends nothing, so only the flag stops it.
        if taken < start && files.stop.load(Ordering::Relaxed) {
            return Ok(Sent::Abandoned);
        }
        line.clear();
        let read = match lines.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) if object::is_s3_failure(&e) => return Err(object_error(ObjectError::Read(e))),
            Err(e) => {
                // A damaged file: what was read of it stays; it is reported and not ended.
                let problem = format!("{}: cannot be decompressed after line {taken}: {e}", file.key);
                records.push(problem_record(&shard, taken.max(start), problem));
                return Ok(send(records, None));
            }
        };
        if read == 0 {
            if taken == file.item_count {
                return Ok(send(records, Some(Position::new(shard.clone(), ENDED))));
            }
            let problem = format!(
                "{} holds {taken} items, but manifest-files.json lists {}",
                file.key, file.item_count
            );
            records.push(problem_record(&shard, taken, problem));
            return Ok(send(records, None));
        }
        taken += 1;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if taken <= start || line.is_empty() {
            continue;
        }
        bytes += line.len() + RECORD_OVERHEAD;
        records.push(RawRecord {
            // An exact copy: handing over the line buffer would keep its capacity (4 KB and
            // up) for each item of a few hundred bytes.
            data: line.clone(),
            position: Position::new(shard.clone(), taken.to_string()),
            problem: None,
        });
        if bytes >= files.chunk_bytes {
            if let Sent::Abandoned = send(std::mem::take(&mut records), None) {
                return Ok(Sent::Abandoned);
            }
            bytes = 0;
        }
    }
}

/// A record standing for a problem with a whole data file, rejected with `problem`.
fn problem_record(shard: &Arc<str>, line: u64, problem: String) -> RawRecord {
    RawRecord {
        data: Vec::new(),
        position: Position::new(shard.clone(), line.to_string()),
        problem: Some(problem),
    }
}

/// The MD5 of everything `input` yields, base64 (as `manifest-files.json` lists it); `None`
/// once `stop` is set. What is read is also written to `copy`, if any; a copy that cannot be
/// written is dropped (with a warning naming `key`), and the file is then read again.
fn md5_base64(
    mut input: impl Read,
    stop: &AtomicBool,
    copy: &mut Option<File>,
    key: &str,
) -> std::io::Result<Option<String>> {
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(Err(e)) = copy.as_mut().map(|f| f.write_all(&buf[..n])) {
            tracing::warn!("{key}: writing its copy on disk failed ({e}); the file is downloaded again");
            *copy = None;
        }
    }
    Ok(Some(base64::engine::general_purpose::STANDARD.encode(hasher.finalize())))
}
