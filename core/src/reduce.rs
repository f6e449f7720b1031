//! Reduce: of all changes to one item in a batch, keep only the newest.

use std::collections::BTreeMap;

// foldhash: several times faster than SipHash on short keys, and still seeded per process,
// so keys from the stream cannot be chosen to collide.
use foldhash::{HashMap, HashMapExt};

use crate::change::Change;
use crate::held::{HeldChange, Packed};

/// Groups changes by table and keeps, per key, the change with the greatest
/// (version, position). Arrival order does not matter; duplicates collapse: an equal version
/// is the same record, and a change whose `eventID` was already seen at its time is a
/// re-delivery (see `EventIds`).
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
        let keyed = match self.newest.get_mut(table.as_str()) {
            Some(t) => t,
            None => self.newest.entry(table.into_string()).or_default(),
        };
        match keyed.get_mut(key_text.as_str()) {
            Some(slot) => {
                let before = slot.weight(&key_text);
                match newer(&held, slot) {
                    Verdict::Replaces => {
                        let mut held = held;
                        if held.version.micros == slot.version.micros {
                            held.ids.absorb(&slot.ids);
                        }
                        *slot = held;
                    }
                    Verdict::SameTime => slot.ids.absorb(&held.ids),
                    Verdict::Loses => {}
                }
                self.weight = self.weight - before + slot.weight(&key_text);
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
        let mut tables = self.finish_unordered();
        tables.values_mut().for_each(|held| sort_by_key_text(held));
        tables
    }

    /// `finish` without the sort, for a caller that sorts each table's changes on a thread
    /// of its own.
    pub fn finish_unordered(self) -> BTreeMap<String, Vec<(String, HeldChange)>> {
        self.newest
            .into_iter()
            .map(|(table, keyed)| (table, keyed.into_iter().map(|(k, h)| (k.into_string(), h)).collect()))
            .collect()
    }
}

enum Verdict {
    /// The change is newer than the one held.
    Replaces,
    /// Older, but of the same time: its `eventID` is remembered.
    SameTime,
    /// Older, or a re-delivery.
    Loses,
}

/// How `change` compares with `held`, the newest of its key so far.
fn newer(change: &HeldChange, held: &HeldChange) -> Verdict {
    if change.version.micros != held.version.micros {
        return if change.version.micros > held.version.micros { Verdict::Replaces } else { Verdict::Loses };
    }
    if change.ids.own.is_some_and(|id| held.ids.contains(id)) {
        return Verdict::Loses;
    }
    if change.order_key() > held.order_key() {
        Verdict::Replaces
    } else {
        Verdict::SameTime
    }
}

/// Changes in key order, as `finish` returns them.
pub fn sort_by_key_text(held: &mut [(String, HeldChange)]) {
    held.sort_unstable_by(|a, b| a.0.cmp(&b.0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{EventIds, EventKind, Position, Version};
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
            version: Version::new(micros, Some(&seq.to_string())),
            position: Position::new("s", seq.to_string()),
            ids: EventIds::of(Some(&format!("e{seq}"))),
        }
    }

    fn redelivered(c: &Change, seq: u64) -> Change {
        let mut dup = c.clone();
        dup.version = Version::new(c.version.micros, Some(&seq.to_string()));
        dup.position = Position::new("s", seq.to_string());
        dup
    }

    #[test]
    fn a_redelivered_change_never_wins() {
        let a = change("A", "x", 5, 10);
        let mut b = change("A", "x", 5, 20);
        b.new_image = None;
        b.event = EventKind::Remove;
        // A, then B of the same millisecond, then A again later in the shard: B stays.
        let out = reduce(vec![a.clone(), b.clone(), redelivered(&a, 30)]);
        assert_eq!(out["A"][0].event, EventKind::Remove);
        let (e20, e10) = (EventIds::of(Some("e20")), EventIds::of(Some("e10")));
        let expected = format!(",{:016x},{:016x},", e20.own.unwrap(), e10.own.unwrap());
        assert_eq!(out["A"][0].ids.stored(), Some(expected));
        // A re-delivery of the newest is no change either.
        let out = reduce(vec![a.clone(), redelivered(&a, 40)]);
        assert_eq!(&*out["A"][0].position.sequence, "10");
        // A newer time forgets the older time's ids.
        let out = reduce(vec![a, change("A", "x", 6, 5)]);
        assert_eq!(out["A"][0].ids, EventIds::of(Some("e5")));
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
    fn ties_break_by_position() {
        let out = reduce(vec![change("A", "x", 5, 10), change("A", "x", 5, 9)]);
        assert_eq!(&*out["A"][0].position.sequence, "10");
    }
}
