//! Held changes written to disk when a backlog outgrows their memory bound, and read back a
//! few key partitions at a time.
//!
//! Without it, a backlog of more distinct keys than the memory bound holds is applied as many
//! batches, and when its keys are spread over the whole backlog every batch writes most of them
//! again: four times the keys was sixteen times the row writes. Spilled, each partition holds
//! every change of its keys, so a key is written once however often the backlog changed it.

use std::fs::{self, OpenOptions};
use std::hash::BuildHasher as _;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use dynashift_core::held::HeldChange;
use dynashift_core::spilled::{self, Spilled};

/// Directories of a process start with this; then its process id, a dash and a random
/// number (a process id can come back: in a container, every run may be process 1).
const PREFIX: &str = ".dynashift-spill-";

/// The spilled changes of the batch being gathered.
pub struct Spill {
    /// Where the partition files go: a directory of this process, made on the first write.
    base: PathBuf,
    dir: Option<PathBuf>,
    /// Bytes in each partition's file.
    sizes: Vec<u64>,
    /// The next partition to read back (`sizes.len()`: none is being read).
    next: usize,
    /// Seeded per process, so keys from the stream cannot be chosen to fill one partition.
    hasher: foldhash::fast::RandomState,
}

impl Spill {
    /// Spills up to about `limit` bytes into a directory made in `base` when first needed,
    /// in partitions of about an eighth of `group_bytes` at most (64 to 1,024 of them), so
    /// that the batches read back stay close to `group_bytes`.
    pub fn new(base: &Path, limit: u64, group_bytes: usize) -> Spill {
        let partition = (group_bytes as u64 / 8).max(1);
        let partitions = limit.div_ceil(partition).clamp(64, 1_024) as usize;
        Spill {
            base: base.to_path_buf(),
            dir: None,
            sizes: vec![0; partitions],
            next: partitions,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn partitions(&self) -> usize {
        self.sizes.len()
    }

    /// Bytes on disk not yet read back.
    pub fn bytes(&self) -> u64 {
        let from = if self.reading() { self.next } else { 0 };
        self.sizes[from..].iter().sum()
    }

    /// Whether partitions are being read back (`start_reading` was called and some are left).
    pub fn reading(&self) -> bool {
        self.next < self.partitions()
    }

    /// Appends `tables`' changes (table, then key text and change) to their partitions.
    pub fn write(
        &mut self,
        tables: impl IntoIterator<Item = (String, Vec<(String, HeldChange)>)>,
    ) -> io::Result<()> {
        debug_assert!(!self.reading(), "spilled while reading back");
        let mut entries: Vec<(usize, usize, String, HeldChange)> = Vec::new();
        let mut names = Vec::new();
        let partitions = self.partitions() as u64;
        for (table, held) in tables {
            for (key, change) in held {
                let partition = (self.hasher.hash_one((table.as_str(), key.as_str())) % partitions) as usize;
                entries.push((partition, names.len(), key, change));
            }
            names.push(table);
        }
        entries.sort_unstable_by_key(|e| e.0);
        let dir = self.dir()?;
        let mut frame = Vec::new();
        let mut entries = entries.into_iter().peekable();
        while let Some(&(partition, ..)) = entries.peek() {
            let path = dir.join(partition.to_string());
            let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| at(&path, e))?;
            let mut out = BufWriter::with_capacity(1 << 18, file);
            while let Some((_, table, key, change)) = entries.next_if(|e| e.0 == partition) {
                frame.clear();
                spilled::write(&names[table], &key, &change, &mut frame);
                out.write_all(&frame).map_err(|e| at(&path, e))?;
                self.sizes[partition] += frame.len() as u64;
            }
            out.flush().map_err(|e| at(&path, e))?;
        }
        Ok(())
    }

    /// Starts reading the partitions back; nothing more may be written until all are read.
    pub fn start_reading(&mut self) {
        self.next = self.sizes.iter().position(|s| *s > 0).unwrap_or(self.partitions());
    }

    /// The size on disk of the next partition to read back.
    pub fn next_size(&self) -> Option<u64> {
        self.reading().then(|| self.sizes[self.next])
    }

    /// The next partition to read back, which then counts as read (partitions are read on
    /// several threads at once this way).
    pub fn take_next(&mut self) -> Option<Partition> {
        let dir = self.dir.as_ref().filter(|_| self.reading())?;
        let partition = Partition { path: dir.join(self.next.to_string()), size: self.sizes[self.next] };
        self.sizes[self.next] = 0;
        self.next =
            (self.next + 1..self.partitions()).find(|p| self.sizes[*p] > 0).unwrap_or(self.partitions());
        Some(partition)
    }

    /// This process's directory, made (and left-overs of processes that are gone removed) on
    /// first use.
    fn dir(&mut self) -> io::Result<PathBuf> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        remove_left_overs(&self.base);
        let unique = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let dir = self.base.join(format!("{PREFIX}{}-{unique:016x}", std::process::id()));
        fs::create_dir_all(&self.base).map_err(|e| at(&self.base, e))?;
        fs::create_dir(&dir).map_err(|e| at(&dir, e))?;
        tracing::debug!(dir = %dir.display(), "spilling held changes");
        self.dir = Some(dir.clone());
        Ok(dir)
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            if let Err(e) = fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), "could not remove spilled changes: {e}");
            }
        }
    }
}

