//! A held change as bytes on disk. When a backlog's held changes outgrow their memory bound,
//! they are written out by key partition and read back one partition at a time, so that each
//! key is applied once however many times the backlog changed it (see the planner's spill).
//!
//! The bytes are only ever read back by the process that wrote them; anything that does not
//! parse is reported as `Corrupt` (a bug or a damaged disk), never trusted.

use std::sync::Arc;

use crate::change::{EventIds, EventKind, Position, Version};
use crate::held::HeldChange;
use crate::packed::Corrupt;

/// A change read back, with the table and key it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Spilled {
    /// The DynamoDB table.
    pub table: String,
    /// Canonical text of the change's keys.
    pub key_text: String,
    /// The change, as the reducer held it.
    pub held: HeldChange,
}

/// Appends `held` of `table` and `key_text` to `out` as one frame: its length (4 bytes), then
/// the fields. A frame never exceeds 4 GB: a held change is at most a few record sizes.
pub fn write(table: &str, key_text: &str, held: &HeldChange, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    text(out, table);
    text(out, key_text);
    out.push(event_code(held.event));
    out.extend_from_slice(&held.version.micros.to_le_bytes());
    text(out, held.version.digits());
    text(out, &held.position.shard);
    text(out, &held.position.sequence);
    match held.ids.own {
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.to_le_bytes());
        }
        None => out.push(0),
    }
    let others = held.ids.others();
    out.extend_from_slice(&(others.len() as u32).to_le_bytes());
    for id in others {
        out.extend_from_slice(&id.to_le_bytes());
    }
    let (keys_end, new_end, packed) = held.parts();
    out.extend_from_slice(&(keys_end as u32).to_le_bytes());
    out.extend_from_slice(&(new_end as u32).to_le_bytes());
    bytes(out, packed);
    let length = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
}

/// The length of the frame starting `head` (its first four bytes).
pub fn frame_length(head: [u8; 4]) -> usize {
    u32::from_le_bytes(head) as usize
}

/// Reads frames back; consecutive changes of one shard share its name.
#[derive(Default)]
pub struct Reader {
    shard: Option<Arc<str>>,
}

impl Reader {
    /// The change of one frame's body (the bytes after its length).
    pub fn read(&mut self, frame: &[u8]) -> Result<Spilled, Corrupt> {
        let mut at = Cursor { bytes: frame, at: 0 };
        let table = at.text()?.to_string();
        let key_text = at.text()?.to_string();
        let event = event_of(at.take(1)?[0]).ok_or(Corrupt(at.at))?;
        let micros = i64::from_le_bytes(at.array()?);
        let version = Version::new(micros, Some(at.text()?));
        let shard = at.text()?;
        let shard = match &self.shard {
            Some(same) if **same == *shard => same.clone(),
            _ => {
                let new: Arc<str> = Arc::from(shard);
                self.shard = Some(new.clone());
                new
            }
        };
        let position = Position { shard, sequence: at.text()?.into() };
        let own = match at.take(1)?[0] {
            0 => None,
            1 => Some(u64::from_le_bytes(at.array()?)),
            _ => return Err(Corrupt(at.at)),
        };
        let count = u32::from_le_bytes(at.array()?) as usize;
        let mut others = Vec::with_capacity(count.min(frame.len() / 8));
        for _ in 0..count {
            others.push(u64::from_le_bytes(at.array()?));
        }
        let keys_end = u32::from_le_bytes(at.array()?) as usize;
        let new_end = u32::from_le_bytes(at.array()?) as usize;
        let length = u32::from_le_bytes(at.array()?) as usize;
        let packed = at.take(length)?;
        if keys_end > new_end || new_end > packed.len() || at.at != frame.len() {
            return Err(Corrupt(at.at));
        }
        let held = HeldChange::new(
            &packed[..keys_end],
            Some(&packed[keys_end..new_end]),
            Some(&packed[new_end..]),
            event,
            version,
            position,
            EventIds::from_parts(own, others),
        );
        Ok(Spilled { table, key_text, held })
    }
}

/// Puts changes read back in the order a reducer is to take them: oldest first, as a stream
/// delivers them. The newest change of a key holds the ids of the changes of its time that it
/// superseded, so a superseded change added after it would be taken for a re-delivery and
/// dropped (see `reduce::Reducer`); in this order each run's changes fold as they first did.
pub fn in_stream_order(changes: &mut [Spilled]) {
    changes.sort_unstable_by(|a, b| a.held.order_key().cmp(&b.held.order_key()));
}

fn text(out: &mut Vec<u8>, text: &str) {
    bytes(out, text.as_bytes());
}

fn bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn event_code(event: EventKind) -> u8 {
    match event {
        EventKind::Insert => 0,
        EventKind::Modify => 1,
        EventKind::Remove => 2,
        EventKind::Expire => 3,
        EventKind::Load => 4,
    }
}

