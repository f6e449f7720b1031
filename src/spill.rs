//! Held changes written to disk when a backlog outgrows their memory bound, and read back a
//! few key partitions at a time.
//!
//! Without it, a backlog of more distinct keys than the memory bound holds is applied as many
//! batches, and when its keys are spread over the whole backlog every batch writes most of them
//! again: four times the keys was sixteen times the row writes. Spilled, each partition holds
//! every change of its keys, so a key is written once however often the backlog changed it.

use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher as _;
use std::io::{self, BufReader, BufWriter, Read, Write};
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

    /// Reads the next partition back into `add`, then deletes its file.
    pub fn read_next(&mut self, add: &mut dyn FnMut(Spilled)) -> io::Result<()> {
        let Some(dir) = self.dir.clone().filter(|_| self.reading()) else { return Ok(()) };
        let path = dir.join(self.next.to_string());
        let file = File::open(&path).map_err(|e| at(&path, e))?;
        let mut input = BufReader::with_capacity(1 << 18, file);
        let mut reader = spilled::Reader::default();
        let mut frame = Vec::new();
        let mut read = 0u64;
        loop {
            let mut head = [0u8; 4];
            match input.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(at(&path, e)),
            }
            let length = spilled::frame_length(head);
            if read + 4 + length as u64 > self.sizes[self.next] {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a frame of {length} bytes runs past the end"),
                );
                return Err(at(&path, e));
            }
            frame.resize(length, 0);
            input.read_exact(&mut frame).map_err(|e| at(&path, e))?;
            read += 4 + length as u64;
            let change =
                reader.read(&frame).map_err(|e| at(&path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
            add(change);
        }
        if read != self.sizes[self.next] {
            let e = io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{read} bytes read of {} written", self.sizes[self.next]),
            );
            return Err(at(&path, e));
        }
        fs::remove_file(&path).map_err(|e| at(&path, e))?;
        self.sizes[self.next] = 0;
        self.next =
            (self.next + 1..self.partitions()).find(|p| self.sizes[*p] > 0).unwrap_or(self.partitions());
        Ok(())
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
            spill
                .read_next(&mut |s| {
                    assert_eq!(s.table, "T");
                    keys.insert(s.key_text.clone());
                    seen.entry(s.key_text).or_default().0 += 1;
                })
                .unwrap();
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
        let error = spill.read_next(&mut |_| {}).unwrap_err().to_string();
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