/// One partition's file, to read back once.
pub struct Partition {
    path: PathBuf,
    /// Bytes written to it.
    size: u64,
}

impl Partition {
    /// Its changes, in the order written; the file is deleted once read.
    pub fn read(self) -> io::Result<Vec<Spilled>> {
        let path = &self.path;
        let bytes = fs::read(path).map_err(|e| at(path, e))?;
        if bytes.len() as u64 != self.size {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} bytes found of {} written", bytes.len(), self.size),
            );
            return Err(at(path, e));
        }
        let mut reader = spilled::Reader::default();
        let mut changes = Vec::new();
        let mut at_byte = 0;
        while at_byte < bytes.len() {
            let head: Option<[u8; 4]> = bytes.get(at_byte..at_byte + 4).and_then(|h| h.try_into().ok());
            let body = head.and_then(|head| {
                let start = at_byte + 4;
                bytes.get(start..start.checked_add(spilled::frame_length(head))?)
            });
            let Some(body) = body else {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a frame at byte {at_byte} runs past the end"),
                );
                return Err(at(path, e));
            };
            let change =
                reader.read(body).map_err(|e| at(path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
            changes.push(change);
            at_byte += 4 + body.len();
        }
        drop(bytes);
        fs::remove_file(path).map_err(|e| at(path, e))?;
        Ok(changes)
    }
}

/// Removes spill directories in `base` of processes no longer running (a killed process
/// leaves its own behind), and of an earlier process that had this one's id. Only where
/// `/proc` tells which processes run; processes in other containers look gone, so they must
/// not share a `spill_dir`.
fn remove_left_overs(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|rest| rest.split('-').next());
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed changes spilled by a process that is gone")
                }
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), "could not remove left-over spilled changes: {e}")
                }
            }
        }
    }
}

/// `error` with the file it happened on.
fn at(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("spilled changes, {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynashift_core::change::{Change, EventIds, EventKind, Position, Version};
    use dynashift_core::value::{key_text, AttrValue, Item};

    fn change(key: usize, micros: i64) -> (String, HeldChange) {
        let keys: Item =
            [("k", AttrValue::N(dynashift_core::number::Number::parse(&key.to_string()).unwrap()))].into();
        let change = Change {
            table: "T".into(),
            key_text: key_text(&keys),
            new_image: Some(keys.clone()),
            keys,
            old_image: None,
            event: EventKind::Insert,
            version: Version::new(micros, None),
            position: Position::new("s", micros.to_string()),
            ids: EventIds::of(None),
        };
        let packed = HeldChange::pack(change);
        (packed.key_text, packed.held)
    }

    #[test]
    fn every_change_comes_back_once_with_its_keys_partition_together() {
        let base = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(base.path(), 1 << 20, 1 << 20);
        spill.write([("T".to_string(), (0..500).map(|k| change(k, 1)).collect())]).unwrap();
        spill.write([("T".to_string(), (0..500).step_by(2).map(|k| change(k, 2)).collect())]).unwrap();
        assert!(spill.bytes() > 0 && !spill.reading());
        spill.start_reading();
        let mut seen: std::collections::HashMap<String, (usize, usize)> = Default::default();
        let mut partitions = 0;
        while spill.next_size().is_some() {
            partitions += 1;
            let mut keys = std::collections::HashSet::new();
            for s in spill.take_next().unwrap().read().unwrap() {
                assert_eq!(s.table, "T");
                keys.insert(s.key_text.clone());
                seen.entry(s.key_text).or_default().0 += 1;
            }
            for key in keys {
                seen.get_mut(&key).unwrap().1 += 1;
            }
        }
        assert_eq!(seen.len(), 500);
        assert!(seen.values().all(|(changes, partitions)| *partitions == 1 && *changes >= 1));
        assert_eq!(seen.values().map(|v| v.0).sum::<usize>(), 750);
        assert!(partitions > 1 && spill.bytes() == 0 && !spill.reading());
        let dir = spill.dir.clone().unwrap();
        drop(spill);
        assert!(!dir.exists(), "the directory goes with the spill");
    }

    #[test]
    fn a_damaged_file_is_reported_with_its_name() {
        let base = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(base.path(), 1 << 20, 1 << 20);
        spill.write([("T".to_string(), vec![change(1, 1)])]).unwrap();
        spill.start_reading();
        let path = spill.dir.clone().unwrap().join(spill.next.to_string());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let error = spill.take_next().unwrap().read().unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[test]
    fn directories_of_processes_that_are_gone_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let gone = base.path().join(format!("{PREFIX}{}-0", u32::MAX - 1));
        let same_id = base.path().join(format!("{PREFIX}{}-1", std::process::id()));
        let other = base.path().join(format!("{PREFIX}1-1"));
        for dir in [&gone, &same_id, &other] {
            fs::create_dir_all(dir).unwrap();
        }
        let mut spill = Spill::new(base.path(), 1 << 20, 1 << 20);
        spill.write([("T".to_string(), vec![change(1, 1)])]).unwrap();
        assert!(!gone.exists() && !same_id.exists(), "gone, and an earlier process of this id");
        assert!(other.exists(), "process 1 runs");
    }
}
