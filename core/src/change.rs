//! The change model: what one source record means, independent of its envelope.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use crate::value::Item;

/// Where a record sits in its source: a shard (a Kinesis shard, a file) and a numeric
/// sequence within it (a Kinesis sequence number, a byte offset). Sequences are decimal
/// strings of any length and compare as numbers. A shard is shared by all its records; a
/// sequence is held inline when it is short (a byte offset, a DynamoDB Streams sequence
/// number), so most records' positions allocate nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The shard or file the record was read from, shared by all its records.
    pub shard: Arc<str>,
    /// The record's decimal sequence within its shard.
    pub sequence: crate::value::Text,
}

impl Position {
    /// A position from its shard and sequence.
    pub fn new(shard: impl Into<Arc<str>>, sequence: impl Into<crate::value::Text>) -> Position {
        Position { shard: shard.into(), sequence: sequence.into() }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.shard, self.sequence)
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        self.shard.cmp(&other.shard).then_with(|| compare_decimal(&self.sequence, &other.sequence))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Compares two unsigned decimal strings numerically (Kinesis and DynamoDB Streams sequence
/// numbers have up to 56 digits; comparing them as text gets "9" > "10" wrong).
pub fn compare_decimal(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Width of the zero-padded stream sequence stored beside `_ddb_version`: DynamoDB Streams
/// sequence numbers have up to 40 digits, Kinesis sequence numbers 56.
pub const SEQUENCE_WIDTH: usize = 64;

/// A change's place in its item's history: creation time in microseconds, then the record's
/// place in its shard (the DynamoDB Streams sequence number, or the Kinesis sequence number
/// for Kinesis-for-DynamoDB records, whose times tie at millisecond precision). Later
/// versions win; an equal version is the same record again. The tie is decided the same way
/// whichever batch each change arrives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The change's creation time (`ApproximateCreationDateTime`), in microseconds since the epoch.
    pub micros: i64,
    /// The sequence's digits without leading zeros (empty for none): held inline when short
    /// (a byte offset), so most records' versions allocate nothing. Stored zero-padded to
    /// `SEQUENCE_WIDTH` digits (`padded`), so that text order is numeric order.
    digits: crate::value::Text,
}

impl Version {
    /// A version from a creation time in microseconds and the record's sequence (leading zeros
    /// ignored; `None` when there is none, as for export lines).
    pub fn new(micros: i64, sequence: Option<&str>) -> Version {
        let digits = sequence.map(|s| s.trim_start_matches('0')).unwrap_or("");
        Version { micros, digits: digits.into() }
    }

    /// The sequence as stored: zero-padded to `SEQUENCE_WIDTH` digits.
    pub fn padded(&self) -> PaddedSequence<'_> {
        PaddedSequence(&self.digits)
    }

    /// The sequence's digits without leading zeros (empty for none).
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// Bytes held beyond the struct itself.
    pub fn heap_bytes(&self) -> usize {
        if self.digits.is_heap_allocated() {
            self.digits.len()
        } else {
            0
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.micros
            .cmp(&other.micros)
            .then_with(|| self.digits.len().cmp(&other.digits.len()))
            .then_with(|| self.digits.as_bytes().cmp(other.digits.as_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A version's sequence as stored, written without an intermediate string.
pub struct PaddedSequence<'a>(&'a str);

/// `SEQUENCE_WIDTH` zeros.
const ZEROS: &str = match std::str::from_utf8(&[b'0'; SEQUENCE_WIDTH]) {
    Ok(zeros) => zeros,
    Err(_) => panic!("zeros are text"),
};

impl fmt::Display for PaddedSequence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of the zeros: a write per zero was most of staging a row's control columns.
        f.write_str(&ZEROS[..SEQUENCE_WIDTH.saturating_sub(self.0.len())])?;
        f.write_str(self.0)
    }
}

/// The operation a stream record's `eventName` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `INSERT`: the item was created.
    Insert,
    /// `MODIFY`: an existing item was changed.
    Modify,
    /// `REMOVE`: the item was deleted, by a user or by time-to-live.
    Remove,
}

impl Op {
    /// The operation named by `eventName`; `None` for any other name.
    pub fn parse(event_name: &str) -> Option<Op> {
        match event_name {
            "INSERT" => Some(Op::Insert),
            "MODIFY" => Some(Op::Modify),
            "REMOVE" => Some(Op::Remove),
            _ => None,
        }
    }
}

/// What kind of event produced the row, stored in `_ddb_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The item was created (`INSERT`).
    Insert,
    /// An existing item was changed (`MODIFY`).
    Modify,
    /// The item was deleted by a user or an application (`REMOVE`).
    Remove,
    /// A REMOVE made by DynamoDB's time-to-live process.
    Expire,
    /// A line of a full export or scan.
    Load,
}

impl EventKind {
    /// The name stored in `_ddb_event`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Insert => "INSERT",
            EventKind::Modify => "MODIFY",
            EventKind::Remove => "REMOVE",
            EventKind::Expire => "EXPIRE",
            EventKind::Load => "LOAD",
        }
    }

    /// Whether the event deletes the item (`REMOVE` or `EXPIRE`).
    pub fn is_delete(self) -> bool {
        matches!(self, EventKind::Remove | EventKind::Expire)
    }
}

