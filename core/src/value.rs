//! DynamoDB attribute values, read from DynamoDB-typed JSON (`{"S":"x"}`, `{"N":"1"}`, …).

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::number::Number;

pub use crate::item::{text_heap_bytes, Item};

/// Attribute names and string values: most are short, and short ones are stored inline, so
/// decoding an item allocates per map and list rather than per string.
pub type Text = compact_str::CompactString;

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    S(Text),
    N(Number),
    B(Vec<u8>),
    Bool(bool),
    Null,
    M(Item),
    L(Vec<AttrValue>),
    Ss(Vec<Text>),
    Ns(Vec<Number>),
    Bs(Vec<Vec<u8>>),
}

impl AttrValue {
    /// DynamoDB's name for the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::S(_) => "S",
            AttrValue::N(_) => "N",
            AttrValue::B(_) => "B",
            AttrValue::Bool(_) => "BOOL",
            AttrValue::Null => "NULL",
            AttrValue::M(_) => "M",
            AttrValue::L(_) => "L",
            AttrValue::Ss(_) => "SS",
            AttrValue::Ns(_) => "NS",
            AttrValue::Bs(_) => "BS",
        }
    }

    /// Approximate heap memory held by the value (not counting the value itself).
    pub fn heap_bytes(&self) -> usize {
        let strings = |v: &Vec<Text>| {
            v.capacity() * std::mem::size_of::<Text>() + v.iter().map(text_heap_bytes).sum::<usize>()
        };
        match self {
            AttrValue::S(s) => text_heap_bytes(s),
            AttrValue::B(b) => b.capacity(),
            AttrValue::N(_) | AttrValue::Bool(_) | AttrValue::Null => 0,
            AttrValue::M(m) => m.heap_bytes(),
            AttrValue::L(l) => {
                l.capacity() * std::mem::size_of::<AttrValue>()
                    + l.iter().map(AttrValue::heap_bytes).sum::<usize>()
            }
            AttrValue::Ss(set) => strings(set),
            AttrValue::Ns(set) => set.capacity() * std::mem::size_of::<Number>(),
            AttrValue::Bs(set) => {
                set.capacity() * std::mem::size_of::<Vec<u8>>()
                    + set.iter().map(|b| b.capacity()).sum::<usize>()
            }
        }
    }

    /// Plain JSON (not DynamoDB-typed): maps → objects, lists and sets → arrays, numbers →
    /// exact JSON numbers, binary → base64 strings. Sets are sorted so equal sets print equal.
    pub fn to_plain_json(&self) -> String {
        let mut out = String::new();
        self.write_plain_json(&mut out);
        out
    }

    pub fn write_plain_json(&self, out: &mut String) {
        match self {
            AttrValue::S(s) => write_json_string(out, s),
            AttrValue::N(n) => n.write_canonical(out),
            AttrValue::B(b) => write_json_string(out, &base64_encode(b)),
            AttrValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            AttrValue::Null => out.push_str("null"),
            AttrValue::M(m) => write_plain_object(out, m),
            AttrValue::L(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_plain_json(out);
                }
                out.push(']');
            }
            AttrValue::Ss(set) => {
                let mut sorted: Vec<&Text> = set.iter().collect();
                sorted.sort();
                write_array(out, sorted.into_iter().map(|s| s.as_str()), true);
            }
            AttrValue::Ns(set) => {
                let mut sorted: Vec<String> = set.iter().map(|n| n.to_string()).collect();
                sorted.sort();
                write_array(out, sorted.iter().map(|s| s.as_str()), false);
            }
            AttrValue::Bs(set) => {
                let mut sorted: Vec<String> = set.iter().map(|b| base64_encode(b)).collect();
                sorted.sort();
                write_array(out, sorted.iter().map(|s| s.as_str()), true);
            }
        }
    }

    /// DynamoDB-typed JSON with canonical numbers (`{"S":"x"}`, `{"M":{…}}`); key text and
    /// generated change records use it.
    pub fn write_typed_json(&self, out: &mut String) {
        out.push_str("{\"");
        out.push_str(self.type_name());
        out.push_str("\":");
        match self {
            AttrValue::S(s) => write_json_string(out, s),
            AttrValue::N(n) => {
                // Canonical numbers hold only digits, '.', '-', 'E' and '+': nothing to escape.
                out.push('"');
                n.write_canonical(out);
                out.push('"');
            }
            AttrValue::B(b) => write_json_string(out, &base64_encode(b)),
            AttrValue::Bool(_) => self.write_plain_json(out),
            AttrValue::Null => out.push_str("true"),
            AttrValue::M(m) => write_typed_object(out, m),
            AttrValue::L(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write_typed_json(out);
                }
                out.push(']');
            }
            AttrValue::Ss(_) | AttrValue::Bs(_) => self.write_plain_json(out),
            AttrValue::Ns(set) => {
                let mut sorted: Vec<String> = set.iter().map(|n| n.to_string()).collect();
                sorted.sort();
                write_array(out, sorted.iter().map(|s| s.as_str()), true);
            }
        }
        out.push('}');
    }
}

