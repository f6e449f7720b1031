//! A change as a batch holds it until the batch is planned.

use crate::change::{Change, EventKind, Position, Version};
use crate::packed::{Corrupt, PackedItem};

/// A change as a batch holds it while later reads fold in: its images packed (a third of
/// their tree form), its table and key text kept once by the reducer's maps.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldChange {
    pub(crate) keys: PackedItem,
    pub(crate) new_image: Option<PackedItem>,
    pub(crate) old_image: Option<PackedItem>,
    pub(crate) event: EventKind,
    pub(crate) version: Version,
    pub(crate) position: Position,
}

/// A packed change with the table and key it belongs to, ready for `Reducer::add`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Inline up to 24 bytes, as table names mostly are: no allocation per record.
    pub table: crate::value::Text,
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
        Packed { table: change.table.into(), key_text: change.key_text, held }
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
    pub(crate) fn weight(&self, key_text: &str) -> usize {
        let image = |i: &Option<PackedItem>| i.as_ref().map_or(0, PackedItem::heap_bytes);
        std::mem::size_of::<(Box<str>, HeldChange)>()
            + key_text.len()
            + self.keys.heap_bytes()
            + image(&self.new_image)
            + image(&self.old_image)
            + self.version.sequence.len()
            + self.position.sequence.len()
    }

    pub(crate) fn order_key(&self) -> (&Version, &Position) {
        (&self.version, &self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{key_text, AttrValue, Item};

    #[test]
    fn held_changes_unpack_to_what_was_packed() {
        let keys: Item = [("k", AttrValue::S("k1".into()))].into();
        let mut c = Change {
            table: "T".into(),
            key_text: key_text(&keys),
            new_image: None,
            keys,
            old_image: None,
            event: EventKind::Modify,
            version: Version::new(7, None),
            position: Position::new("s", "3"),
        };
        c.old_image = Some([("k", AttrValue::S("k1".into())), ("n", AttrValue::Null)].into());
        c.event = EventKind::Remove;
        c.new_image = None;
        c.version = Version::new(7, Some("12345"));
        let Packed { table, key_text, held } = HeldChange::pack(c.clone());
        assert_eq!((table.as_str(), key_text.as_str()), ("T", c.key_text.as_str()));
        assert_eq!(held.keys().unwrap(), c.keys);
        assert_eq!(held.unpack(&table, key_text).unwrap(), c);
    }
}
