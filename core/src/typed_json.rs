//! Reading DynamoDB-typed JSON (`{"S":"x"}`, `{"N":"1"}`, `{"M":{…}}`, …) into values and
//! items, straight from the record's text.

use base64::Engine as _;

use crate::json::{JsonError, JsonResult, Reader};
use crate::number::Number;
use crate::value::Item;
use crate::value::{AttrValue, Text};

/// Attributes and list elements read so far at every open level. Each finished map or list
/// moves its tail into a vector of exactly its size: one allocation per map or list, and no
/// spare capacity held while the batch waits.
#[derive(Default)]
pub struct Scratch {
    pairs: Vec<(Text, AttrValue)>,
    values: Vec<AttrValue>,
}

impl AttrValue {
    /// One attribute value from its DynamoDB-typed JSON text.
    pub fn from_typed_json(text: &str) -> Result<AttrValue, JsonError> {
        read_whole(text, &mut Scratch::default(), read_value)
    }
}

impl Item {
    /// An item (attribute name → typed value) from its DynamoDB-typed JSON text.
    pub fn from_typed_json(text: &str) -> Result<Item, JsonError> {
        read_whole(text, &mut Scratch::default(), read_item)
    }
}

/// `text` as one document read by `read` (with its scratch buffers), with nothing after it.
pub fn read_whole<S, T>(
    text: &str,
    scratch: &mut S,
    read: impl FnOnce(&mut Reader<'_>, &mut S) -> JsonResult<T>,
) -> JsonResult<T> {
    let mut r = Reader::new(text);
    let value = read(&mut r, scratch)?;
    r.end()?;
    Ok(value)
}

/// Errors shared with `pack_json`, which reads the same text into the packed form.
pub(crate) const EXPECTED_ITEM: &str = "expected a map of attribute names to DynamoDB values";
pub(crate) const EXPECTED_VALUE: &str = "expected a DynamoDB attribute value such as {\"S\": \"text\"}";
pub(crate) const TWO_TAGS: &str = "attribute value has more than one type tag";
pub(crate) const NO_TAG: &str = "empty attribute value {}";
pub(crate) const NULL_NOT_TRUE: &str = "NULL must be true";

pub(crate) fn duplicate_name(r: &Reader<'_>, name: &str) -> JsonError {
    r.error(format!("duplicate attribute name `{}` in a map", name.chars().take(64).collect::<String>()))
}

pub(crate) fn unknown_type(r: &Reader<'_>, tag: &str) -> JsonError {
    r.error(format!(
        "unknown attribute type `{}` (expected S, N, B, BOOL, NULL, M, L, SS, NS or BS)",
        tag.chars().take(32).collect::<String>()
    ))
}

/// A map of attribute names to typed values; a repeated name is an error (it would be
/// ambiguous).
pub fn read_item(r: &mut Reader<'_>, scratch: &mut Scratch) -> JsonResult<Item> {
    if r.peek() != Some(b'{') {
        return Err(r.error(EXPECTED_ITEM));
    }
    let start = scratch.pairs.len();
    let read = r.object(|r, name| {
        let value = read_value(r, scratch)?;
        scratch.pairs.push((Text::from(name), value));
        Ok(())
    });
    if let Err(e) = read {
        scratch.pairs.truncate(start);
        return Err(e);
    }
    let pairs: Vec<_> = scratch.pairs.drain(start..).collect();
    Item::from_unique(pairs).map_err(|d| duplicate_name(r, &d.0))
}

/// One typed value: an object with exactly one type tag.
pub fn read_value(r: &mut Reader<'_>, scratch: &mut Scratch) -> JsonResult<AttrValue> {
    if r.peek() != Some(b'{') {
        return Err(r.error(EXPECTED_VALUE));
    }
    let mut value = None;
    r.object(|r, tag| {
        if value.is_some() {
            return Err(r.error(TWO_TAGS));
        }
        value = Some(match tag.as_ref() {
            "S" => AttrValue::S(Text::from(r.string()?)),
            "N" => AttrValue::N(number(r)?),
            "B" => AttrValue::B(binary(r)?),
            "BOOL" => AttrValue::Bool(r.bool()?),
            "NULL" => {
                if !r.bool()? {
                    return Err(r.error(NULL_NOT_TRUE));
                }
                AttrValue::Null
            }
            "M" => AttrValue::M(read_item(r, scratch)?),
            "L" => AttrValue::L(read_list(r, scratch)?),
            "SS" => AttrValue::Ss(read_set(r, |r| Ok(Text::from(r.string()?)))?),
            "NS" => AttrValue::Ns(read_set(r, number)?),
            "BS" => AttrValue::Bs(read_set(r, binary)?),
            other => return Err(unknown_type(r, other)),
        });
        Ok(())
    })?;
    value.ok_or_else(|| r.error(NO_TAG))
}

fn read_list(r: &mut Reader<'_>, scratch: &mut Scratch) -> JsonResult<Vec<AttrValue>> {
    let start = scratch.values.len();
    let read = r.array(|r| {
        let value = read_value(r, scratch)?;
        scratch.values.push(value);
        Ok(())
    });
    if let Err(e) = read {
        scratch.values.truncate(start);
        return Err(e);
    }
    Ok(scratch.values.drain(start..).collect())
}

fn read_set<T>(
    r: &mut Reader<'_>,
    mut member: impl FnMut(&mut Reader<'_>) -> JsonResult<T>,
) -> JsonResult<Vec<T>> {
    let mut members = Vec::new();
    r.array(|r| {
        members.push(member(r)?);
        Ok(())
    })?;
    Ok(members)
}

/// A number from its JSON string, parsed exactly.
pub(crate) fn number(r: &mut Reader<'_>) -> JsonResult<Number> {
    let text = r.string()?;
    Number::parse(&text).map_err(|e| r.error(e.to_string()))
}

/// Binary data from its base64 JSON string.
fn binary(r: &mut Reader<'_>) -> JsonResult<Vec<u8>> {
    let mut bytes = Vec::new();
    binary_into(r, &mut bytes)?;
    Ok(bytes)
}

/// Binary data from its base64 JSON string, appended to `out`.
pub(crate) fn binary_into(r: &mut Reader<'_>, out: &mut Vec<u8>) -> JsonResult<()> {
    let text = r.string()?;
    base64::engine::general_purpose::STANDARD
        .decode_vec(text.as_bytes(), out)
        .map_err(|e| r.error(format!("invalid base64 in binary value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AttrValue, JsonError> {
        AttrValue::from_typed_json(s)
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
        assert_eq!(parse(r#"{"L":[]}"#).unwrap(), AttrValue::L(vec![]));
        assert_eq!(parse(r#" { "S" : "spaced" } "#).unwrap(), AttrValue::S("spaced".into()));
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
        for (bad, why) in [
            (r#"{}"#, "empty attribute value"),
            (r#"{"X":"1"}"#, "unknown attribute type `X`"),
            (r#"{"S":1}"#, "expected a string"),
            (r#"{"N":"abc"}"#, "abc"),
            (r#"{"B":"***"}"#, "invalid base64"),
            (r#"{"NULL":false}"#, "NULL must be true"),
            (r#"{"S":"a","N":"1"}"#, "more than one type tag"),
            (r#"{"M":{"a":{"S":"x"},"a":{"S":"y"}}}"#, "duplicate attribute name `a`"),
            (r#"{"M":[]}"#, "expected a map"),
            (r#"{"L":[1]}"#, "expected a DynamoDB attribute value"),
            (r#""plain""#, "expected a DynamoDB attribute value"),
            (r#"{"S":"x"} tail"#, "after the JSON document"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn errors_inside_lists_and_maps_leave_no_partial_state() {
        let mut scratch = Scratch::default();
        let mut r = Reader::new(r#"{"L":[{"S":"a"},{"M":{"b":{"N":"1"},"c":{"Q":1}}}]}"#);
        assert!(read_value(&mut r, &mut scratch).is_err());
        assert!(scratch.pairs.is_empty() && scratch.values.is_empty());
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
    fn items_sort_by_name() {
        let item = Item::from_typed_json(r#"{"b":{"N":"2"},"a":{"S":"1"}}"#).unwrap();
        assert_eq!(item.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }
}
