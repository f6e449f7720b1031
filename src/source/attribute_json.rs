//! Attribute values as the AWS SDK returns them, written as DynamoDB JSON for the decoder. The
//! DynamoDB and DynamoDB Streams crates each have their own (identically shaped) value type;
//! one macro writes both, so both are escaped and ordered the same way.

/// `write_value` and `write_map` for the SDK value type `$value` (with its `Blob` type).
macro_rules! attribute_json_writer {
    ($value:ty) => {
        use std::collections::HashMap;

        use dynashift_core::value::{base64_encode, write_json_string};

        type Value = $value;

        fn write_list<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                each(out, item);
            }
            out.push(']');
        }

        /// `{"S":"…"}`, `{"M":{…}}`, … for one value. A type newer than this SDK becomes `{}`,
        /// which the decoder rejects with its reason: never dropped or changed silently.
        pub fn write_value(out: &mut String, v: &Value) {
            let string = |out: &mut String, s: &String| write_json_string(out, s);
            match v {
                Value::S(s) => {
                    out.push_str("{\"S\":");
                    write_json_string(out, s);
                }
                Value::N(n) => {
                    out.push_str("{\"N\":");
                    write_json_string(out, n);
                }
                Value::B(b) => {
                    out.push_str("{\"B\":");
                    write_json_string(out, &base64_encode(b.as_ref()));
                }
                Value::Bool(b) => out.push_str(if *b { "{\"BOOL\":true" } else { "{\"BOOL\":false" }),
                Value::Null(_) => out.push_str("{\"NULL\":true"),
                Value::Ss(s) => {
                    out.push_str("{\"SS\":");
                    write_list(out, s, string);
                }
                Value::Ns(s) => {
                    out.push_str("{\"NS\":");
                    write_list(out, s, string);
                }
                Value::Bs(s) => {
                    out.push_str("{\"BS\":");
                    write_list(out, s, |out, b| write_json_string(out, &base64_encode(b.as_ref())));
                }
                Value::L(items) => {
                    out.push_str("{\"L\":");
                    write_list(out, items, write_value);
                }
                Value::M(m) => {
                    out.push_str("{\"M\":");
                    write_map(out, m);
                }
                _ => out.push('{'),
            }
            out.push('}');
        }

        /// `{"name":{…},…}` with the names in order, so the text of a value is stable.
        pub fn write_map(out: &mut String, map: &HashMap<String, Value>) {
            let mut names: Vec<&String> = map.keys().collect();
            names.sort();
            out.push('{');
            for (i, name) in names.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, name);
                out.push(':');
                write_value(out, &map[name]);
            }
            out.push('}');
        }
    };
}

/// The DynamoDB API's values (Scan).
pub mod dynamodb {
    attribute_json_writer!(aws_sdk_dynamodb::types::AttributeValue);
}

/// DynamoDB Streams' values (GetRecords).
pub mod streams {
    attribute_json_writer!(aws_sdk_dynamodbstreams::types::AttributeValue);
}
