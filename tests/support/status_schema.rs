//! The documented shape of `status --json` (docs/operations.md), checked field by field: the
//! names are a contract with the users' scripts, so a renamed or retyped field fails here.

use serde_json::Value;

/// Every field of a table entry and its JSON type (`?`: may be null).
const TABLE_FIELDS: &[(&str, &str)] = &[
    ("table", "string"),
    ("target", "string?"),
    ("columns_mode", "string?"),
    ("rows", "integer"),
    ("columns", "integer"),
    ("changes_applied", "integer"),
    ("deletes_applied", "integer"),
    ("expired", "integer"),
    ("rejects", "integer"),
    ("overflow_rows", "integer"),
    ("newest_change", "string?"),
    ("lag_seconds", "integer?"),
    ("schedule", "string"),
    ("paused", "boolean"),
    ("last_applied", "string?"),
    ("next_due", "string?"),
    ("held_changes", "integer?"),
    ("oldest_held_change", "string?"),
];

/// Every field of a shard entry.
const SHARD_FIELDS: &[(&str, &str)] =
    &[("shard", "string"), ("behind_ms", "integer"), ("recorded_at", "string")];

/// Every field of a backfill entry.
const BACKFILL_FIELDS: &[(&str, &str)] =
    &[("source", "string"), ("started", "integer"), ("ended", "integer")];

const TOP_FIELDS: &[(&str, &str)] = &[
    ("tables", "array"),
    ("shards", "array"),
    ("backfills", "array"),
    ("unattributed_rejects", "integer"),
    ("batches", "integer"),
    ("last_batch_at", "string?"),
    ("as_of", "string"),
    ("set_up", "boolean"),
];

fn kind_matches(value: &Value, kind: &str) -> bool {
    let (kind, nullable) = match kind.strip_suffix('?') {
        Some(k) => (k, true),
        None => (kind, false),
    };
    match value {
        Value::Null => nullable,
        Value::String(_) => kind == "string",
        Value::Number(n) => kind == "integer" && n.is_i64(),
        Value::Bool(_) => kind == "boolean",
        Value::Array(_) => kind == "array",
        Value::Object(_) => kind == "object",
    }
}

fn check_object(value: &Value, fields: &[(&str, &str)], what: &str) {
    let object = value.as_object().unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "{what}: the fields differ from the documented ones");
    for (name, kind) in fields {
        assert!(kind_matches(&object[*name], kind), "{what}.{name} is not {kind}: {}", object[*name]);
    }
}

/// `text` is one JSON document of the documented shape; returns the tables it lists.
pub fn assert_status_json(text: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    check_object(&value, TOP_FIELDS, "status");
    let listed: Vec<String> = value["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            check_object(t, TABLE_FIELDS, "status.tables[]");
            t["table"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    for shard in value["shards"].as_array().into_iter().flatten() {
        check_object(shard, SHARD_FIELDS, "status.shards[]");
    }
    for backfill in value["backfills"].as_array().into_iter().flatten() {
        check_object(backfill, BACKFILL_FIELDS, "status.backfills[]");
    }
    listed
}

/// The shards `status --json` lists with their lag (milliseconds).
pub fn shards_behind(text: &str) -> Vec<(String, i64)> {
    let value: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let shards = value["shards"].as_array().cloned().unwrap_or_default();
    shards
        .iter()
        .map(|s| (s["shard"].as_str().unwrap_or_default().to_string(), s["behind_ms"].as_i64().unwrap_or(-1)))
        .collect()
}
