//! Items packed into one byte string while a batch holds them.
//!
//! A decoded item is a tree: a vector per map and list, 56 bytes per attribute before its
//! value. A batch holds the newest change of every key it has seen, and the tree form made
//! that about 1.6 KB per change on W1, which capped how many keys a batch can fold. Packed,
//! the same item takes a third of that in one allocation; it is unpacked once, when the batch
//! is planned.
//!
//! Layout (canonical: an item packs to one byte string, since items are sorted by name):
//! an item is a count and `name value` pairs; a name or string is a length and UTF-8 bytes;
//! a value is a tag byte and its payload. Lengths and counts are LEB128. Only bytes packed
//! here are unpacked; anything else is reported as `Corrupt` rather than trusted.

use crate::number::Number;
use crate::value::Item;
use crate::value::{AttrValue, Text};

pub(crate) const S: u8 = 0;
pub(crate) const N: u8 = 1;
pub(crate) const B: u8 = 2;
pub(crate) const TRUE: u8 = 3;
pub(crate) const FALSE: u8 = 4;
pub(crate) const NULL: u8 = 5;
pub(crate) const M: u8 = 6;
pub(crate) const L: u8 = 7;
pub(crate) const SS: u8 = 8;
pub(crate) const NS: u8 = 9;
pub(crate) const BS: u8 = 10;
const NEGATIVE: u8 = 0x80;

/// A packed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedItem(Box<[u8]>);

/// Bytes that are not a packed item: a bug in packing, never a property of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a held change could not be unpacked at byte {0}")]
pub struct Corrupt(pub usize);

