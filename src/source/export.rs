//! The `export` source: the data files of a DynamoDB table export (`ExportTableToPointInTime`,
//! DYNAMODB_JSON), from a local copy of its folder or from S3, read for a backfill.
//!
//! Each data file is a shard; a record's sequence is its line number in the file, and a file
//! read to its end is committed as ended, so a killed backfill resumes inside the file it was
//! loading and never loads a finished one again. A file whose MD5 differs from the manifest's
//! is refused before any of its lines are read; a file that cannot be decompressed, or holds
//! another number of items than the manifest lists, is reported as a reject naming it, is not
//! marked ended, and the other files are still loaded.

pub mod manifest;
pub mod object;
mod reader;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dynashift_core::Position;

use self::manifest::{DataFile, ExportSummary, ManifestError};
use self::object::{ExportLocation, ObjectError};
use self::reader::{Files, LocalCopies, Readers};
use super::RawRecord;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{what}: {source}")]
    Object { what: String, source: ObjectError },
    #[error("{location}: {source}")]
    Manifest { location: String, source: ManifestError },
    /// Reading failed earlier (or a reading thread failed): nothing more is read.
    #[error("{0}")]
    Failed(String),
}

/// Data files read at once: enough to keep S3's latency and the decompression off the
/// critical path, few enough that their buffers (a ranged request of 8 MB each from S3) stay
/// a small part of the memory budget.
const MAX_READERS: usize = 4;

pub struct ExportSource {
    location: Arc<ExportLocation>,
    summary: ExportSummary,
    files: Arc<[DataFile]>,
    /// Committed line per data file (or `end`), from the warehouse.
    resume: Arc<HashMap<String, String>>,
    /// The reading threads, once the first batch is asked for.
    readers: Option<Readers>,
    /// Tells the reading threads to stop (set when the source is dropped).
    stop: Arc<AtomicBool>,
    /// Why reading stopped, once it failed: every later read fails the same way.
    failed: Option<String>,
    /// What is left of the chunk being handed out, and its file's end mark.
    pending: VecDeque<RawRecord>,
    pending_end: Option<Position>,
    marks: Vec<Position>,
    read_bytes: usize,
    cut: bool,
    /// Where files from S3 may be kept while read, and the disk all copies may take.
    copies: Option<(std::path::PathBuf, u64)>,
}

impl ExportSource {
    /// Reads the export's manifests at `location`; `resume` maps data file → committed line.
    pub fn open(
        location: ExportLocation,
        resume: HashMap<String, String>,
    ) -> Result<ExportSource, ExportError> {
        let (summary, files) = read_manifests(&location)?;
        Ok(ExportSource {
            location: Arc::new(location),
            summary,
            files: files.into(),
            resume: Arc::new(resume),
            readers: None,
            stop: Arc::new(AtomicBool::new(false)),
            failed: None,
            pending: VecDeque::new(),
            pending_end: None,
            marks: Vec::new(),
            read_bytes: super::file::READ_BYTES,
            cut: false,
            copies: None,
        })
    }

    /// Reads stop past `bytes` (an item larger than that is still read, alone).
    pub fn with_read_bytes(mut self, bytes: usize) -> ExportSource {
        self.read_bytes = bytes.max(1);
        self
    }

    /// Data files from S3 are kept in `dir` while they are read, the copies taking `bytes`
    /// of disk at most together (none when 0): each is then downloaded once, not twice.
    pub fn with_local_copies(mut self, dir: std::path::PathBuf, bytes: u64) -> ExportSource {
        self.copies = (bytes > 0).then_some((dir, bytes));
        self
    }

    pub fn summary(&self) -> &ExportSummary {
        &self.summary
    }

    pub fn files(&self) -> &[DataFile] {
        &self.files
    }

    pub fn read_was_cut(&self) -> bool {
        self.cut
    }

