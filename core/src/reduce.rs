//! Reduce: of all changes to one item in a batch, keep only the newest.

use std::collections::BTreeMap;

// foldhash: several times faster than SipHash on short keys, and still seeded per process,
// so keys from the stream cannot be chosen to collide.
use foldhash::{HashMap, HashMapExt};

use crate::change::{Change, EventKind, Position, Version};
use crate::packed::{Corrupt, PackedItem};

/// Groups changes by table and keeps, per key, the change with the greatest
/// (version, position). Arrival order does not matter; duplicates collapse.
pub fn reduce(changes: impl IntoIterator<Item = Change>) -> BTreeMap<String, Vec<Change>> {
    let mut reducer = Reducer::default();
    for change in changes {
        reducer.add(HeldChange::pack(change));
    }
    reducer
        .finish()
        .into_iter()
        .map(|(table, held)| {
            let changes = held.into_iter().map(|(key, h)| h.unpack_or_panic(&table, key)).collect();
            (table, changes)
        })
        .collect()
}

/// A change as a batch holds it while later reads fold in: its images packed (a third of
/// their tree form), its table and key text kept once by the reducer's maps.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldChange {
    keys: PackedItem,
    new_image: Option<PackedItem>,
    old_image: Option<PackedItem>,
    event: EventKind,
    version: Version,
    position: Position,
}

/// A packed change with the table and key it belongs to, ready for `Reducer::add`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    pub table: String,
    pub key_text: String,
    pub held: HeldChange,
}

impl HeldChange {
    /// Packs `change` (on whichever thread decoded it).
    pub fn pack(change: Change) -> Packed {
        let image = |i: &Option<crate::value::Item>| i.as_ref().map(PackedItem::pack);
        let held = HeldChange {
            keys: PackedItem::pack(&change.keys),
            new_image: image(&change.new_image),
            old_image: image(&change.old_image),
            event: change.event,
            version: change.version,
            position: change.position,
        };
        Packed { table: change.table, key_text: change.key_text, held }
    }

    /// The change again, as it was packed.
    pub fn unpack(self, table: &str, key_text: String) -> Result<Change, Corrupt> {
        let image = |i: Option<PackedItem>| i.map(|p| p.unpack()).transpose();
        Ok(Change {
            table: table.to_string(),
            keys: self.keys.unpack()?,
            key_text,
            new_image: image(self.new_image)?,
            old_image: image(self.old_image)?,
            event: self.event,
            version: self.version,
            position: self.position,
        })
    }

    /// `unpack` of a change this process packed: failing would be a bug in packing (its
    /// round trip is property-tested), not a property of the input, so it stops the run
    /// before anything of the batch is written.
    pub fn unpack_or_panic(self, table: &str, key_text: String) -> Change {
        self.unpack(table, key_text).unwrap_or_else(|e| panic!("{e}: a bug in packing held changes"))
    }

    /// The key's attribute values.
    pub fn keys(&self) -> Result<crate::value::Item, Corrupt> {
        self.keys.unpack()
    }

    /// Approximate memory held for this change, with its key text and map slot.
    fn weight(&self, key_text: &str) -> usize {
        let image = |i: &Option<PackedItem>| i.as_ref().map_or(0, PackedItem::heap_bytes);
        std::mem::size_of::<(Box<str>, HeldChange)>()
            + key_text.len()
            + self.keys.heap_bytes()
            + image(&self.new_image)
            + image(&self.old_image)
            + self.version.sequence.len()
            + self.position.sequence.len()
    }

    fn order_key(&self) -> (&Version, &Position) {
        (&self.version, &self.position)
    }
}

/// The incremental form of `reduce`: changes arrive in any number of steps and only the
/// newest per (table, key) is held, so a batch can span many reads while its memory stays
/// bounded by the number of distinct keys. `weight` estimates that memory so the caller can
/// bound it too.
pub struct Reducer {
    newest: HashMap<String, HashMap<Box<str>, HeldChange>>,
    weight: usize,
}

impl Default for Reducer {
    fn default() -> Reducer {
        Reducer { newest: HashMap::new(), weight: 0 }
    }
}