thread_local! {
    /// Packing writes here first, so each packed item is one allocation of its exact size.
    static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl PackedItem {
    /// `item`, packed in one allocation of its exact size.
    pub fn pack(item: &Item) -> PackedItem {
        BUFFER.with_borrow_mut(|buf| {
            buf.clear();
            write_item(buf, item);
            PackedItem(buf.as_slice().into())
        })
    }

    /// The item again, as it was packed.
    pub fn unpack(&self) -> Result<Item, Corrupt> {
        unpack(&self.0)
    }

    /// The packed bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }

    /// Bytes written by this module's writers (`pack_json` packs records with them).
    pub(crate) fn from_written(bytes: &[u8]) -> PackedItem {
        PackedItem(bytes.into())
    }

    /// Whether the item has an attribute `name`, found without unpacking anything.
    pub fn contains_name(&self, name: &str) -> Result<bool, Corrupt> {
        contains_name(&self.0, name)
    }
}

/// The item packed in `bytes`.
pub(crate) fn unpack(bytes: &[u8]) -> Result<Item, Corrupt> {
    let mut r = Cursor { bytes, at: 0 };
    let item = r.item()?;
    if r.at != bytes.len() {
        return Err(Corrupt(r.at));
    }
    Ok(item)
}

/// Whether the item packed in `bytes` has an attribute `name`, found without unpacking it.
pub(crate) fn contains_name(bytes: &[u8], name: &str) -> Result<bool, Corrupt> {
    let mut r = Cursor { bytes, at: 0 };
    for _ in 0..r.count()? {
        let found = r.slice()?;
        match found.cmp(name.as_bytes()) {
            std::cmp::Ordering::Less => r.skip_value()?,
            std::cmp::Ordering::Equal => return Ok(true),
            // Names are packed in order: every later one is greater still.
            std::cmp::Ordering::Greater => return Ok(false),
        }
    }
    Ok(false)
}

/// The value of attribute `name` of the item packed in `bytes`, found without unpacking the
/// rest of it.
pub(crate) fn get(bytes: &[u8], name: &str) -> Result<Option<AttrValue>, Corrupt> {
    let mut r = Cursor { bytes, at: 0 };
    for _ in 0..r.count()? {
        let found = r.slice()?;
        match found.cmp(name.as_bytes()) {
            std::cmp::Ordering::Less => r.skip_value()?,
            std::cmp::Ordering::Equal => return r.value().map(Some),
            // Names are packed in order: every later one is greater still.
            std::cmp::Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

pub(crate) fn write_len(out: &mut Vec<u8>, mut n: u128) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_len(out, b.len() as u128);
    out.extend_from_slice(b);
}

pub(crate) fn write_item(out: &mut Vec<u8>, item: &Item) {
    write_len(out, item.len() as u128);
    for (name, value) in item {
        write_bytes(out, name.as_bytes());
        write_value(out, value);
    }
}

pub(crate) fn write_number(out: &mut Vec<u8>, n: &Number) {
    let (negative, len, exponent, mantissa) = n.to_parts();
    out.push(len | if negative { NEGATIVE } else { 0 });
    // Zigzag, so small negative exponents stay one byte.
    write_len(out, u128::from(((exponent << 1) ^ (exponent >> 31)) as u32));
    write_len(out, mantissa);
}

fn write_value(out: &mut Vec<u8>, value: &AttrValue) {
    match value {
        AttrValue::S(s) => {
            out.push(S);
            write_bytes(out, s.as_bytes());
        }
        AttrValue::N(n) => {
            out.push(N);
            write_number(out, n);
        }
        AttrValue::B(b) => {
            out.push(B);
            write_bytes(out, b);
        }
        AttrValue::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
        AttrValue::Null => out.push(NULL),
        AttrValue::M(m) => {
            out.push(M);
            write_item(out, m);
        }
        AttrValue::L(l) => write_many(out, L, l, write_value),
        AttrValue::Ss(set) => write_many(out, SS, set, |out, s| write_bytes(out, s.as_bytes())),
        AttrValue::Ns(set) => write_many(out, NS, set, write_number),
        AttrValue::Bs(set) => write_many(out, BS, set, |out, b| write_bytes(out, b)),
    }
}

/// A tag, a count, then each element written by `write`.
fn write_many<T>(out: &mut Vec<u8>, tag: u8, elements: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    out.push(tag);
    write_len(out, elements.len() as u128);
    for e in elements {
        write(out, e);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, Corrupt> {
        let b = *self.bytes.get(self.at).ok_or(Corrupt(self.at))?;
        self.at += 1;
        Ok(b)
    }

    fn len(&mut self) -> Result<u128, Corrupt> {
        let mut n: u128 = 0;
        for shift in (0..128).step_by(7) {
            let b = self.byte()?;
            n |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(Corrupt(self.at))
    }

    /// A count of elements, each at least one byte: never more than the bytes left.
    fn count(&mut self) -> Result<usize, Corrupt> {
        let n = self.len()?;
        let left = self.bytes.len() - self.at;
        usize::try_from(n).ok().filter(|&n| n <= left).ok_or(Corrupt(self.at))
    }

    fn slice(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.count()?;
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn text(&mut self) -> Result<Text, Corrupt> {
        let at = self.at;
        let s = self.slice()?;
        std::str::from_utf8(s).map(Text::from).map_err(|_| Corrupt(at))
    }

    fn number(&mut self) -> Result<Number, Corrupt> {
        let at = self.at;
        let head = self.byte()?;
        let zigzag = u32::try_from(self.len()?).map_err(|_| Corrupt(at))?;
        let exponent = ((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32);
        let mantissa = self.len()?;
        Number::from_parts(head & NEGATIVE != 0, head & !NEGATIVE, exponent, mantissa).ok_or(Corrupt(at))
    }

    /// Passes over a number: its head byte and two lengths, without rebuilding it (a number
    /// is only checked where it is read).
    fn skip_number(&mut self) -> Result<(), Corrupt> {
        self.byte()?;
        self.len()?;
        self.len()?;
        Ok(())
    }

    /// A count, then that many elements read by `read`.
    fn many<T>(&mut self, mut read: impl FnMut(&mut Self) -> Result<T, Corrupt>) -> Result<Vec<T>, Corrupt> {
        let n = self.count()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(read(self)?);
        }
        Ok(out)
    }

    fn item(&mut self) -> Result<Item, Corrupt> {
        let at = self.at;
        let pairs = self.many(|c| Ok((c.text()?, c.value()?)))?;
        Item::from_unique(pairs).map_err(|_| Corrupt(at))
    }

    /// Passes over one value, building nothing.
    fn skip_value(&mut self) -> Result<(), Corrupt> {
        let at = self.at;
        match self.byte()? {
            S | B => {
                self.slice()?;
            }
            N => self.skip_number()?,
            TRUE | FALSE | NULL => {}
            M => {
                for _ in 0..self.count()? {
                    self.slice()?;
                    self.skip_value()?;
                }
            }
            L => self.skip_many(Cursor::skip_value)?,
            SS | BS => self.skip_many(|c| c.slice().map(drop))?,
            NS => self.skip_many(Cursor::skip_number)?,
            _ => return Err(Corrupt(at)),
        }
        Ok(())
    }

    /// A count, then that many elements passed over by `skip`.
    fn skip_many(&mut self, mut skip: impl FnMut(&mut Self) -> Result<(), Corrupt>) -> Result<(), Corrupt> {
        for _ in 0..self.count()? {
            skip(self)?;
        }
        Ok(())
    }

    fn value(&mut self) -> Result<AttrValue, Corrupt> {
        let at = self.at;
        Ok(match self.byte()? {
            S => AttrValue::S(self.text()?),
            N => AttrValue::N(self.number()?),
            B => AttrValue::B(self.slice()?.to_vec()),
            TRUE => AttrValue::Bool(true),
            FALSE => AttrValue::Bool(false),
            NULL => AttrValue::Null,
            M => AttrValue::M(self.item()?),
            L => AttrValue::L(self.many(Cursor::value)?),
            SS => AttrValue::Ss(self.many(Cursor::text)?),
            NS => AttrValue::Ns(self.many(Cursor::number)?),
            BS => AttrValue::Bs(self.many(|c| c.slice().map(<[u8]>::to_vec))?),
            _ => return Err(Corrupt(at)),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn number() -> impl Strategy<Value = Number> {
        prop_oneof![
            Just("0".to_string()),
            (any::<i64>()).prop_map(|i| i.to_string()),
            ("-?[1-9][0-9]{0,37}", -130i32..=87).prop_map(|(d, e)| format!("{d}E{e}")),
            Just("9.9999999999999999999999999999999999999E+125".to_string()),
            Just("-1E-130".to_string()),
        ]
        .prop_map(|t| Number::parse(&t).unwrap_or_else(|e| panic!("{t}: {e}")))
    }

    /// Any attribute value, nested up to four levels.
    pub(crate) fn value() -> impl Strategy<Value = AttrValue> {
        let leaf = prop_oneof![
            ".{0,12}".prop_map(|s| AttrValue::S(s.into())),
            number().prop_map(AttrValue::N),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(AttrValue::B),
            any::<bool>().prop_map(AttrValue::Bool),
            Just(AttrValue::Null),
            prop::collection::vec(".{0,6}".prop_map(Text::from), 1..4).prop_map(AttrValue::Ss),
            prop::collection::vec(number(), 1..4).prop_map(AttrValue::Ns),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4), 1..3).prop_map(AttrValue::Bs),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(AttrValue::L),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|m| AttrValue::M(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn items_unpack_to_what_was_packed(
            entries in prop::collection::btree_map("[a-zA-Z_é😀]{0,10}", value(), 0..14)
        ) {
            let item: Item = entries.into_iter().collect();
            let packed = PackedItem::pack(&item);
            prop_assert_eq!(packed.unpack().unwrap(), item.clone());
            prop_assert_eq!(PackedItem::pack(&item), packed, "packing is canonical");
        }
    }

    #[test]
    fn a_packed_item_is_smaller_than_its_tree() {
        let item = Item::from_typed_json(
            r#"{"amount":{"N":"59767.12"},"checksum":{"B":"k3+qVUT4b0Q="},"customerEmail":{"S":"c273572@example.com"},"express":{"BOOL":true},"lines":{"L":[{"M":{"qty":{"N":"1"},"sku":{"S":"SKU-2681"}}}]},"orderId":{"S":"ord-00081843"},"quantity":{"N":"24"},"revision":{"N":"438"},"shipTo":{"M":{"city":{"S":"Oslo"},"geo":{"L":[{"N":"38.7223"},{"N":"-9.1393"}]},"zip":{"N":"40448"}}},"status":{"S":"SHIPPED"},"tags":{"SS":["t9","u0"]}}"#,
        )
        .unwrap();
        let packed = PackedItem::pack(&item);
        assert_eq!(packed.unpack().unwrap(), item);
        assert!(
            packed.heap_bytes() * 3 < item.heap_bytes(),
            "{} vs {}",
            packed.heap_bytes(),
            item.heap_bytes()
        );
    }

    proptest! {
        /// An attribute's value is found in the packed item without unpacking it, and an
        /// attribute it lacks is not.
        #[test]
        fn attributes_are_found_in_a_packed_item(
            entries in prop::collection::btree_map("[a-e]{0,2}", value(), 0..8),
            name in "[a-e]{0,2}",
        ) {
            let item: Item = entries.into_iter().collect();
            let packed = PackedItem::pack(&item);
            let found = get(packed.as_bytes(), &name).unwrap();
            prop_assert_eq!(found.as_ref(), item.get(&name));
        }
    }

    #[test]
    fn damaged_bytes_are_reported_not_trusted() {
        let item: Item =
            [("a", AttrValue::S("xyz".into())), ("b", AttrValue::L(vec![AttrValue::Null]))].into();
        let good = PackedItem::pack(&item).0;
        for cut in 0..good.len() {
            assert!(PackedItem(good[..cut].into()).unpack().is_err(), "cut at {cut}");
        }
        let mut bad = good.to_vec();
        bad[3] = 0xff;
        assert!(PackedItem(bad.into()).unpack().is_err());
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(PackedItem(long.into()).unpack(), Err(Corrupt(good.len())));
        // A count larger than the bytes left is refused before anything is allocated.
        assert!(PackedItem(vec![0xff, 0xff, 0xff, 0x7f].into()).unpack().is_err());
    }
}
