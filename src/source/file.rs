//! The `file` source: JSON lines from a path, a glob or standard input.
//!
//! Each file is a shard; a record's sequence is the byte offset just past its line, so a
//! restart seeks straight to where the last committed batch ended.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dynashift_core::Position;

use super::RawRecord;

/// Bytes one read takes in, about, unless set from the memory budget (`with_read_bytes`):
/// reads of large records are bounded by size, not count (25,000 records of 350 KB would be
/// 8.75 GB).
pub const READ_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("no file matches `{0}`")]
    NoMatch(String),
    #[error("bad file pattern `{pattern}`: {source}")]
    Pattern { pattern: String, source: glob::PatternError },
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

enum Input {
    Stdin(BufReader<std::io::Stdin>),
    File(BufReader<File>),
}

pub struct FileSource {
    pattern: String,
    follow: bool,
    files: Vec<PathBuf>,
    /// Committed offsets per file (shard), from the warehouse.
    resume: HashMap<String, String>,
    current: usize,
    input: Option<(Arc<str>, Input, u64)>,
    line: Vec<u8>,
    sequence: String,
    read_bytes: usize,
    /// The last read stopped at `read_bytes`.
    cut: bool,
}

impl FileSource {
    /// Whether the last read stopped at its size in bytes.
    pub fn read_was_cut(&self) -> bool {
        self.cut
    }

    /// Reads stop past `bytes` (a record larger than that is still read, alone).
    pub fn with_read_bytes(mut self, bytes: usize) -> FileSource {
        self.read_bytes = bytes.max(1);
        self
    }

    /// `pattern` is a path, a glob or `-`; `resume` maps shard → committed byte offset.
    pub fn open(
        pattern: &str,
        follow: bool,
        resume: HashMap<String, String>,
    ) -> Result<FileSource, FileSourceError> {
        let mut source = FileSource {
            pattern: pattern.to_string(),
            follow,
            files: Vec::new(),
            resume,
            current: 0,
            input: None,
            line: Vec::with_capacity(4096),
            sequence: String::new(),
            read_bytes: READ_BYTES,
            cut: false,
        };
        if pattern != "-" {
            source.files = source.expand()?;
            if source.files.is_empty() && !follow {
                return Err(FileSourceError::NoMatch(pattern.to_string()));
            }
            for f in &source.files {
                File::open(f)
                    .map_err(|e| FileSourceError::Io { path: f.display().to_string(), source: e })?;
            }
        }
        Ok(source)
    }

