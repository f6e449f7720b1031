//! A change as a batch holds it until the batch is planned.

use crate::change::{Change, EventIds, EventKind, Position, Version};
use crate::packed::{self, Corrupt, PackedItem};
use crate::value::Item;

/// A change as a batch holds it while later reads fold in: its keys and images packed (a
/// third of their tree form) end to end in one allocation, its table and key text kept once
/// by the reducer's maps.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldChange {
    /// The packed keys, then the packed new image, then the packed old image. A packed item
    /// is never empty, so an absent image is an empty range.
    packed: Box<[u8]>,
    keys_end: usize,
    new_end: usize,
    pub(crate) event: EventKind,
    pub(crate) version: Version,
    pub(crate) position: Position,
    pub(crate) ids: EventIds,
}

/// A packed change with the table and key it belongs to, ready for `Reducer::add`.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed {
    /// Inline up to 24 bytes, as table names mostly are: no allocation per record.
    pub table: crate::value::Text,
    /// Canonical text of the change's keys (see `value::key_text`).
    pub key_text: String,
    /// The change itself, packed.
    pub held: HeldChange,
}

impl HeldChange {
    /// Where the change was read.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// When the change was made (`ApproximateCreationDateTime`), µs since the epoch.
    pub fn created_micros(&self) -> i64 {
        self.version.micros
    }

    /// A change from its packed keys and images (each as `packed` writes items).
    pub(crate) fn new(
        keys: &[u8],
        new_image: Option<&[u8]>,
        old_image: Option<&[u8]>,
        event: EventKind,
        version: Version,
        position: Position,
        ids: EventIds,
    ) -> HeldChange {
        let (new_image, old_image) = (new_image.unwrap_or_default(), old_image.unwrap_or_default());
        let mut packed = Vec::with_capacity(keys.len() + new_image.len() + old_image.len());
        packed.extend_from_slice(keys);
        packed.extend_from_slice(new_image);
        packed.extend_from_slice(old_image);
        HeldChange {
            packed: packed.into_boxed_slice(),
            keys_end: keys.len(),
            new_end: keys.len() + new_image.len(),
            event,
            version,
            position,
            ids,
        }
    }

    /// Packs `change` (on whichever thread decoded it).
    pub fn pack(change: Change) -> Packed {
        let image = |i: &Option<crate::value::Item>| i.as_ref().map(PackedItem::pack);
        let (new_image, old_image) = (image(&change.new_image), image(&change.old_image));
        let held = HeldChange::new(
            PackedItem::pack(&change.keys).as_bytes(),
            new_image.as_ref().map(PackedItem::as_bytes),
            old_image.as_ref().map(PackedItem::as_bytes),
            change.event,
            change.version,
            change.position,
            change.ids,
        );
        Packed { table: change.table.into(), key_text: change.key_text, held }
    }

    /// The packed bytes with where the keys and the new image end (for `spilled`).
    pub(crate) fn parts(&self) -> (usize, usize, &[u8]) {
        (self.keys_end, self.new_end, &self.packed)
    }

    fn part(&self, range: std::ops::Range<usize>) -> Option<&[u8]> {
        Some(&self.packed[range]).filter(|bytes| !bytes.is_empty())
    }

    /// The change again, as it was packed.
    pub fn unpack(self, table: &str, key_text: String) -> Result<Change, Corrupt> {
        let (keys, new_image, old_image) = self.items()?;
        Ok(Change {
            table: table.to_string(),
            keys,
            key_text,
            new_image,
            old_image,
            event: self.event,
            version: self.version,
            position: self.position,
            ids: self.ids,
        })
    }

    /// The keys, new image and old image, unpacked.
    fn items(&self) -> Result<(Item, Option<Item>, Option<Item>), Corrupt> {
        let keys = self.keys()?;
        let new_image = self.part(self.keys_end..self.new_end).map(packed::unpack).transpose()?;
        let old_image = self.part(self.new_end..self.packed.len()).map(packed::unpack).transpose()?;
        Ok((keys, new_image, old_image))
    }

    /// `unpack` of a change this process packed: failing would be a bug in packing (its
    /// round trip is property-tested), not a property of the input, so it stops the run
    /// before anything of the batch is written.
    pub fn unpack_or_panic(self, table: &str, key_text: String) -> Change {
        self.unpack(table, key_text).unwrap_or_else(|e| panic!("{e}: a bug in packing held changes"))
    }

    /// `unpack_or_panic` of a change that stays held: its position and event ids are copied
    /// (a run planned on a copy of the schema may have to be planned again).
    pub fn to_change_or_panic(&self, table: &str, key_text: &str) -> Change {
        let (keys, new_image, old_image) =
            self.items().unwrap_or_else(|e| panic!("{e}: a bug in packing held changes"));
        Change {
            table: table.to_string(),
            keys,
            key_text: key_text.to_string(),
            new_image,
            old_image,
            event: self.event,
            version: self.version.clone(),
            position: self.position.clone(),
            ids: self.ids.clone(),
        }
    }

    /// The key's attribute values.
    pub fn keys(&self) -> Result<crate::value::Item, Corrupt> {
        packed::unpack(&self.packed[..self.keys_end])
    }

    /// Approximate memory held for this change, with its key text and map slot.
    pub(crate) fn weight(&self, key_text: &str) -> usize {
        std::mem::size_of::<(Box<str>, HeldChange)>()
            + key_text.len()
            + self.packed.len()
            + self.version.heap_bytes()
            + self.position.sequence.len()
            + self.ids.weight()
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
            ids: EventIds::of(Some("e1")),
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
