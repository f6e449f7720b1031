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

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use base64::Engine as _;
use dynashift_core::checkpoint::ENDED;
use dynashift_core::Position;
use md5::Digest as _;

use self::manifest::{DataFile, ExportSummary, ManifestError};
use self::object::{ExportLocation, ObjectError};
use super::RawRecord;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{what}: {source}")]
    Object { what: String, source: ObjectError },
    #[error("{location}: {source}")]
    Manifest { location: String, source: ManifestError },
}

/// A data file being read: its decompressed lines, and how many were taken.
struct Reading {
    shard: Arc<str>,
    lines: Box<dyn BufRead + Send>,
    taken: u64,
    expected: u64,
}

pub struct ExportSource {
    location: ExportLocation,
    summary: ExportSummary,
    files: Vec<DataFile>,
    /// Committed line per data file (or `end`), from the warehouse.
    resume: HashMap<String, String>,
    current: usize,
    reading: Option<Reading>,
    marks: Vec<Position>,
    line: Vec<u8>,
    read_bytes: usize,
    cut: bool,
}

impl ExportSource {
    /// Reads the export's manifests at `location`; `resume` maps data file → committed line.
    pub fn open(
        location: ExportLocation,
        resume: HashMap<String, String>,
    ) -> Result<ExportSource, ExportError> {
        let (summary, files) = read_manifests(&location)?;
        Ok(ExportSource {
            location,
            summary,
            files,
            resume,
            current: 0,
            reading: None,
            marks: Vec::new(),
            line: Vec::with_capacity(4096),
            read_bytes: super::file::READ_BYTES,
            cut: false,
        })
    }

    /// Reads stop past `bytes` (an item larger than that is still read, alone).
    pub fn with_read_bytes(mut self, bytes: usize) -> ExportSource {
        self.read_bytes = bytes.max(1);
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
    /// every data file is read.
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, ExportError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max && bytes < self.read_bytes {
            if self.reading.is_none() && !self.open_next(&mut out)? {
                break;
            }
            let Some(reading) = self.reading.as_mut() else { continue };
            self.line.clear();
            let read = match reading.lines.read_until(b'\n', &mut self.line) {
                Ok(n) => n,
                // S3 failing is no fault of the file: stop (a rerun resumes from the positions).
                Err(e) if object::is_s3_failure(&e) => {
                    return Err(ExportError::Object {
                        what: reading.shard.to_string(),
                        source: ObjectError::Read(e),
                    })
                }
                Err(e) => {
                    // A damaged file: what was read of it stays; it is reported and not ended.
                    let problem = format!(
                        "{}: cannot be decompressed after line {}: {e}",
                        reading.shard, reading.taken
                    );
                    out.push(problem_record(&reading.shard, reading.taken, problem));
                    self.finish_file(false);
                    continue;
                }
            };
            if read == 0 {
                let whole = reading.taken == reading.expected;
                if !whole {
                    let problem = format!(
                        "{} holds {} items, but manifest-files.json lists {}",
                        reading.shard, reading.taken, reading.expected
                    );
                    out.push(problem_record(&reading.shard, reading.taken, problem));
                }
                self.finish_file(whole);
                continue;
            }
            reading.taken += 1;
            while self.line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                continue;
            }
            bytes += self.line.len();
            out.push(RawRecord {
                // An exact copy: handing over the line buffer would keep its capacity (4 KB
                // and up) for each item of a few hundred bytes, 100 MB a read.
                data: self.line.clone(),
                position: Position::new(reading.shard.clone(), reading.taken.to_string()),
                problem: None,
            });
        }
        self.cut = out.len() < max && bytes >= self.read_bytes;
        Ok(out)
    }

    /// Closes the file being read; `ended`: read whole, so committed as ended.
    fn finish_file(&mut self, ended: bool) {
        if let Some(reading) = self.reading.take() {
            if ended {
                self.marks.push(Position::new(reading.shard, ENDED));
            }
        }
        self.current += 1;
    }

    /// Opens the next data file not read yet, its lines past the committed one; false when
    /// none is left. A file whose checksum differs is reported and skipped.
    fn open_next(&mut self, out: &mut Vec<RawRecord>) -> Result<bool, ExportError> {
        while let Some(file) = self.files.get(self.current).cloned() {
            let committed = self.resume.get(&file.key).cloned();
            if committed.as_deref() == Some(ENDED) {
                self.current += 1;
                continue;
            }
            let start: u64 = committed.and_then(|c| c.parse().ok()).unwrap_or(0);
            let object_error = |source| ExportError::Object { what: file.key.clone(), source };
            if let Some(expected) = &file.md5_base64 {
                let actual = md5_base64(self.location.open(&file).map_err(object_error)?)
                    .map_err(|e| object_error(ObjectError::Read(e)))?;
                if &actual != expected {
                    let problem = format!(
                        "{}: MD5 {actual} differs from the manifest's {expected}: the file is damaged or not \
                         this export's; none of it was loaded",
                        file.key
                    );
                    out.push(problem_record(&Arc::from(file.key.as_str()), start, problem));
                    self.current += 1;
                    continue;
                }
            }
            let mut raw = BufReader::with_capacity(1 << 20, self.location.open(&file).map_err(object_error)?);
            // An empty partition's file may hold no gzip stream at all (0 bytes): no items.
            let empty = raw.fill_buf().map_err(|e| object_error(ObjectError::Read(e)))?.is_empty();
            let mut lines: Box<dyn BufRead + Send> = if empty {
                Box::new(std::io::empty())
            } else {
                Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(raw)))
            };
            let shard: Arc<str> = Arc::from(file.key.as_str());
            let mut skipped = 0;
            while skipped < start {
                self.line.clear();
                match lines.read_until(b'\n', &mut self.line) {
                    Ok(0) => break,
                    Ok(_) => skipped += 1,
                    Err(e) if object::is_s3_failure(&e) => return Err(object_error(ObjectError::Read(e))),
                    Err(e) => {
                        let problem =
                            format!("{}: cannot be decompressed after line {skipped}: {e}", file.key);
                        out.push(problem_record(&shard, start, problem));
                        break;
                    }
                }
            }
            if skipped < start && out.last().is_some_and(|r| r.position.shard == shard) {
                self.current += 1;
                continue;
            }
            self.reading = Some(Reading { shard, lines, taken: skipped, expected: file.item_count });
            return Ok(true);
        }
        Ok(false)
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

/// The MD5 of everything `input` yields, base64 (as `manifest-files.json` lists it).
fn md5_base64(mut input: impl Read) -> std::io::Result<String> {
    let mut hasher = md5::Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
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