impl Reducer {
    /// Offers a change; it is kept if it is the newest of its key so far.
    pub fn add(&mut self, change: Packed) {
        let Packed { table, key_text, held } = change;
        let keyed = match self.newest.get_mut(&table) {
            Some(t) => t,
            None => self.newest.entry(table).or_default(),
        };
        match keyed.get_mut(key_text.as_str()) {
            Some(slot) => {
                if held.order_key() > slot.order_key() {
                    self.weight = self.weight - slot.weight(&key_text) + held.weight(&key_text);
                    *slot = held;
                }
            }
            None => {
                self.weight += held.weight(&key_text);
                keyed.insert(key_text.into_boxed_str(), held);
            }
        }
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.newest.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.newest.values().all(HashMap::is_empty)
    }

    /// Approximate memory of the changes held.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// The newest change per key with its key text, grouped by table, each table's changes
    /// in key order; still packed, so the caller unpacks one at a time.
    pub fn finish(self) -> BTreeMap<String, Vec<(String, HeldChange)>> {
        self.newest
            .into_iter()
            .map(|(table, keyed)| {
                let mut held: Vec<(String, HeldChange)> =
                    keyed.into_iter().map(|(k, h)| (k.into_string(), h)).collect();
                held.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                (table, held)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{EventKind, Position, Version};
    use crate::value::{key_text, AttrValue, Item};

    fn change(table: &str, key: &str, micros: i64, seq: u64) -> Change {
        let mut keys = Item::new();
        keys.insert("k".into(), AttrValue::S(key.into()));
        Change {
            table: table.into(),
            key_text: key_text(&keys),
            new_image: Some(keys.clone()),
            keys,
            old_image: None,
            event: EventKind::Modify,
            version: Version::new(micros, None),
            position: Position::new("s", seq.to_string()),
        }
    }

    #[test]
    fn newest_wins_regardless_of_arrival() {
        let out = reduce(vec![
            change("A", "x", 3, 1),
            change("A", "x", 5, 2),
            change("A", "x", 4, 3),
            change("B", "x", 1, 4),
            change("A", "y", 1, 5),
        ]);
        assert_eq!(out["A"].len(), 2);
        assert_eq!(out["A"][0].version.micros, 5);
        assert_eq!(out["B"].len(), 1);
    }

    #[test]
    fn steps_reduce_like_one_batch_and_weigh_only_winners() {
        let mut r = Reducer::default();
        let mut x3 = change("A", "x", 3, 1);
        x3.new_image = Some(x3.keys.clone());
        r.add(HeldChange::pack(x3));
        let after_x = r.weight();
        r.add(HeldChange::pack(change("A", "y", 1, 2)));
        let after_y = r.weight();
        assert_eq!(r.len(), 2);
        assert!(after_y > after_x && after_x > 0);
        let mut older = change("A", "x", 2, 3);
        older.new_image = Some([("k", AttrValue::S("a much longer value than before".into()))].into());
        r.add(HeldChange::pack(older));
        assert_eq!((r.len(), r.weight()), (2, after_y), "an older change is dropped");
        let mut newer = change("A", "x", 4, 4);
        newer.new_image = None;
        r.add(HeldChange::pack(newer));
        assert!(r.weight() < after_y, "a newer change replaces and re-weighs");
        let out = r.finish();
        assert_eq!(out["A"].len(), 2);
        let (key, held) = out["A"][0].clone();
        let x = held.unpack("A", key).unwrap();
        assert_eq!((x.version.micros, x.new_image), (4, None));
    }

    #[test]
    fn held_changes_unpack_to_what_was_packed() {
        let mut c = change("T", "k1", 7, 3);
        c.old_image = Some([("k", AttrValue::S("k1".into())), ("n", AttrValue::Null)].into());
        c.event = EventKind::Remove;
        c.new_image = None;
        c.version = Version::new(7, Some("12345"));
        let Packed { table, key_text, held } = HeldChange::pack(c.clone());
        assert_eq!((table.as_str(), key_text.as_str()), ("T", c.key_text.as_str()));
        assert_eq!(held.keys().unwrap(), c.keys);
        assert_eq!(held.unpack(&table, key_text).unwrap(), c);
    }

    #[test]
    fn ties_break_by_position() {
        let out = reduce(vec![change("A", "x", 5, 10), change("A", "x", 5, 9)]);
        assert_eq!(&*out["A"][0].position.sequence, "10");
    }
}