fn event_of(code: u8) -> Option<EventKind> {
    Some(match code {
        0 => EventKind::Insert,
        1 => EventKind::Modify,
        2 => EventKind::Remove,
        3 => EventKind::Expire,
        4 => EventKind::Load,
        _ => return None,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.bytes.len()).ok_or(Corrupt(self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn text(&mut self) -> Result<&'a str, Corrupt> {
        let length = u32::from_le_bytes(self.array()?) as usize;
        let at = self.at;
        std::str::from_utf8(self.take(length)?).map_err(|_| Corrupt(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;
    use crate::value::{key_text, AttrValue, Item};

    fn change(event: EventKind, new_image: bool, ids: EventIds) -> Change {
        let keys: Item = [("k", AttrValue::S("k1".into()))].into();
        let image: Item = [
            ("k", AttrValue::S("k1".into())),
            ("n", AttrValue::N(crate::number::Number::parse("1.5").unwrap())),
        ]
        .into();
        Change {
            table: "Orders".into(),
            key_text: key_text(&keys),
            keys,
            new_image: new_image.then(|| image.clone()),
            old_image: Some(image),
            event,
            version: Version::new(
                1_700_000_000_123_456,
                Some("000049590338271490256608559692538361571095921575989136588898"),
            ),
            position: Position::new(
                "shardId-000000000001",
                "49590338271490256608559692538361571095921575989136588898",
            ),
            ids,
        }
    }

    #[test]
    fn changes_read_back_as_written() {
        let mut ids = EventIds::of(Some("e1"));
        ids.absorb(&EventIds::of(Some("e2")));
        let mut out = Vec::new();
        let cases = [
            change(EventKind::Modify, true, ids),
            change(EventKind::Remove, false, EventIds::of(None)),
            change(EventKind::Load, true, EventIds::of(Some("e3"))),
        ];
        for c in &cases {
            let packed = HeldChange::pack(c.clone());
            write(&packed.table, &packed.key_text, &packed.held, &mut out);
        }
        let mut reader = Reader::default();
        let mut at = 0;
        for c in &cases {
            let length = frame_length(out[at..at + 4].try_into().unwrap());
            let back = reader.read(&out[at + 4..at + 4 + length]).unwrap();
            at += 4 + length;
            assert_eq!((back.table.as_str(), back.key_text.as_str()), ("Orders", c.key_text.as_str()));
            assert_eq!(back.held.clone().unpack(&back.table, back.key_text).unwrap(), *c);
        }
        assert_eq!(at, out.len());
    }

    /// A re-delivery of a change an earlier batch applied, in one run; a change of the same
    /// time between them. Read back in any order, the later change must stay beside the
    /// re-delivery (which the warehouse drops), as reducing the originals keeps it.
    #[test]
    fn superseded_changes_survive_being_read_back() {
        let at = |seq: &str, id: &str| {
            let mut c = change(EventKind::Modify, true, EventIds::of(Some(id)));
            c.version = Version::new(5, Some(seq));
            c.position = Position::new("s", seq);
            c
        };
        let (b, a_again) = (at("8", "b"), at("10", "a"));
        let direct = crate::reduce::reduce(vec![b.clone(), a_again.clone()]);
        let mut reducer = crate::reduce::Reducer::default();
        reducer.add(HeldChange::pack(b));
        reducer.add(HeldChange::pack(a_again));
        let mut frames = Vec::new();
        for (table, held) in reducer.finish() {
            for (key, h) in held.into_iter().rev() {
                write(&table, &key, &h, &mut frames);
            }
        }
        let mut back = Vec::new();
        let (mut at, mut reader) = (0, Reader::default());
        while at < frames.len() {
            let length = frame_length(frames[at..at + 4].try_into().unwrap());
            back.push(reader.read(&frames[at + 4..at + 4 + length]).unwrap());
            at += 4 + length;
        }
        in_stream_order(&mut back);
        let mut again = crate::reduce::Reducer::default();
        for s in back {
            again.add(crate::held::Packed {
                table: s.table.as_str().into(),
                key_text: s.key_text,
                held: s.held,
            });
        }
        let again: Vec<Change> = again.finish()["Orders"]
            .iter()
            .map(|(k, h)| h.clone().unpack("Orders", k.clone()).unwrap())
            .collect();
        let sorted = |mut v: Vec<Change>| {
            v.sort_by(|x, y| x.order_key().cmp(&y.order_key()));
            v
        };
        assert_eq!(again.len(), 2, "the change between them is kept");
        assert_eq!(sorted(again), sorted(direct["Orders"].clone()));
    }

    #[test]
    fn damaged_frames_are_reported() {
        let packed = HeldChange::pack(change(EventKind::Insert, true, EventIds::of(Some("e"))));
        let mut out = Vec::new();
        write(&packed.table, &packed.key_text, &packed.held, &mut out);
        let body = &out[4..];
        for cut in [0, 3, 10, body.len() - 1] {
            assert!(Reader::default().read(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(Reader::default().read(&longer).is_err(), "trailing bytes");
    }
}
