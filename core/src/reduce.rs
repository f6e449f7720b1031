//! Reduce: of all changes to one item in a batch, keep only the newest.

use std::collections::BTreeMap;

// foldhash: several times faster than SipHash on short keys, and still seeded per process,
// so keys from the stream cannot be chosen to collide.
use foldhash::{HashMap, HashMapExt};

use crate::change::Change;
use crate::held::{HeldChange, Packed};

/// Groups changes by table and keeps, per key, the change with the greatest
/// (version, position), with the changes of the same time as it (see `Reducer::finish`).
/// Arrival order does not matter; duplicates collapse: an equal version is the same record,
/// and a change whose `eventID` was already seen at its time is a re-delivery (see
/// `EventIds`).
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
    /// Per key, the changes of the newest's time (each with an `eventID` of its own) placed
    /// earlier than it. That later one may be a re-delivery of a change an
    /// earlier batch applied, which the warehouse then drops: the newest of these must win
    /// instead, so they are staged too (and the warehouse keeps one change per key).
    superseded: Superseded,
    weight: usize,
}

impl Default for Reducer {
    fn default() -> Reducer {
        Reducer { newest: HashMap::new(), superseded: Superseded::default(), weight: 0 }
    }
}

impl Reducer {
    /// Offers a change; it is kept if it is the newest of its key so far.
    pub fn add(&mut self, change: Packed) {
        let Packed { table, key_text, held } = change;
        let keyed = match self.newest.get_mut(table.as_str()) {
            Some(t) => t,
            None => self.newest.entry(table.to_string()).or_default(),
        };
        match keyed.get_mut(key_text.as_str()) {
            Some(slot) => {
                let before = slot.weight(&key_text);
                match newer(&held, slot) {
                    Verdict::Replaces => {
                        let mut held = held;
                        let same_time = held.version.micros == slot.version.micros;
                        if same_time {
                            held.ids.absorb(&slot.ids);
                        }
                        let replaced = std::mem::replace(slot, held);
                        if same_time {
                            self.weight += self.superseded.keep(&table, &key_text, &slot.version, replaced);
                        } else {
                            // A newer time: whatever the key's earlier time held is older.
                            self.weight -= self.superseded.forget(&table, &key_text);
                        }
                    }
                    Verdict::SameTime => {
                        slot.ids.absorb(&held.ids);
                        // Placed earlier than the newest, but the newest may be a re-delivery.
                        self.weight += self.superseded.keep(&table, &key_text, &slot.version, held);
                    }
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

    /// Whether no change is held.
    pub fn is_empty(&self) -> bool {
        self.newest.values().all(HashMap::is_empty)
    }

    /// Approximate memory of the changes held.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// The newest change per key with its key text, grouped by table, each table's changes
    /// in key order; still packed, so the caller unpacks one at a time. A key may come more
    /// than once: changes of the same time as its newest come too (see `superseded`), and
    /// the warehouse keeps one change per key.
    pub fn finish(self) -> BTreeMap<String, Vec<(String, HeldChange)>> {
        let mut tables = self.finish_unordered();
        tables.values_mut().for_each(|held| sort_by_key_text(held));
        tables
    }

    /// `finish` without the sort, for a caller that sorts each table's changes on a thread
    /// of its own.
    /// A key may come more than once: its superseded changes of the same time (see
    /// `Reducer::superseded`) come with it.
    pub fn finish_unordered(mut self) -> BTreeMap<String, Vec<(String, HeldChange)>> {
        self.newest
            .into_iter()
            .map(|(table, keyed)| {
                let superseded = self.superseded.by_table.remove(&table).unwrap_or_default();
                let mut held: Vec<(String, HeldChange)> =
                    keyed.into_iter().map(|(k, h)| (k.into_string(), h)).collect();
                for (key, changes) in superseded {
                    held.extend(changes.into_iter().map(|h| (key.to_string(), h)));
                }
                (table, held)
            })
            .collect()
    }
}

/// Per table and key, changes of the same time as the key's newest (see `Reducer::superseded`).
#[derive(Default)]
struct Superseded {
    by_table: HashMap<String, HashMap<Box<str>, Vec<HeldChange>>>,
}

impl Superseded {
    /// Keeps `change`, of the same time as its key's `newest` but placed earlier, for the
    /// warehouse to choose from should the newest be a re-delivery; returns the weight
    /// added. Only a change with an `eventID` of its own can be told from a re-delivery; one
    /// of the very same version as the newest (another shard, the same place) could not be
    /// told apart from it.
    fn keep(
        &mut self,
        table: &str,
        key_text: &str,
        newest: &crate::change::Version,
        change: HeldChange,
    ) -> usize {
        if change.ids.own.is_none() || change.version == *newest {
            return 0;
        }
        let weight = change.weight(key_text);
        let keyed = match self.by_table.get_mut(table) {
            Some(t) => t,
            None => self.by_table.entry(table.to_string()).or_default(),
        };
        keyed.entry(key_text.into()).or_default().push(change);
        weight
    }

    /// Drops the key's kept changes (a newer time came); returns the weight they had.
    fn forget(&mut self, table: &str, key_text: &str) -> usize {
        match self.by_table.get_mut(table).and_then(|t| t.remove(key_text)) {
            Some(kept) => kept.iter().map(|h| h.weight(key_text)).sum(),
            None => 0,
        }
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
        // A, then B of the same millisecond, then A again later in the shard: B stays (with
        // A kept beside it, superseded, for the warehouse to drop).
        let out = reduce(vec![a.clone(), b.clone(), redelivered(&a, 30)]);
        let newest = out["A"].iter().find(|c| &*c.position.sequence == "20").expect("B");
        assert_eq!(newest.event, EventKind::Remove);
        let (e20, e10) = (EventIds::of(Some("e20")), EventIds::of(Some("e10")));
        let expected = format!(",{:016x},{:016x},", e20.own.unwrap(), e10.own.unwrap());
        assert_eq!(newest.ids.stored(), Some(expected));
        assert_eq!(out["A"].len(), 2);
        // A re-delivery of the newest is no change either.
        let out = reduce(vec![a.clone(), redelivered(&a, 40)]);
        assert_eq!(&*out["A"][0].position.sequence, "10");
        // A newer time forgets the older time's ids.
        let out = reduce(vec![a, change("A", "x", 6, 5)]);
        assert_eq!(out["A"][0].ids, EventIds::of(Some("e5")));
    }

    #[test]
    fn same_time_changes_a_later_placed_one_replaced_are_kept_too() {
        // B, then a change of the same millisecond placed later: a re-delivery of A, which
        // an earlier batch applied. The warehouse drops that one, and B must then win.
        let a = change("A", "x", 5, 3);
        let b = change("A", "x", 5, 8);
        for arrival in [vec![b.clone(), redelivered(&a, 10)], vec![redelivered(&a, 10), b.clone()]] {
            let out = reduce(arrival);
            let mut places: Vec<&str> = out["A"].iter().map(|c| &*c.position.sequence).collect();
            places.sort_unstable();
            assert_eq!(places, ["10", "8"], "whatever the arrival order");
        }
        // The very same version from elsewhere (another file at the same offset) is not kept.
        let mut twin = redelivered(&b, 8);
        twin.position = Position::new("other", "8");
        twin.ids = EventIds::of(Some("another"));
        assert_eq!(reduce(vec![b.clone(), twin])["A"].len(), 1);
        // A newer time makes them all older.
        let out = reduce(vec![b.clone(), redelivered(&a, 10), change("A", "x", 6, 11)]);
        assert_eq!(out["A"].len(), 1);
        // DynamoDB Streams records (no `eventID` kept: ordered by sequence number, never
        // re-delivered) keep only the newest.
        let (mut c, mut d) = (change("A", "y", 5, 1), change("A", "y", 5, 2));
        (c.ids, d.ids) = (EventIds::default(), EventIds::default());
        assert_eq!(reduce(vec![c, d])["A"].len(), 1);
        // The superseded are weighed, and forgotten with their weight.
        let mut r = Reducer::default();
        r.add(HeldChange::pack(b));
        let one = r.weight();
        r.add(HeldChange::pack(redelivered(&a, 10)));
        assert!(r.weight() > one + one / 2, "{} for two changes of {one}", r.weight());
        let mut newer = change("A", "x", 6, 11);
        newer.new_image = None;
        r.add(HeldChange::pack(newer.clone()));
        let mut alone = Reducer::default();
        alone.add(HeldChange::pack(newer));
        assert_eq!(r.weight(), alone.weight());
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
