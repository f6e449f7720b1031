//! Reading DynamoDB-typed JSON straight into the packed form (`packed.rs`).
//!
//! Most images a batch takes in are only held until a later change of their key replaces
//! them. Building each as a tree, packing the tree and freeing it cost more than reading the
//! record; written straight from the text, an image costs one pass and one allocation. The
//! bytes are exactly those `PackedItem::pack` makes of the tree `typed_json` reads from the
//! same text, and the same text is refused with the same message (both property-tested).

use crate::json::{JsonResult, Reader, TypeTag};
use crate::packed::{self, write_bytes, write_len, write_number, PackedItem};
use crate::typed_json::{
    binary_into, duplicate_name, number, unknown_type, EXPECTED_ITEM, EXPECTED_VALUE, NO_TAG, NULL_NOT_TRUE,
    TWO_TAGS,
};

/// Buffers reused from record to record.
#[derive(Default)]
pub struct PackScratch {
    out: Vec<u8>,
    /// The pairs written so far of every open map.
    pairs: Vec<PairSpan>,
    /// A map's pairs in name order, when they arrived out of it.
    sorted: Vec<u8>,
    /// Decoded binary values.
    bytes: Vec<u8>,
    /// Attribute names the next item read must hold at its top level, one after another,
    /// each ending at its offset in `required_ends`; whether it holds them all is left in
    /// `holds_required`.
    required: Vec<u8>,
    required_ends: Vec<usize>,
    holds_required: bool,
}

/// Where one `name value` pair lies in `out`: `start..end`, its name's bytes ending at `name_end`.
#[derive(Clone, Copy)]
struct PairSpan {
    start: usize,
    name_len: usize,
    name_end: usize,
    end: usize,
}

impl PairSpan {
    fn name<'o>(&self, out: &'o [u8]) -> &'o [u8] {
        &out[self.name_end - self.name_len..self.name_end]
    }
}

/// A map of attribute names to typed values, packed; a repeated name is an error.
pub fn read_packed_item(r: &mut Reader<'_>, scratch: &mut PackScratch) -> JsonResult<PackedItem> {
    scratch.required_ends.clear();
    pack_into_scratch(r, scratch)?;
    Ok(PackedItem::from_written(&scratch.out))
}

/// `read_packed_item`, leaving the packed bytes in `into` (which it replaces) rather than in
/// an allocation of their own, and telling whether the item holds every attribute named in
/// `required` (checked while its names are at hand, rather than by searching it afterwards).
pub fn read_packed_bytes_holding<'n>(
    r: &mut Reader<'_>,
    scratch: &mut PackScratch,
    required: impl IntoIterator<Item = &'n str>,
    into: &mut Vec<u8>,
) -> JsonResult<bool> {
    scratch.required.clear();
    scratch.required_ends.clear();
    for name in required {
        scratch.required.extend_from_slice(name.as_bytes());
        scratch.required_ends.push(scratch.required.len());
    }
    pack_into_scratch(r, scratch)?;
    std::mem::swap(&mut scratch.out, into);
    Ok(scratch.holds_required)
}

fn pack_into_scratch(r: &mut Reader<'_>, scratch: &mut PackScratch) -> JsonResult<()> {
    scratch.out.clear();
    scratch.pairs.clear();
    scratch.holds_required = false;
    pack_item(r, scratch)
}

/// Room for a count not known yet: one byte, which holds any count below 128.
fn begin_count(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len() - 1
}

fn end_count(out: &mut Vec<u8>, at: usize, count: usize) {
    if count < 0x80 {
        out[at] = count as u8;
    } else {
        let mut len = Vec::with_capacity(4);
        write_len(&mut len, count as u128);
        out.splice(at..at + 1, len);
    }
}

fn pack_item(r: &mut Reader<'_>, s: &mut PackScratch) -> JsonResult<()> {
    if r.peek() != Some(b'{') {
        return Err(r.error(EXPECTED_ITEM));
    }
    let count_at = begin_count(&mut s.out);
    let first = s.pairs.len();
    r.object(|r, name| {
        let start = s.out.len();
        write_bytes(&mut s.out, name.as_bytes());
        let name_end = s.out.len();
        pack_value(r, s)?;
        // A nested map that was read whole has taken its spans off again: this pair's is next.
        s.pairs.push(PairSpan { start, name_len: name.len(), name_end, end: s.out.len() });
        Ok(())
    })?;
    // Only the outermost map's pairs start at 0 when it ends (a map nested in its first
    // attribute does too, but the outermost ends last and has the final word).
    if first == 0 {
        s.holds_required = holds_all(&s.required, &s.required_ends, &s.pairs, &s.out);
    }
    let pairs = &mut s.pairs[first..];
    let count = pairs.len();
    let in_order = pairs.windows(2).all(|w| w[0].name(&s.out) < w[1].name(&s.out));
    if !in_order {
        pairs.sort_unstable_by(|a, b| a.name(&s.out).cmp(b.name(&s.out)));
        if let Some(w) = pairs.windows(2).find(|w| w[0].name(&s.out) == w[1].name(&s.out)) {
            let name = String::from_utf8_lossy(w[0].name(&s.out)).into_owned();
            return Err(duplicate_name(r, &name));
        }
        s.sorted.clear();
        for pair in pairs.iter() {
            s.sorted.extend_from_slice(&s.out[pair.start..pair.end]);
        }
        s.out.truncate(count_at + 1);
        s.out.extend_from_slice(&s.sorted);
    }
    s.pairs.truncate(first);
    end_count(&mut s.out, count_at, count);
    Ok(())
}