/// DynamoDB-typed JSON object of an item: `{"name":{"S":"x"},…}`.
pub fn write_typed_object(out: &mut String, m: &Item) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        v.write_typed_json(out);
    }
    out.push('}');
}

/// Plain JSON object of an item (document mode's `item` column).
pub fn item_to_plain_json(item: &Item) -> String {
    let mut out = String::new();
    write_plain_object(&mut out, item);
    out
}

/// Canonical text of a key: typed JSON, attributes sorted by name. Equal keys give equal text.
pub fn key_text(keys: &Item) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(&mut out, name);
        out.push(':');
        value.write_typed_json(&mut out);
    }
    out.push('}');
    out
}

fn write_plain_object(out: &mut String, m: &Item) {
    out.push('{');
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        v.write_plain_json(out);
    }
    out.push('}');
}

fn write_array<'a>(out: &mut String, items: impl Iterator<Item = &'a str>, quoted: bool) {
    out.push('[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if quoted {
            write_json_string(out, s);
        } else {
            out.push_str(s);
        }
    }
    out.push(']');
}

/// JSON string literal with the escapes JSON requires.
pub fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push_str(esc);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

pub fn base64_encode(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Lower-case hex, the text form Redshift's `FROM_HEX` reads.
pub fn hex_encode(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() * 2);
    for byte in b {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}

fn base64_decode<E: de::Error>(s: &str) -> Result<Vec<u8>, E> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| E::custom(format_args!("invalid base64 in binary value: {e}")))
}

fn number<E: de::Error>(s: &str) -> Result<Number, E> {
    Number::parse(s).map_err(E::custom)
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AttrValueVisitor)
    }
}

struct AttrValueVisitor;

impl<'de> Visitor<'de> for AttrValueVisitor {
    type Value = AttrValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a DynamoDB attribute value such as {\"S\": \"text\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttrValue, A::Error> {
        let Some(tag) = map.next_key::<Tag>()? else {
            return Err(de::Error::custom("empty attribute value {}"));
        };
        let value = match tag {
            Tag::S => AttrValue::S(map.next_value()?),
            Tag::N => AttrValue::N(map.next_value::<NumberText>()?.0),
            Tag::B => AttrValue::B(map.next_value::<Base64Bytes>()?.0),
            Tag::Bool => AttrValue::Bool(map.next_value()?),
            Tag::Null => {
                if !map.next_value::<bool>()? {
                    return Err(de::Error::custom("NULL must be true"));
                }
                AttrValue::Null
            }
            Tag::M => AttrValue::M(map.next_value::<ItemOf>()?.0),
            Tag::L => AttrValue::L(map.next_value()?),
            Tag::Ss => AttrValue::Ss(map.next_value()?),
            Tag::Ns => AttrValue::Ns(map.next_value::<Vec<NumberText>>()?.into_iter().map(|n| n.0).collect()),
            Tag::Bs => {
                AttrValue::Bs(map.next_value::<Vec<Base64Bytes>>()?.into_iter().map(|b| b.0).collect())
            }
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("attribute value has more than one type tag"));
        }
        Ok(value)
    }
}

/// The type tag of an attribute value, read without allocating.
enum Tag {
    S,
    N,
    B,
    Bool,
    Null,
    M,
    L,
    Ss,
    Ns,
    Bs,
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagVisitor;
        impl Visitor<'_> for TagVisitor {
            type Value = Tag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a DynamoDB type tag (S, N, B, BOOL, NULL, M, L, SS, NS, BS)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                Ok(match v {
                    "S" => Tag::S,
                    "N" => Tag::N,
                    "B" => Tag::B,
                    "BOOL" => Tag::Bool,
                    "NULL" => Tag::Null,
                    "M" => Tag::M,
                    "L" => Tag::L,
                    "SS" => Tag::Ss,
                    "NS" => Tag::Ns,
                    "BS" => Tag::Bs,
                    other => {
                        return Err(E::custom(format_args!(
                            "unknown attribute type `{}`",
                            other.chars().take(32).collect::<String>()
                        )))
                    }
                })
            }
        }
        d.deserialize_identifier(TagVisitor)
    }
}