    /// Ended files to commit with the records last returned.
    pub fn take_marks(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.marks)
    }

    /// Up to `max` items (as `{"Item": …}` lines), stopping past the read bytes; empty when
    /// every data file is read. The files are read on several threads, each file's lines in
    /// order; a file's end mark comes with its last line.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, ExportError> {
        if let Some(why) = &self.failed {
            return Err(ExportError::Failed(format!("reading stopped after an earlier failure: {why}")));
        }
        match self.read(max) {
            Ok(out) => Ok(out),
            Err(e) => {
                // The lines read in this call are dropped: so are the end marks they carried.
                self.marks.clear();
                self.failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn read(&mut self, max: usize) -> Result<Vec<RawRecord>, ExportError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max && bytes < self.read_bytes {
            let Some(record) = self.pending.pop_front() else {
                self.marks.extend(self.pending_end.take());
                let received = self.readers()?.chunks.recv();
                match received {
                    Ok(Ok(chunk)) => {
                        self.pending = chunk.records.into();
                        self.pending_end = chunk.ended;
                        continue;
                    }
                    Ok(Err(e)) => return Err(e),
                    // Every file is read: the threads are ending, and are waited for.
                    Err(_) => {
                        if let Some(readers) = self.readers.as_mut() {
                            readers.threads.drain(..).for_each(|t| {
                                let _ = t.join();
                            });
                        }
                        break;
                    }
                }
            };
            bytes += record.data.len();
            out.push(record);
        }
        if self.pending.is_empty() {
            self.marks.extend(self.pending_end.take());
        }
        self.cut = out.len() < max && bytes >= self.read_bytes;
        Ok(out)
    }

    /// The reading threads, started on the first call. A chunk is sent once it passes an
    /// eighth of a read's bytes (1 MiB at most), so the `2 × threads + 1` chunks in memory
    /// at most stay near a read's size.
    fn readers(&mut self) -> Result<&Readers, ExportError> {
        if self.readers.is_none() {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, MAX_READERS);
            // No more threads than files: each thread's share of the copies' disk is larger.
            let threads = threads.clamp(1, self.files.len().max(1));
            let files = Files {
                location: self.location.clone(),
                files: self.files.clone(),
                resume: self.resume.clone(),
                chunk_bytes: (self.read_bytes / 8).clamp(1, 1 << 20),
                stop: self.stop.clone(),
                copies: self.copies.as_ref().map(|(dir, bytes)| LocalCopies {
                    dir: dir.clone(),
                    max_file_bytes: bytes / threads as u64,
                    warned: Arc::new(AtomicBool::new(false)),
                }),
            };
            self.readers = Some(reader::start(files, threads)?);
        }
        self.readers.as_ref().ok_or_else(|| ExportError::Failed("no reading threads".into()))
    }

    /// The reading threads, taken out so a test can watch them end.
    #[cfg(test)]
    fn take_reading_threads(&mut self) -> Vec<std::thread::JoinHandle<()>> {
        self.readers.as_mut().map(|r| std::mem::take(&mut r.threads)).unwrap_or_default()
    }
}

impl Drop for ExportSource {
    /// The reading threads are told to stop and not waited for: one may be inside a request.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The summary and the data files of the export at `location`.
fn read_manifests(location: &ExportLocation) -> Result<(ExportSummary, Vec<DataFile>), ExportError> {
    let at = location.to_string();
    let object = |what: &str, source| ExportError::Object { what: format!("{at}{what}"), source };
    let manifest = |source| ExportError::Manifest { location: at.clone(), source };
    let summary_bytes =
        location.read_small("manifest-summary.json").map_err(|e| object("manifest-summary.json", e))?;
    let summary = manifest::parse_summary(&summary_bytes).map_err(manifest)?;
    let files_bytes =
        location.read_small("manifest-files.json").map_err(|e| object("manifest-files.json", e))?;
    let files = manifest::parse_files(&files_bytes, &summary).map_err(manifest)?;
    Ok((summary, files))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dynashift_core::checkpoint::ENDED;
    use dynashift_core::value::{AttrValue, Item};
    use dynashift_testkit::export::write_export;

    use super::*;

    fn items(n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| {
                Item::from_unique(vec![
                    ("orderId".into(), AttrValue::S(format!("ord-{i:05}").into())),
                    ("note".into(), AttrValue::S("x".repeat(i % 300).into())),
                ])
                .unwrap()
            })
            .collect()
    }

    /// Reads `source` to its end in reads of `max` items: per data file, the lines read (each
    /// once, in order, or the test fails) and whether its end mark came after its last line.
    fn read_all(source: &mut ExportSource, max: usize) -> BTreeMap<String, (Vec<u64>, bool)> {
        let mut files: BTreeMap<String, (Vec<u64>, bool)> = BTreeMap::new();
        loop {
            let batch = source.next_batch(max).unwrap();
            let marks = source.take_marks();
            if batch.is_empty() && marks.is_empty() {
                return files;
            }
            assert!(batch.len() <= max);
            for record in batch {
                let (lines, ended) = files.entry(record.position.shard.to_string()).or_default();
                assert!(!*ended, "{}: a line after the file's end mark", record.position.shard);
                assert!(record.problem.is_none(), "{:?}", record.problem);
                let line: u64 = record.position.sequence.parse().unwrap();
                assert!(lines.last().is_none_or(|last| line == last + 1), "{lines:?} then {line}");
                lines.push(line);
            }
            for mark in marks {
                assert_eq!(&*mark.sequence, ENDED);
                let (_, ended) = files.entry(mark.shard.to_string()).or_default();
                assert!(!*ended, "{} ended twice", mark.shard);
                *ended = true;
            }
        }
    }

