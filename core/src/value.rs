//! DynamoDB attribute values and the JSON they are written as (plain, typed, key text). A map
//! value is an item and an item holds values, so items live here too (`item.rs`).
//! Reading typed JSON is `typed_json`'s work.

use base64::Engine as _;

use crate::number::Number;

mod item;

pub use crate::text::{text_heap_bytes, Text};
pub use item::{DuplicateName, Item, Iter};

/// A DynamoDB attribute value: one variant per DynamoDB type.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// String (`S`).
    S(Text),
    /// Number (`N`), exact.
    N(Number),
    /// Binary (`B`), decoded from base64.
    B(Vec<u8>),
    /// Boolean (`BOOL`).
    Bool(bool),
    /// Null (`NULL`).
    Null,
    /// Map (`M`).
    M(Item),
    /// List (`L`).
    L(Vec<AttrValue>),
    /// String set (`SS`).
    Ss(Vec<Text>),
    /// Number set (`NS`).
    Ns(Vec<Number>),
    /// Binary set (`BS`).
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

    /// `to_plain_json`, appended to `out`.
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
    let mut out = String::new();
    write_key_text(&mut out, keys);
    out
}

/// `key_text`, appended to `out`.
pub fn write_key_text(out: &mut String, keys: &Item) {
    out.push('{');
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, name);
        out.push(':');
        value.write_typed_json(out);
    }
    out.push('}');
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

/// Standard base64 with padding: how binary values are written in JSON.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_is_canonical() {
        let a = Item::from_typed_json(r#"{"sk":{"N":"1.0"},"pk":{"S":"a"}}"#).unwrap();
        let b = Item::from_typed_json(r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#).unwrap();
        assert_eq!(key_text(&a), key_text(&b));
        assert_eq!(key_text(&a), r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#);
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
