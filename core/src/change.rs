//! The change model: what one source record means, independent of its envelope.

use std::borrow::Cow;
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
    pub shard: Arc<str>,
    pub sequence: crate::value::Text,
}

impl Position {
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub micros: i64,
    /// Zero-padded to `SEQUENCE_WIDTH` digits so text order is numeric order. Borrowed from
    /// a constant when zero, so records without a sequence (export lines) allocate nothing.
    pub sequence: Cow<'static, str>,
}

const ZERO_SEQUENCE: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Version {
    pub fn new(micros: i64, sequence: Option<&str>) -> Version {
        let digits = sequence.map(|s| s.trim_start_matches('0')).unwrap_or("");
        if digits.is_empty() {
            return Version { micros, sequence: Cow::Borrowed(ZERO_SEQUENCE) };
        }
        let mut padded = String::with_capacity(SEQUENCE_WIDTH);
        for _ in digits.len()..SEQUENCE_WIDTH {
            padded.push('0');
        }
        padded.push_str(digits);
        Version { micros, sequence: Cow::Owned(padded) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Modify,
    Remove,
}

impl Op {
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
    Insert,
    Modify,
    Remove,
    /// A REMOVE made by DynamoDB's time-to-live process.
    Expire,
    /// A line of a full export or scan.
    Load,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Insert => "INSERT",
            EventKind::Modify => "MODIFY",
            EventKind::Remove => "REMOVE",
            EventKind::Expire => "EXPIRE",
            EventKind::Load => "LOAD",
        }
    }

    pub fn is_delete(self) -> bool {
        matches!(self, EventKind::Remove | EventKind::Expire)
    }
}

/// One decoded change to one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub table: String,
    pub keys: Item,
    /// Canonical text of `keys` (see `value::key_text`): the item's identity.
    pub key_text: String,
    /// The item after the change; `None` for deletes.
    pub new_image: Option<Item>,
    /// The item before a delete, when the stream carries it (kept for soft deletes).
    pub old_image: Option<Item>,
    pub event: EventKind,
    pub version: Version,
    pub position: Position,
    pub ids: EventIds,
}

/// Longest `eventID` kept; real ones are 32 hex digits with dashes. A longer one is not an
/// identity a duplicate can be recognised by, so it is not kept.
pub const MAX_EVENT_ID: usize = 128;
/// Most `eventID`s remembered for one item's newest time.
pub const MAX_TIE_IDS: usize = 16;

/// The stream's `eventID`s by which a re-delivered duplicate is recognised: the change's own,
/// and those of the item's other changes with the same creation time already seen. Kinesis
/// delivers duplicates later in the shard, so by sequence alone a duplicate of an earlier
/// change would overwrite a different change of the same millisecond; a change whose own
/// `eventID` was seen at its time is never newer than anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventIds {
    pub own: Option<Box<str>>,
    /// Other changes' ids at the same time, at most `MAX_TIE_IDS`.
    pub others: Vec<Box<str>>,
}

impl EventIds {
    /// The ids of a change with `id` (kept only when it is a plausible `eventID`).
    pub fn of(id: Option<&str>) -> EventIds {
        let own = id.filter(|i| !i.is_empty() && i.len() <= MAX_EVENT_ID && !i.contains(',')).map(Box::from);
        EventIds { own, others: Vec::new() }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.own.as_deref() == Some(id) || self.others.iter().any(|o| &**o == id)
    }

    /// Remembers `other`'s ids as seen at the same time as this change.
    pub fn absorb(&mut self, other: &EventIds) {
        for id in other.own.iter().chain(&other.others) {
            if self.others.len() < MAX_TIE_IDS && !self.contains(id) {
                self.others.push(id.clone());
            }
        }
    }

    /// As stored in `_ddb_event_ids`: `,own,other,…,` (so `,id,` finds one, and the own id
    /// is the first), or `None` when the change has no id of its own.
    pub fn stored(&self) -> Option<String> {
        let own = self.own.as_ref()?;
        let mut out = format!(",{own},");
        for id in &self.others {
            out.push_str(id);
            out.push(',');
        }
        Some(out)
    }

    pub fn weight(&self) -> usize {
        self.own.as_ref().map_or(0, |o| o.len())
            + self.others.iter().map(|o| o.len() + std::mem::size_of::<Box<str>>()).sum::<usize>()
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
        assert_eq!(ZERO_SEQUENCE.len(), SEQUENCE_WIDTH);
        assert_eq!(Version::new(5, Some("7")).sequence.len(), SEQUENCE_WIDTH);
    }
}