/// A number from its JSON string, parsed exactly.
struct NumberText(Number);

impl<'de> Deserialize<'de> for NumberText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumberText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number as a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NumberText, E> {
                number(v).map(NumberText)
            }
        }
        d.deserialize_str(V)
    }
}

/// Binary data from its base64 JSON string.
struct Base64Bytes(Vec<u8>);

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Base64Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("base64 binary data as a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Base64Bytes, E> {
                base64_decode(v).map(Base64Bytes)
            }
        }
        d.deserialize_str(V)
    }
}

/// Deserializes an `Item`, refusing duplicate attribute names (they would be ambiguous).
#[derive(Debug, Default)]
pub struct ItemOf(pub Item);

impl<'de> Deserialize<'de> for ItemOf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = ItemOf;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of attribute names to DynamoDB values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemOf, A::Error> {
        // Most nested maps hold a few attributes; top-level items grow by doubling.
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(name) = map.next_key::<Text>()? {
            let value: AttrValue = map.next_value()?;
            pairs.push((name, value));
        }
        Item::from_unique(pairs).map(ItemOf).map_err(|_| de::Error::custom("duplicate attribute name in map"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AttrValue, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn every_type() {
        assert_eq!(parse(r#"{"S":"x"}"#).unwrap(), AttrValue::S("x".into()));
        assert_eq!(parse(r#"{"N":"-12.5E3"}"#).unwrap().to_plain_json(), "-12500");
        assert_eq!(parse(r#"{"B":"AAEC"}"#).unwrap(), AttrValue::B(vec![0, 1, 2]));
        assert_eq!(parse(r#"{"BOOL":false}"#).unwrap(), AttrValue::Bool(false));
        assert_eq!(parse(r#"{"NULL":true}"#).unwrap(), AttrValue::Null);
        let m = parse(r#"{"M":{"b":{"L":[{"N":"1"},{"S":"q\"uote"}]},"a":{"NULL":true}}}"#).unwrap();
        assert_eq!(m.to_plain_json(), r#"{"a":null,"b":[1,"q\"uote"]}"#);
        assert_eq!(parse(r#"{"SS":["b","a"]}"#).unwrap().to_plain_json(), r#"["a","b"]"#);
        assert_eq!(parse(r#"{"NS":["2","1.50"]}"#).unwrap().to_plain_json(), "[1.5,2]");
        assert_eq!(parse(r#"{"BS":["AQ==","AA=="]}"#).unwrap().to_plain_json(), r#"["AA==","AQ=="]"#);
    }

    #[test]
    fn typed_json_round_trips() {
        let text = r#"{"M":{"a":{"L":[{"N":"1.5"},{"SS":["x","y"]},{"NS":["1","2"]},{"BS":["AA=="]},{"B":"AQ=="},{"BOOL":true},{"NULL":true}]}}}"#;
        let v = parse(text).unwrap();
        let mut out = String::new();
        v.write_typed_json(&mut out);
        assert_eq!(out, text);
        assert_eq!(parse(&out).unwrap(), v);
    }

    #[test]
    fn wrong_shapes_are_errors() {
        for bad in [
            r#"{}"#,
            r#"{"X":"1"}"#,
            r#"{"S":1}"#,
            r#"{"N":"abc"}"#,
            r#"{"B":"***"}"#,
            r#"{"NULL":false}"#,
            r#"{"S":"a","N":"1"}"#,
            r#"{"M":{"a":{"S":"x"},"a":{"S":"y"}}}"#,
            r#""plain""#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deep_nesting_to_32_levels() {
        let mut s = String::from(r#"{"S":"leaf"}"#);
        for _ in 0..32 {
            s = format!(r#"{{"M":{{"k":{s}}}}}"#);
        }
        let v = parse(&s).unwrap();
        assert!(v.to_plain_json().contains("leaf"));
    }

    #[test]
    fn key_text_is_canonical() {
        let a: ItemOf = serde_json::from_str(r#"{"sk":{"N":"1.0"},"pk":{"S":"a"}}"#).unwrap();
        let b: ItemOf = serde_json::from_str(r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#).unwrap();
        assert_eq!(key_text(&a.0), key_text(&b.0));
        assert_eq!(key_text(&a.0), r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#);
    }

    #[test]
    fn hex_is_lower_case_pairs() {
        assert_eq!(hex_encode(&[0, 255, 16]), "00ff10");
    }

    #[test]
    fn control_characters_escape() {
        assert_eq!(AttrValue::S("a\u{1}b\n".into()).to_plain_json(), r#""a\u0001b\n""#);
    }
}
