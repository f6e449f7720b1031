//! Staging a batch in S3 for Redshift's `COPY`: each table's rows as gzip JSON-lines parts
//! plus a manifest naming them, deleted once the batch has committed (or failed).
//!
//! Redshift cannot read from the client, so this is the only way in for bulk data. Values
//! are JSON (strings, booleans, null), which keeps NULL and the empty string apart; binary
//! travels as hex text, and integers as strings, since `COPY` may read JSON numbers through
//! a double and lose digits past 2^53 ("COPY from JSON format"). A text value longer than a
//! Redshift VARCHAR is cut at a character boundary; a hex or JSON value that long cannot be
//! cut and is staged as NULL; U+0000 is replaced by U+FFFD, as on PostgreSQL. Each is
//! reported so the caller records it with the original value.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use dynashift_core::cells::CellRef;
use dynashift_core::dialect::MAX_VARCHAR_BYTES;
use dynashift_core::plan::TablePlan;
use dynashift_core::sql::StageControl;
use dynashift_core::types::ColumnType;
use dynashift_core::value::{hex_encode, write_json_string};
use flate2::write::GzEncoder;

use super::pg_nul::storable;
use crate::cause::Cause;

/// `s3://bucket/prefix/`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Empty or ending in `/`.
    pub prefix: String,
}

/// Why a text is not an `s3://bucket/prefix/` location dynashift can stage in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidS3Location {
    #[error("`{0}` is not an s3:// URL")]
    NotS3(String),
    #[error("`{0}` is not an S3 bucket name")]
    Bucket(String),
    #[error("the S3 prefix `{0}` holds quotes, backslashes or control characters")]
    Prefix(String),
}

impl S3Location {
    pub fn parse(url: &str) -> Result<S3Location, InvalidS3Location> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| InvalidS3Location::NotS3(url.to_string()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(InvalidS3Location::Bucket(bucket.to_string()));
        }
        if prefix.bytes().any(|b| b.is_ascii_control() || b == b'\'' || b == b'\\') {
            return Err(InvalidS3Location::Prefix(prefix.to_string()));
        }
        let mut prefix = prefix.to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Location { bucket: bucket.to_string(), prefix })
    }

    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// What was done to a value that could not be staged as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagedFix {
    /// Text over 65,535 bytes, cut at a character boundary.
    Cut,
    /// Hex or JSON text over 65,535 bytes, which cannot be cut: staged as NULL.
    Null,
    /// U+0000 replaced by U+FFFD.
    NulReplaced,
}

/// A value that was not staged whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Oversize {
    pub key_text: String,
    /// Index into the plan's staged columns.
    pub staged_column: usize,
    pub bytes: usize,
    pub fix: StagedFix,
    pub original: String,
}

