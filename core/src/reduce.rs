//! Reduce: of all changes to one item in a batch, keep only the newest.

use std::collections::BTreeMap;

// foldhash: several times faster than SipHash on short keys, and still seeded per process,
// so keys from the stream cannot be chosen to collide.
use foldhash::{HashMap, HashMapExt};

use crate::change::Change;

/// Groups changes by table and keeps, per key, the change with the greatest
/// (version, position). Arrival order does not matter; duplicates collapse.
pub fn reduce(changes: impl IntoIterator<Item = Change>) -> BTreeMap<String, Vec<Change>> {
    let mut reducer = Reducer::default();
    for change in changes {
        reducer.add(change, 0);
    }
    reducer.finish()
}

/// The incremental form of `reduce`: changes arrive in any number of steps and only the
/// newest per (table, key) is held, so a batch can span many reads while its memory stays
/// bounded by the number of distinct keys. Each held change carries a caller-given weight
/// (an estimate of its size) so the caller can bound memory too.
pub struct Reducer {
    newest: HashMap<String, HashMap<String, (Change, usize)>>,
    weight: usize,
}

impl Default for Reducer {
    fn default() -> Reducer {
        Reducer { newest: HashMap::new(), weight: 0 }
    }
}

impl Reducer {
    /// Offers a change; it is kept if it is the newest of its key so far.
    pub fn add(&mut self, change: Change, weight: usize) {
        let table = match self.newest.get_mut(&change.table) {
            Some(t) => t,
            None => self.newest.entry(change.table.clone()).or_default(),
        };
        match table.get_mut(&change.key_text) {
            Some(slot) => {
                if change.order_key() > slot.0.order_key() {
                    self.weight = self.weight - slot.1 + weight;
                    *slot = (change, weight);
                }
            }
            None => {
                self.weight += weight;
                table.insert(change.key_text.clone(), (change, weight));
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

    /// Sum of the weights of the changes held.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// The newest change per key, grouped by table, each table's changes in key order.
    pub fn finish(self) -> BTreeMap<String, Vec<Change>> {
        self.newest
            .into_iter()
            .map(|(table, keyed)| {
                let mut changes: Vec<Change> = keyed.into_values().map(|(c, _)| c).collect();
                changes.sort_by(|a, b| a.key_text.cmp(&b.key_text));
                (table, changes)
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
        r.add(change("A", "x", 3, 1), 10);
        r.add(change("A", "y", 1, 2), 5);
        assert_eq!((r.len(), r.weight()), (2, 15));
        r.add(change("A", "x", 2, 3), 100);
        assert_eq!((r.len(), r.weight()), (2, 15), "an older change is dropped");
        r.add(change("A", "x", 4, 4), 7);
        assert_eq!((r.len(), r.weight()), (2, 12), "a newer change replaces and re-weighs");
        let out = r.finish();
        assert_eq!(out["A"][0].version.micros, 4);
        assert_eq!(out["A"].len(), 2);
    }

    #[test]
    fn ties_break_by_position() {
        let out = reduce(vec![change("A", "x", 5, 10), change("A", "x", 5, 9)]);
        assert_eq!(&*out["A"][0].position.sequence, "10");
    }
}
