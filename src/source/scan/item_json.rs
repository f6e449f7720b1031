//! Items as the DynamoDB API returns them, written as DynamoDB JSON (`{"Item": …}` lines, the
//! export format the decoder reads), and scan keys written and read back for positions.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue as Av;
use base64::Engine as _;

use crate::source::attribute_json::dynamodb::write_map;

/// `{"Item":{…}}` for `item`.
pub fn item_line(item: &HashMap<String, Av>) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str("{\"Item\":");
    write_map(&mut out, item);
    out.push('}');
    out.into_bytes()
}

/// A scan key as DynamoDB JSON (`{"id":{"S":"x"}}`), names in order so the text is stable.
pub fn key_json(key: &HashMap<String, Av>) -> String {
    let mut out = String::new();
    write_map(&mut out, key);
    out
}

/// A key written by `key_json`, back as the API's values (keys are `S`, `N` or `B`).
pub fn parse_key(text: &str) -> Result<HashMap<String, Av>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let mut key = HashMap::new();
    for (name, typed) in object {
        let (kind, v) = typed
            .as_object()
            .and_then(|o| o.iter().next())
            .ok_or_else(|| format!("`{name}` is not a typed value"))?;
        let text = v.as_str().ok_or_else(|| format!("`{name}` is not text"))?;
        let value = match kind.as_str() {
            "S" => Av::S(text.to_string()),
            "N" => Av::N(text.to_string()),
            "B" => Av::B(Blob::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("`{name}`: {e}"))?,
            )),
            other => return Err(format!("`{name}` has the type {other}, which no key has")),
        };
        key.insert(name.clone(), value);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_and_keys_round_trip_through_dynamodb_json() {
        let item = HashMap::from([
            ("id".to_string(), Av::S("a\"b".into())),
            ("n".to_string(), Av::N("-1.50".into())),
            (
                "m".to_string(),
                Av::M(HashMap::from([("l".to_string(), Av::L(vec![Av::Bool(true), Av::Null(true)]))])),
            ),
            ("ss".to_string(), Av::Ss(vec!["x".into(), "y".into()])),
        ]);
        let line = String::from_utf8(item_line(&item)).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["Item"]["id"]["S"], "a\"b");
        assert_eq!(parsed["Item"]["n"]["N"], "-1.50");
        assert_eq!(parsed["Item"]["m"]["M"]["l"]["L"][0]["BOOL"], true);
        assert_eq!(parsed["Item"]["ss"]["SS"][1], "y");
        let key = HashMap::from([
            ("pk".to_string(), Av::S("k".into())),
            ("sk".to_string(), Av::B(Blob::new(vec![0, 255]))),
        ]);
        let text = key_json(&key);
        assert_eq!(text, r#"{"pk":{"S":"k"},"sk":{"B":"AP8="}}"#);
        assert_eq!(parse_key(&text).unwrap(), key);
        assert!(parse_key(r#"{"pk":{"M":{}}}"#).is_err());
    }
}