/// Whether the names (`names`, cut at `ends`) are all among those of `pairs`.
fn holds_all(names: &[u8], ends: &[usize], pairs: &[PairSpan], out: &[u8]) -> bool {
    let mut start = 0;
    ends.iter().all(|&end| {
        let name = &names[start..end];
        start = end;
        pairs.iter().any(|p| p.name(out) == name)
    })
}

fn pack_value(r: &mut Reader<'_>, s: &mut PackScratch) -> JsonResult<()> {
    if r.peek() != Some(b'{') {
        return Err(r.error(EXPECTED_VALUE));
    }
    // The compact form DynamoDB writes is opened directly; what follows the value is read
    // as `object` would read it, so spaces are taken and a second tag is refused alike.
    if let Some(tag) = r.open_tagged()? {
        pack_tagged(r, s, tag)?;
        return r.close_tagged(TWO_TAGS);
    }
    let mut tagged = false;
    r.object(|r, tag| {
        if tagged {
            return Err(r.error(TWO_TAGS));
        }
        tagged = true;
        match TypeTag::from_name(&tag) {
            Some(tag) => pack_tagged(r, s, tag),
            None => Err(unknown_type(r, &tag)),
        }
    })?;
    if tagged {
        Ok(())
    } else {
        Err(r.error(NO_TAG))
    }
}

/// The value of a typed value's one field, whose name is `tag`.
fn pack_tagged(r: &mut Reader<'_>, s: &mut PackScratch, tag: TypeTag) -> JsonResult<()> {
    match tag {
        TypeTag::S => {
            let text = r.string()?;
            s.out.push(packed::S);
            write_bytes(&mut s.out, text.as_bytes());
        }
        TypeTag::N => {
            let n = number(r)?;
            s.out.push(packed::N);
            write_number(&mut s.out, &n);
        }
        TypeTag::B => {
            s.bytes.clear();
            binary_into(r, &mut s.bytes)?;
            s.out.push(packed::B);
            write_bytes(&mut s.out, &s.bytes);
        }
        TypeTag::Bool => {
            let b = r.bool()?;
            s.out.push(if b { packed::TRUE } else { packed::FALSE });
        }
        TypeTag::Null => {
            if !r.bool()? {
                return Err(r.error(NULL_NOT_TRUE));
            }
            s.out.push(packed::NULL);
        }
        TypeTag::M => {
            s.out.push(packed::M);
            pack_item(r, s)?;
        }
        TypeTag::L => pack_many(r, s, packed::L, pack_value)?,
        TypeTag::Ss => pack_many(r, s, packed::SS, |r, s| {
            let text = r.string()?;
            write_bytes(&mut s.out, text.as_bytes());
            Ok(())
        })?,
        TypeTag::Ns => pack_many(r, s, packed::NS, |r, s| {
            let n = number(r)?;
            write_number(&mut s.out, &n);
            Ok(())
        })?,
        TypeTag::Bs => pack_many(r, s, packed::BS, |r, s| {
            s.bytes.clear();
            binary_into(r, &mut s.bytes)?;
            write_bytes(&mut s.out, &s.bytes);
            Ok(())
        })?,
    }
    Ok(())
}