/// One decoded change to one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The DynamoDB table the item belongs to.
    pub table: String,
    /// The item's key attributes (partition key, and sort key if the table has one).
    pub keys: Item,
    /// Canonical text of `keys` (see `value::key_text`): the item's identity.
    pub key_text: String,
    /// The item after the change; `None` for deletes.
    pub new_image: Option<Item>,
    /// The item before a delete, when the stream carries it (kept for soft deletes).
    pub old_image: Option<Item>,
    /// What kind of event made the change.
    pub event: EventKind,
    /// The change's place in its item's history: a key's changes are applied in version order.
    pub version: Version,
    /// Where the record was read from; after the version, it orders changes of one key.
    pub position: Position,
    /// The `eventID`s by which a re-delivery of this change is recognised.
    pub ids: EventIds,
}

/// Most `eventID`s remembered for one item's newest time.
pub const MAX_TIE_IDS: usize = 16;

/// The stream's `eventID`s by which a re-delivered duplicate is recognised: the change's own,
/// and those of the item's other changes with the same creation time already seen. Kinesis
/// delivers duplicates later in the shard, so by sequence alone a duplicate of an earlier
/// change would overwrite a different change of the same millisecond; a change whose own
/// `eventID` was seen at its time is never newer than anything. Ids are kept as 64-bit
/// FNV-1a hashes (stable across processes, as they are stored): no allocation per record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventIds {
    /// Hash of the change's own `eventID`; `None` when it has none or needs none (DynamoDB
    /// Streams records, which are never re-delivered, and export lines).
    pub own: Option<u64>,
    /// Other changes' ids at the same time, at most `MAX_TIE_IDS`.
    others: Box<[u64]>,
}

/// 64-bit FNV-1a.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl EventIds {
    /// The ids of a change with `id`.
    pub fn of(id: Option<&str>) -> EventIds {
        EventIds { own: id.filter(|i| !i.is_empty()).map(fnv1a), others: Box::default() }
    }

    /// Whether `id` (a hashed `eventID`) is this change's own or one seen at its time.
    pub fn contains(&self, id: u64) -> bool {
        self.own == Some(id) || self.others.contains(&id)
    }

    /// Remembers `other`'s ids as seen at the same time as this change.
    pub fn absorb(&mut self, other: &EventIds) {
        let mut others = self.others.to_vec();
        for id in other.own.iter().chain(other.others.iter()) {
            if others.len() < MAX_TIE_IDS && !self.contains(*id) && !others.contains(id) {
                others.push(*id);
            }
        }
        self.others = others.into_boxed_slice();
    }

    /// As stored in `_ddb_event_ids`: `,own,other,…,` in hex (so `,id,` finds one, and the own
    /// id is the first), or `None` when the change has no id of its own.
    pub fn stored(&self) -> Option<String> {
        let own = self.own?;
        let mut out = format!(",{own:016x},");
        for id in self.others.iter() {
            out.push_str(&format!("{id:016x},"));
        }
        Some(out)
    }

    /// The other changes' ids seen at this change's time.
    pub fn others(&self) -> &[u64] {
        &self.others
    }

    /// Ids as `own` and `others` return them (at most `MAX_TIE_IDS` others are kept).
    pub fn from_parts(own: Option<u64>, others: Vec<u64>) -> EventIds {
        let mut others = others;
        others.truncate(MAX_TIE_IDS);
        EventIds { own, others: others.into_boxed_slice() }
    }

    /// Heap bytes held for the other changes' ids.
    pub fn weight(&self) -> usize {
        self.others.len() * std::mem::size_of::<u64>()
    }
}

impl Change {
    /// Total order used to pick the newest change of a key: version, then source position.
    pub fn order_key(&self) -> (&Version, &Position) {
        (&self.version, &self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_compare_as_numbers() {
        assert_eq!(compare_decimal("9", "10"), Ordering::Less);
        assert_eq!(compare_decimal("0010", "10"), Ordering::Equal);
        let a = "49590338271490256608559692538361571095921575989136588898";
        let b = "49590338271490256608559692540925702759324208523137515618";
        assert_eq!(compare_decimal(a, b), Ordering::Less);
    }

    #[test]
    fn versions_order_time_then_sequence() {
        let a = Version::new(1_000_000, Some("300000000012345678901234"));
        let b = Version::new(1_000_000, Some("400000000000000000000"));
        assert!(b < a, "a 21-digit sequence is smaller than a 24-digit one");
        assert!(Version::new(2, None) > Version::new(1, Some("9")));
        assert_eq!(Version::new(5, Some("0")), Version::new(5, None));
        assert_eq!(Version::new(5, None).padded().to_string(), "0".repeat(SEQUENCE_WIDTH));
        assert_eq!(Version::new(5, Some("007")).padded().to_string(), "0".repeat(SEQUENCE_WIDTH - 1) + "7");
        assert_eq!(Version::new(5, Some("7")).heap_bytes(), 0, "short sequences are held inline");
    }
}