    /// The name checkpoints are stored under.
    pub fn id(&self) -> &'static str {
        "file"
    }

    fn expand(&self) -> Result<Vec<PathBuf>, FileSourceError> {
        let is_glob = self.pattern.contains(['*', '?', '[']);
        if !is_glob {
            return Ok(vec![PathBuf::from(&self.pattern)]);
        }
        let paths = glob::glob(&self.pattern)
            .map_err(|e| FileSourceError::Pattern { pattern: self.pattern.clone(), source: e })?;
        let mut files: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
        files.sort();
        Ok(files)
    }

    /// Reads up to `max` records, and stops past its read bytes (a record larger than that is
    /// still read, alone). An empty result means the input is exhausted (or, when following,
    /// that nothing new arrived within about a second).
    pub fn next_batch(&mut self, max: usize) -> Result<Vec<RawRecord>, FileSourceError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut waited = false;
        while out.len() < max && bytes < self.read_bytes {
            if self.input.is_none() && !self.open_next(&mut out)? {
                if !self.follow || waited || !out.is_empty() {
                    break;
                }
                // Following: look for growth or new files, then try once more.
                std::thread::sleep(Duration::from_millis(500));
                waited = true;
                self.rescan()?;
                continue;
            }
            let Some((shard, input, offset)) = self.input.as_mut() else { continue };
            let line = match input {
                Input::Stdin(r) => read_line(r, &mut self.line),
                Input::File(r) => read_line(r, &mut self.line),
            }
            .map_err(|e| FileSourceError::Io { path: shard.to_string(), source: e })?;
            if line.read == 0 || (self.follow && !line.newline) {
                // End of this input (a partial last line waits for its newline when following).
                if let Some((shard, Input::File(_), offset)) = self.input.take() {
                    self.resume.insert(shard.to_string(), offset.to_string());
                }
                self.current += 1;
                continue;
            }
            *offset += line.read as u64;
            let Some(data) = line.data else { continue };
            bytes += data.len();
            // Formatted in a reused buffer: one allocation for the sequence, not two.
            self.sequence.clear();
            write!(self.sequence, "{offset}").expect("writing to a String cannot fail");
            out.push(RawRecord {
                data,
                position: Position::new(shard.clone(), self.sequence.as_str()),
                problem: None,
            });
        }
        self.cut = out.len() < max && bytes >= self.read_bytes;
        Ok(out)
    }

    /// Opens the next input; false when none is left. An empty file never seen before
    /// yields a rejected marker record so the user learns of it.
    fn open_next(&mut self, out: &mut Vec<RawRecord>) -> Result<bool, FileSourceError> {
        if self.pattern == "-" {
            if self.current > 0 {
                return Ok(false);
            }
            self.input = Some((Arc::from("-"), Input::Stdin(BufReader::new(std::io::stdin())), 0));
            return Ok(true);
        }
        while let Some(path) = self.files.get(self.current) {
            let name = path.display().to_string();
            let io = |e| FileSourceError::Io { path: name.clone(), source: e };
            let mut file = File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            let committed = self.resume.get(&name).and_then(|s| s.parse::<u64>().ok());
            let start = committed.unwrap_or(0);
            if len == 0 && committed.is_none() {
                self.resume.insert(name.clone(), "0".into());
                out.push(RawRecord {
                    data: Vec::new(),
                    position: Position::new(name.as_str(), "0"),
                    problem: Some("file is empty".into()),
                });
                self.current += 1;
                continue;
            }
            if start >= len {
                self.current += 1;
                continue;
            }
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            self.input =
                Some((Arc::from(name.as_str()), Input::File(BufReader::with_capacity(1 << 20, file)), start));
            return Ok(true);
        }
        Ok(false)
    }

    fn rescan(&mut self) -> Result<(), FileSourceError> {
        if self.pattern == "-" {
            return Ok(());
        }
        self.files = self.expand()?;
        self.current = 0;
        Ok(())
    }
}

/// One line read: the bytes it took, whether a newline ended it, and its record (the line
/// without its ending, copied at its exact size; `None` for a blank line).
struct LineRead {
    read: usize,
    newline: bool,
    data: Option<Vec<u8>>,
}

/// Reads through the next newline. A line that lies within the reader's buffer is copied
/// once, straight from it; one that spans buffers gathers in `spill` first.
fn read_line(r: &mut impl BufRead, spill: &mut Vec<u8>) -> std::io::Result<LineRead> {
    spill.clear();
    loop {
        // A read a signal interrupted is retried, as `read_until` does.
        let buf = match r.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(LineRead { read: spill.len(), newline: false, data: record_bytes(spill) });
        }
        if let Some(i) = memchr::memchr(b'\n', buf) {
            let line = if spill.is_empty() {
                LineRead { read: i + 1, newline: true, data: record_bytes(&buf[..=i]) }
            } else {
                spill.extend_from_slice(&buf[..=i]);
                LineRead { read: spill.len(), newline: true, data: record_bytes(spill) }
            };
            r.consume(i + 1);
            return Ok(line);
        }
        let n = buf.len();
        spill.extend_from_slice(buf);
        r.consume(n);
    }
}