/// A tag, a count, then each element of a JSON array written by `pack`.
fn pack_many(
    r: &mut Reader<'_>,
    s: &mut PackScratch,
    tag: u8,
    mut pack: impl FnMut(&mut Reader<'_>, &mut PackScratch) -> JsonResult<()>,
) -> JsonResult<()> {
    s.out.push(tag);
    let count_at = begin_count(&mut s.out);
    let mut count = 0;
    r.array(|r| {
        count += 1;
        pack(r, s)
    })?;
    end_count(&mut s.out, count_at, count);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::typed_json::{read_item, read_whole, Scratch};
    use crate::value::Item;
    use proptest::prelude::*;

    fn packed(text: &str) -> JsonResult<PackedItem> {
        read_whole(text, &mut PackScratch::default(), read_packed_item)
    }

    fn via_tree(text: &str) -> JsonResult<PackedItem> {
        read_whole(text, &mut Scratch::default(), read_item).map(|i| PackedItem::pack(&i))
    }

    /// A typed-JSON map with its names in the order given (possibly repeated).
    fn map_text(entries: &[(String, String)]) -> String {
        let fields: Vec<String> =
            entries.iter().map(|(n, v)| format!("{}:{v}", serde_json::to_string(n).unwrap())).collect();
        format!("{{{}}}", fields.join(","))
    }

    fn value_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            ".{0,8}".prop_map(|s| format!(r#"{{"S":{}}}"#, serde_json::to_string(&s).unwrap())),
            prop_oneof![Just("0"), Just("-1.50"), Just("12345678901234567890123"), Just("1E-130"), Just("x")]
                .prop_map(|n| format!(r#"{{"N":"{n}"}}"#)),
            prop_oneof![Just("AAEC"), Just(""), Just("***")].prop_map(|b| format!(r#"{{"B":"{b}"}}"#)),
            any::<bool>().prop_map(|b| format!(r#"{{"BOOL":{b}}}"#)),
            prop_oneof![Just(r#"{"NULL":true}"#), Just(r#"{"NULL":false}"#)].prop_map(String::from),
            Just(r#"{"SS":["b","a"]}"#.to_string()),
            Just(r#"{"NS":["2","1.5"]}"#.to_string()),
            Just(r#"{"BS":["AQ==","AA=="]}"#.to_string()),
            prop_oneof![Just(r#"{}"#), Just(r#"{"S":"a","N":"1"}"#), Just(r#"{"Q":1}"#), Just("7")]
                .prop_map(String::from),
            // Other spellings of typed values: spaces, and a second tag after a space.
            prop_oneof![
                Just(r#"{ "S" : "a" }"#),
                Just(r#"{"S":"a" }"#),
                Just(r#"{"N":"1" , "S":"a"}"#),
                Just(r#"{"BOOL":true ,}"#),
                Just(r#"{"S":"a",}"#),
            ]
            .prop_map(String::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8)
                    .prop_map(|vs| format!(r#"{{"L":[{}]}}"#, vs.join(","))),
                prop::collection::vec(("[a-d]{0,2}", inner.clone()), 0..8)
                    .prop_map(|entries| format!(r#"{{"M":{}}}"#, map_text(&entries))),
                prop::collection::vec(("[a-d]{0,2}", inner), 0..8)
                    .prop_map(|entries| format!(r#"{{"M":{} }}"#, map_text(&entries))),
            ]
        })
    }

    /// Each level of a nested value is read once, however it is spelled: a space before each
    /// closing brace once made every level read its value twice, doubling with each level.
    #[test]
    fn deep_nesting_with_spaces_is_read_once_per_level() {
        let mut value = r#"{"S":"x"}"#.to_string();
        for _ in 0..60 {
            value = format!(r#"{{"M":{{"a":{value}}} }}"#);
        }
        let text = format!(r#"{{"a":{value}}}"#);
        assert_eq!(packed(&text), via_tree(&text));
        assert!(packed(&text).is_ok());
    }

    proptest! {
        /// Straight packing and tree-then-pack agree on every text: the same bytes, or the
        /// same error at the same place.
        #[test]
        fn packs_exactly_what_the_tree_packs(
            entries in prop::collection::vec(("[ab\"\\\\é😀]{0,3}", value_text()), 0..12)
        ) {
            let text = map_text(&entries);
            prop_assert_eq!(packed(&text), via_tree(&text), "{}", text);
        }
    }

    #[test]
    fn counts_past_one_byte_and_names_out_of_order() {
        let names: Vec<String> = (0..300).rev().map(|i| format!("a{i:03}")).collect();
        let list = format!(r#"{{"L":[{}]}}"#, vec![r#"{"N":"1"}"#; 130].join(","));
        // A map of 200 names out of order inside the outer map, itself out of order.
        let inner: Vec<(String, String)> =
            (0..200).rev().map(|i| (format!("m{i}"), r#"{"S":"x"}"#.to_string())).collect();
        let mut entries: Vec<(String, String)> = names.iter().map(|n| (n.clone(), list.clone())).collect();
        entries.insert(150, ("a1505".to_string(), format!(r#"{{"M":{}}}"#, map_text(&inner))));
        let text = map_text(&entries);
        let direct = packed(&text).unwrap();
        assert_eq!(Ok(direct.clone()), via_tree(&text));
        let item: Item = direct.unpack().unwrap();
        assert_eq!(item.len(), 301);
        assert_eq!(item.keys().next().map(|k| k.as_str()), Some("a000"));
    }

    #[test]
    fn names_are_found_without_unpacking() {
        let item = packed(r#"{"b":{"M":{"z":{"N":"1"}}},"d":{"L":[{"SS":["x"]},{"NS":["1"]},{"BS":["AA=="]}]},"a":{"B":"AA=="},"c":{"NULL":true}}"#).unwrap();
        for (name, want) in
            [("a", true), ("b", true), ("c", true), ("d", true), ("z", false), ("", false), ("bb", false)]
        {
            assert_eq!(item.contains_name(name), Ok(want), "{name}");
        }
    }
}