    /// Files read on several threads in chunks far smaller than a file still give every line
    /// once, each file's in order, and a file's end mark no earlier than its last line.
    #[test]
    fn files_read_at_once_keep_each_file_in_order_and_end_it_after_its_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let parts = write_export(dir.path(), "Orders", items(700).iter(), 7, "2026-01-01T00:00:00Z");
        for (read_bytes, max) in [(2_000, 13), (50_000, 7), (1 << 20, 10_000)] {
            let mut source =
                ExportSource::open(ExportLocation::Dir(dir.path().to_path_buf()), HashMap::new())
                    .unwrap()
                    .with_read_bytes(read_bytes);
            let files = read_all(&mut source, max);
            for part in &parts {
                let (lines, ended) = files.get(&part.key).cloned().unwrap_or_default();
                assert!(ended, "{} not ended", part.key);
                assert_eq!(lines, (1..=part.items as u64).collect::<Vec<_>>(), "{}", part.key);
            }
            assert_eq!(files.len(), parts.len());
        }
    }

    /// A resumed export reads past each file's committed line and skips ended files.
    #[test]
    fn a_resumed_export_reads_past_the_committed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let parts = write_export(dir.path(), "Orders", items(300).iter(), 4, "2026-01-01T00:00:00Z");
        let resume = HashMap::from([
            (parts[0].key.clone(), ENDED.to_string()),
            (parts[1].key.clone(), "40".to_string()),
        ]);
        let mut source = ExportSource::open(ExportLocation::Dir(dir.path().to_path_buf()), resume)
            .unwrap()
            .with_read_bytes(3_000);
        let files = read_all(&mut source, 17);
        assert!(!files.contains_key(&parts[0].key), "an ended file was read again");
        let (lines, ended) = &files[&parts[1].key];
        assert!(ended);
        assert_eq!(lines, &(41..=parts[1].items as u64).collect::<Vec<_>>());
        assert_eq!(files[&parts[2].key].0.len(), parts[2].items);
    }

    /// The reading threads of a source dropped while its files are being read stop.
    #[test]
    fn a_source_dropped_mid_read_stops_its_readers() {
        let dir = tempfile::tempdir().unwrap();
        write_export(dir.path(), "Orders", items(2_000).iter(), 5, "2026-01-01T00:00:00Z");
        let mut source = ExportSource::open(ExportLocation::Dir(dir.path().to_path_buf()), HashMap::new())
            .unwrap()
            .with_read_bytes(1_000);
        assert!(!source.next_batch(5).unwrap().is_empty());
        let threads = source.take_reading_threads();
        assert!(!threads.is_empty(), "no reading thread");
        assert!(threads.iter().any(|t| !t.is_finished()), "the readers finished before the drop");
        drop(source);
        let started = std::time::Instant::now();
        while !threads.iter().all(std::thread::JoinHandle::is_finished) {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "the readers did not stop");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A failed read drops the end marks of the lines it read, and every later read fails.
    #[test]
    fn a_failed_read_keeps_failing_and_commits_no_end_mark() {
        let dir = tempfile::tempdir().unwrap();
        let parts = write_export(dir.path(), "Orders", items(200).iter(), 3, "2026-01-01T00:00:00Z");
        let mut source = ExportSource::open(ExportLocation::Dir(dir.path().to_path_buf()), HashMap::new())
            .unwrap()
            .with_read_bytes(1 << 20);
        // A data file gone after the manifests were read: opening it fails, which is no fault
        // of the file (as S3 failing is not) and stops the read.
        std::fs::remove_file(dir.path().join(&parts[1].relative)).unwrap();
        let mut failed = None;
        for _ in 0..10 {
            match source.next_batch(1_000) {
                Ok(batch) if batch.is_empty() => break,
                Ok(_) => {}
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        let failed = failed.expect("the missing file stops the read");
        assert!(failed.contains(&parts[1].key), "{failed}");
        assert!(source.take_marks().is_empty());
        let again = source.next_batch(1_000).unwrap_err().to_string();
        assert!(again.contains("earlier failure") && again.contains(&parts[1].key), "{again}");
    }
}
