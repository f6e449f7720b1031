//! Reduce: of all changes to one item in a batch, keep only the newest.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use crate::change::Change;

/// Groups changes by table and keeps, per key, the change with the greatest
/// (version, position). Arrival order does not matter; duplicates collapse.
pub fn reduce(changes: impl IntoIterator<Item = Change>) -> BTreeMap<String, Vec<Change>> {
    let mut newest: HashMap<(String, String), Change> = HashMap::new();
    for change in changes {
        match newest.entry((change.table.clone(), change.key_text.clone())) {
            Entry::Vacant(slot) => {
                slot.insert(change);
            }
            Entry::Occupied(mut slot) => {
                if change.order_key() > slot.get().order_key() {
                    slot.insert(change);
                }
            }
        }
    }
    let mut by_table: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for ((table, _), change) in newest {
        by_table.entry(table).or_default().push(change);
    }
    for changes in by_table.values_mut() {
        changes.sort_by(|a, b| a.key_text.cmp(&b.key_text));
    }
    by_table
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
    fn ties_break_by_position() {
        let out = reduce(vec![change("A", "x", 5, 10), change("A", "x", 5, 9)]);
        assert_eq!(&*out["A"][0].position.sequence, "10");
    }
}