fn record_bytes(line: &[u8]) -> Option<Vec<u8>> {
    let data = trim_line(line);
    (!data.iter().all(u8::is_ascii_whitespace)).then(|| data.to_vec())
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_read_alike_within_and_across_the_reader_buffer() {
        let text = b"{\"a\":1}\r\n  \n{\"long\":\"0123456789abcdef\"}\n{\"last\":2}";
        for capacity in [1, 3, 8, 64, 4096] {
            let mut r = BufReader::with_capacity(capacity, &text[..]);
            let mut spill = Vec::new();
            let mut lines = Vec::new();
            loop {
                let line = read_line(&mut r, &mut spill).unwrap();
                if line.read == 0 {
                    break;
                }
                lines.push((line.read, line.newline, line.data));
            }
            let expected: Vec<(usize, bool, Option<Vec<u8>>)> = vec![
                (9, true, Some(b"{\"a\":1}".to_vec())),
                (3, true, None),
                (28, true, Some(b"{\"long\":\"0123456789abcdef\"}".to_vec())),
                (10, false, Some(b"{\"last\":2}".to_vec())),
            ];
            assert_eq!(lines, expected, "buffer of {capacity} bytes");
        }
    }

    /// A read stopped by its size in bytes says so: the source has more (a backlog), which
    /// a read that ran out of input, or gave the records asked for, does not claim.
    #[test]
    fn a_read_cut_at_its_size_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let line = format!("{{\"v\":\"{}\"}}\n", "x".repeat(90));
        std::fs::write(&path, line.repeat(10)).unwrap();
        let mut src = FileSource::open(&path.display().to_string(), false, HashMap::new())
            .unwrap()
            .with_read_bytes(250);
        let first = src.next_batch(100).unwrap();
        assert_eq!((first.len(), src.read_was_cut()), (3, true), "stops past 250 bytes");
        let asked = src.next_batch(2).unwrap();
        assert_eq!((asked.len(), src.read_was_cut()), (2, false), "the records asked for");
        let mut rest = 0;
        loop {
            let read = src.next_batch(100).unwrap();
            if read.is_empty() {
                break;
            }
            rest += read.len();
        }
        assert_eq!((rest, src.read_was_cut()), (5, false), "the end of the input");
        // One record larger than the bound is still read, alone.
        let mut big =
            FileSource::open(&path.display().to_string(), false, HashMap::new()).unwrap().with_read_bytes(10);
        assert_eq!(big.next_batch(100).unwrap().len(), 1);
    }

    #[test]
    fn reads_lines_and_resumes_by_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}").unwrap();
        let pattern = path.display().to_string();
        let mut src = FileSource::open(&pattern, false, HashMap::new()).unwrap();
        let recs = src.next_batch(10).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].data, b"{\"b\":2}");
        let resume: HashMap<_, _> = [(pattern.clone(), recs[0].position.sequence.to_string())].into();
        let mut again = FileSource::open(&pattern, false, resume).unwrap();
        assert_eq!(again.next_batch(10).unwrap().len(), 2);
    }

    #[test]
    fn empty_file_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.jsonl");
        File::create(&path).unwrap().flush().unwrap();
        let pattern = path.display().to_string();
        let recs = FileSource::open(&pattern, false, HashMap::new()).unwrap().next_batch(10).unwrap();
        assert_eq!(recs[0].problem.as_deref(), Some("file is empty"));
        let resume: HashMap<_, _> = [(pattern.clone(), "0".to_string())].into();
        assert!(FileSource::open(&pattern, false, resume).unwrap().next_batch(10).unwrap().is_empty());
    }

    #[test]
    fn missing_inputs_are_errors() {
        assert!(matches!(
            FileSource::open("/nonexistent/x.jsonl", false, HashMap::new()),
            Err(FileSourceError::Io { .. })
        ));
        assert!(matches!(
            FileSource::open("/nonexistent/*.jsonl", false, HashMap::new()),
            Err(FileSourceError::NoMatch(_))
        ));
    }
}