/// One table's staged rows as JSON lines, with what had to be cut.
pub struct Encoded {
    pub parts: Vec<Vec<u8>>,
    pub oversize: Vec<Oversize>,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut_at_char_boundary(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    enc.write_all(data)?;
    enc.finish()
}

/// Encodes `plan`'s rows for the stage columns `c0…` (types `types`, aligned with
/// `plan.staged`), at most `part_rows` rows per gzip part.
pub fn encode(plan: &TablePlan, types: &[ColumnType], part_rows: usize) -> std::io::Result<Encoded> {
    let mut parts = Vec::new();
    let mut oversize = Vec::new();
    let mut line = String::new();
    let mut part = Vec::new();
    let mut rows_in_part = 0;
    for row in &plan.rows {
        line.clear();
        for control in StageControl::ALL {
            // Absent ids stay absent (NULL in the stage): COPY … JSON 'auto' fills missing fields.
            let ids = row.event_ids.as_deref();
            if control == StageControl::EventIds && ids.is_none() {
                continue;
            }
            line.push(if line.is_empty() { '{' } else { ',' });
            write_json_string(&mut line, control.name());
            line.push(':');
            match control {
                StageControl::Key => write_json_string(&mut line, &row.key_text),
                StageControl::Version => {
                    let _ = write!(line, "\"{}\"", row.version.micros);
                }
                StageControl::Sequence => {
                    let _ = write!(line, "\"{}\"", row.version.padded());
                }
                StageControl::Event => write_json_string(&mut line, row.event.as_str()),
                StageControl::Op => write_json_string(&mut line, row.op.code()),
                StageControl::Deleted => line.push_str(if row.deleted { "true" } else { "false" }),
                StageControl::EventIds => write_json_string(&mut line, ids.unwrap_or_default()),
            }
        }
        for (i, cell) in row.cells.iter().enumerate() {
            line.push_str(&format!(",\"c{i}\":"));
            let text = match cell {
                CellRef::Null => {
                    line.push_str("null");
                    continue;
                }
                CellRef::Int(n) => {
                    line.push_str(&format!("\"{n}\""));
                    continue;
                }
                CellRef::Bytes(b) => hex_encode(b),
                CellRef::Text(s) => {
                    let json = matches!(types.get(i), Some(ColumnType::Json));
                    match storable(s, json) {
                        Some(replaced) => {
                            oversize.push(Oversize {
                                key_text: row.key_text.clone(),
                                staged_column: i,
                                bytes: s.len(),
                                fix: StagedFix::NulReplaced,
                                original: s.to_string(),
                            });
                            replaced
                        }
                        None => s.to_string(),
                    }
                }
            };
            if text.len() <= MAX_VARCHAR_BYTES {
                write_json_string(&mut line, &text);
                continue;
            }
            let cuttable = matches!(types.get(i), Some(ColumnType::Text | ColumnType::NumberText))
                && !matches!(cell, CellRef::Bytes(_));
            if cuttable {
                write_json_string(&mut line, cut_at_char_boundary(&text, MAX_VARCHAR_BYTES));
            } else {
                line.push_str("null");
            }
            oversize.push(Oversize {
                key_text: row.key_text.clone(),
                staged_column: i,
                bytes: text.len(),
                fix: if cuttable { StagedFix::Cut } else { StagedFix::Null },
                original: text,
            });
        }
        line.push_str("}\n");
        part.extend_from_slice(line.as_bytes());
        rows_in_part += 1;
        if rows_in_part >= part_rows {
            parts.push(gzip(&part)?);
            part.clear();
            rows_in_part = 0;
        }
    }
    if rows_in_part > 0 {
        parts.push(gzip(&part)?);
    }
    Ok(Encoded { parts, oversize })
}

/// The COPY manifest naming every part (all mandatory: a missing part fails the COPY).
pub fn manifest(location: &S3Location, keys: &[String]) -> String {
    let entries: Vec<String> = keys
        .iter()
        .map(|k| {
            let mut url = String::new();
            write_json_string(&mut url, &location.url(k));
            format!("{{\"url\":{url},\"mandatory\":true}}")
        })
        .collect();
    format!("{{\"entries\":[{}]}}", entries.join(","))
}

#[derive(Debug, thiserror::Error)]
#[error("S3 staging at {location}: {cause}")]
pub struct StageError {
    pub location: String,
    #[source]
    pub cause: Cause,
}

/// The objects of one staged table: its parts and the manifest.
#[derive(Debug, Clone, Default)]
pub struct Staged {
    pub manifest_url: String,
    pub keys: Vec<String>,
}

pub struct S3Stager {
    client: aws_sdk_s3::Client,
    location: S3Location,
    /// Names objects uniquely per process: a restarted run never reuses a name.
    run_id: String,
}

fn stage_error(location: &S3Location, e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError { location: location.url(&location.prefix), cause: Cause::chained(e) }
}

impl S3Stager {
    pub fn new(client: aws_sdk_s3::Client, location: S3Location) -> S3Stager {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let run_id = format!("{}-{}", now.as_millis(), std::process::id());
        S3Stager { client, location, run_id }
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Uploads one table's parts and manifest under `<prefix><run>/<batch>/<table>/`.
    pub async fn upload(&self, batch: u64, table: usize, encoded: &Encoded) -> Result<Staged, StageError> {
        let dir = format!("{}{}/{batch:08}/{table:04}/", self.location.prefix, self.run_id);
        let mut keys = Vec::with_capacity(encoded.parts.len() + 1);
        for (i, part) in encoded.parts.iter().enumerate() {
            let key = format!("{dir}part-{i:05}.json.gz");
            self.put(&key, part.clone()).await?;
            keys.push(key);
        }
        let manifest_key = format!("{dir}manifest.json");
        self.put(&manifest_key, manifest(&self.location, &keys).into_bytes()).await?;
        keys.push(manifest_key.clone());
        Ok(Staged { manifest_url: self.location.url(&manifest_key), keys })
    }

    /// Keeps `body` for good under `<prefix>rejects/<run>/<name>` (never cleaned up); its URL.
    pub async fn keep(&self, name: &str, body: Vec<u8>) -> Result<String, StageError> {
        let key = format!("{}rejects/{}/{name}", self.location.prefix, self.run_id);
        self.put(&key, body).await?;
        Ok(self.location.url(&key))
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StageError> {
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| stage_error(&self.location, e))
    }

    /// Deletes staged objects (1,000 per request, the API's limit).
    pub async fn remove(&self, keys: &[String]) -> Result<(), StageError> {
        for chunk in keys.chunks(1000) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| stage_error(&self.location, e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| stage_error(&self.location, e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.location.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| stage_error(&self.location, e))?;
            // In quiet mode the call succeeds and lists the keys it could not delete (a
            // missing s3:DeleteObject, say): those objects stay, and the caller must hear it.
            if let Some(refused) = out.errors().first() {
                let why = format!(
                    "{} of {} staged objects not deleted, e.g. {}: {}: {}",
                    out.errors().len(),
                    chunk.len(),
                    refused.key().unwrap_or("?"),
                    refused.code().unwrap_or("error"),
                    refused.message().unwrap_or("")
                );
                return Err(stage_error(&self.location, std::io::Error::other(why)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let l = S3Location::parse("s3://my-bucket/stage/dynashift").unwrap();
        assert_eq!((l.bucket.as_str(), l.prefix.as_str()), ("my-bucket", "stage/dynashift/"));
        assert_eq!(S3Location::parse("s3://my-bucket").unwrap().prefix, "");
        assert!(S3Location::parse("https://x/y").is_err());
        assert!(S3Location::parse("s3://Bad_Bucket/x").is_err());
        assert!(S3Location::parse("s3://bucket/it's").is_err());
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let s = "é".repeat(40_000); // 80,000 bytes
        let cut = cut_at_char_boundary(&s, MAX_VARCHAR_BYTES);
        assert_eq!(cut.len(), 65_534);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn manifests_name_every_part() {
        let l = S3Location::parse("s3://b-1/p/").unwrap();
        let m = manifest(&l, &["p/a.gz".into(), "p/b.gz".into()]);
        assert_eq!(
            m,
            r#"{"entries":[{"url":"s3://b-1/p/a.gz","mandatory":true},{"url":"s3://b-1/p/b.gz","mandatory":true}]}"#
        );
    }

    fn staged_lines(plan: &TablePlan, types: &[ColumnType]) -> (Vec<serde_json::Value>, Vec<Oversize>) {
        use std::io::Read;
        let encoded = encode(plan, types, 100).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(encoded.parts[0].as_slice()).read_to_string(&mut text).unwrap();
        (text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(), encoded.oversize)
    }

    fn plan_of(attrs: Vec<(&str, dynashift_core::AttrValue)>) -> (TablePlan, Vec<ColumnType>) {
        use dynashift_core::change::{Change, EventKind, Position, Version};
        use dynashift_core::dialect::Dialect as _;
        use dynashift_core::value::{key_text, Item};
        let mut keys = Item::new();
        keys.insert("id".into(), dynashift_core::AttrValue::S("k".into()));
        let mut image = keys.clone();
        for (k, v) in attrs {
            image.insert(k.into(), v);
        }
        let change = Change {
            table: "T".into(),
            key_text: key_text(&keys),
            keys,
            new_image: Some(image),
            old_image: None,
            event: EventKind::Insert,
            version: Version::new(1_764_000_000_123_456, None),
            position: Position::new("s", "1"),
            ids: Default::default(),
        };
        let mut catalog = dynashift_core::schema::Catalog::default();
        let limits = dynashift_core::dialect::Redshift.limits();
        let plan =
            dynashift_core::plan::plan_table(&mut catalog, "T", vec![change], Default::default(), limits);
        let schema = &catalog.tables["T"];
        let types = plan.staged.iter().map(|&i| schema.columns[i].ty).collect();
        (plan, types)
    }

    /// COPY may read a JSON number through a double: integers past 2^53 travel as strings.
    #[test]
    fn integers_are_staged_as_strings() {
        let big = dynashift_core::number::Number::parse("9007199254740993").unwrap();
        let (plan, types) = plan_of(vec![("n", dynashift_core::AttrValue::N(big))]);
        assert!(types.contains(&ColumnType::BigInt));
        let (lines, _) = staged_lines(&plan, &types);
        assert_eq!(lines[0]["_ddb_version"], "1764000000123456");
        let staged: Vec<&serde_json::Value> =
            (0..plan.staged.len()).map(|i| &lines[0][format!("c{i}")]).collect();
        assert!(staged.contains(&&serde_json::json!("9007199254740993")), "{}", lines[0]);
    }

    /// Redshift's COPY reads U+0000 as the end of a record: it is replaced, and reported.
    #[test]
    fn nul_is_replaced_and_reported() {
        let (plan, types) = plan_of(vec![
            ("s", dynashift_core::AttrValue::S("a\0b".into())),
            ("l", dynashift_core::AttrValue::L(vec![dynashift_core::AttrValue::S("c\0".into())])),
        ]);
        let (lines, fixes) = staged_lines(&plan, &types);
        let text = lines[0].to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert!(text.contains("a\u{FFFD}b") && text.contains("\\ufffd"), "{text}");
        assert_eq!(fixes.len(), 2);
        assert!(fixes.iter().all(|f| f.fix == StagedFix::NulReplaced));
        assert!(fixes.iter().any(|f| f.original == "a\0b"));
    }
}
