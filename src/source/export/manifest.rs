//! The two manifests of a DynamoDB table export (`ExportTableToPointInTime`): the summary (which
//! table, consistent as of when, which format) and the list of data files with their item
//! counts and checksums.

use aws_smithy_types::date_time::{DateTime, Format};

/// What `manifest-summary.json` says about an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// `arn:aws:dynamodb:…:table/NAME/export/ID`.
    pub export_arn: String,
    /// The exported table's name (from `tableArn`).
    pub table: String,
    /// The moment the export is consistent with, in microseconds since the epoch.
    pub export_time_micros: i64,
    /// Items in the whole export, when the summary says.
    pub item_count: Option<u64>,
    /// `manifestFilesS3Key`: the key of `manifest-files.json` in the export's bucket.
    pub manifest_files_key: Option<String>,
}

impl ExportSummary {
    /// The export's id (the last part of its ARN), which names its checkpoints.
    pub fn export_id(&self) -> &str {
        self.export_arn.rsplit('/').next().unwrap_or(&self.export_arn)
    }
}

/// One data file of an export, as `manifest-files.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// `dataFileS3Key`: the object's key in the export's bucket (export prefix included).
    pub key: String,
    /// Items (lines) in the file.
    pub item_count: u64,
    /// `md5Checksum`: the MD5 of the stored (compressed) object, base64, when listed.
    pub md5_base64: Option<String>,
}

impl DataFile {
    /// The file's name below the export's `data/` folder (`data/<name>.json.gz`), which is
    /// how a local copy of the export is laid out.
    pub fn relative_path(&self) -> &str {
        match self.key.rfind("/data/") {
            Some(at) => &self.key[at + 1..],
            None => &self.key,
        }
    }
}

/// Why an export's manifests cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest-summary.json is not JSON: {0}")]
    SummaryJson(String),
    #[error("manifest-summary.json lacks `{0}`")]
    Missing(&'static str),
    #[error("manifest-summary.json: `{field}` is `{value}`, which is not {expected}")]
    Invalid { field: &'static str, value: String, expected: &'static str },
    #[error(
        "the export's format is {0}: dynashift reads DYNAMODB_JSON exports (export again with \
         --export-format DYNAMODB_JSON)"
    )]
    Format(String),
    #[error(
        "this is an incremental export: dynashift loads full exports (its changes are in the stream \
         dynashift reads)"
    )]
    Incremental,
    #[error("manifest-files.json line {line}: {why}")]
    FilesLine { line: usize, why: String },
    #[error("manifest-files.json lists {files} items in all, but manifest-summary.json says {summary}")]
    CountMismatch { files: u64, summary: u64 },
}

fn text<'a>(v: &'a serde_json::Value, field: &'static str) -> Result<&'a str, ManifestError> {
    v.get(field).and_then(|f| f.as_str()).ok_or(ManifestError::Missing(field))
}

/// Reads `manifest-summary.json`: refuses formats and export types a backfill cannot load.
pub fn parse_summary(bytes: &[u8]) -> Result<ExportSummary, ManifestError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::SummaryJson(e.to_string()))?;
    if let Some(format) = v.get("outputFormat").and_then(|f| f.as_str()) {
        if format != "DYNAMODB_JSON" {
            return Err(ManifestError::Format(format.to_string()));
        }
    }
    if v.get("exportType").and_then(|t| t.as_str()).is_some_and(|t| t == "INCREMENTAL_EXPORT") {
        return Err(ManifestError::Incremental);
    }
    let table_arn = text(&v, "tableArn")?;
    let table = dynashift_core::decode::table_from_arn(table_arn).ok_or_else(|| ManifestError::Invalid {
        field: "tableArn",
        value: table_arn.to_string(),
        expected: "a DynamoDB table ARN",
    })?;
    let time = text(&v, "exportTime")?;
    let parsed = DateTime::from_str(time, Format::DateTime).map_err(|_| ManifestError::Invalid {
        field: "exportTime",
        value: time.to_string(),
        expected: "an RFC 3339 time",
    })?;
    let export_time_micros = parsed.secs() * 1_000_000 + i64::from(parsed.subsec_nanos() / 1_000);
    Ok(ExportSummary {
        export_arn: text(&v, "exportArn")?.to_string(),
        table,
        export_time_micros,
        item_count: v.get("itemCount").and_then(|c| c.as_u64()),
        manifest_files_key: v.get("manifestFilesS3Key").and_then(|k| k.as_str()).map(str::to_string),
    })
}

/// Reads `manifest-files.json` (one JSON object per line), and checks its item counts add
/// up to the summary's.
pub fn parse_files(bytes: &[u8], summary: &ExportSummary) -> Result<Vec<DataFile>, ManifestError> {
    let mut files = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |why: String| ManifestError::FilesLine { line: i + 1, why };
        let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let key = v
            .get("dataFileS3Key")
            .and_then(|k| k.as_str())
            .ok_or_else(|| bad("no `dataFileS3Key`".into()))?;
        let item_count =
            v.get("itemCount").and_then(|c| c.as_u64()).ok_or_else(|| bad("no `itemCount`".into()))?;
        if key.split('/').any(|part| part == "..") || key.starts_with('/') {
            return Err(bad(format!("`{key}` is not a key inside the export")));
        }
        files.push(DataFile {
            key: key.to_string(),
            item_count,
            md5_base64: v.get("md5Checksum").and_then(|c| c.as_str()).map(str::to_string),
        });
    }
    let total: u64 = files.iter().map(|f| f.item_count).sum();
    if let Some(summary_count) = summary.item_count.filter(|c| *c != total) {
        return Err(ManifestError::CountMismatch { files: total, summary: summary_count });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{"version":"2020-06-30","exportArn":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders/export/01234567890123-a1b2c3d4","startTime":"2020-11-04T07:28:34.028Z","endTime":"2020-11-04T07:33:43.897Z","tableArn":"arn:aws:dynamodb:us-east-1:123456789012:table/Orders","tableId":"x","exportTime":"2020-11-04T07:28:34.028Z","s3Bucket":"b","s3Prefix":null,"s3SseAlgorithm":"AES256","s3SseKmsKeyId":null,"manifestFilesS3Key":"AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json","billedSizeBytes":0,"itemCount":5,"outputFormat":"DYNAMODB_JSON"}"#;

    #[test]
    fn summary_and_files_are_read() {
        let summary = parse_summary(SUMMARY.as_bytes()).unwrap();
        assert_eq!(summary.table, "Orders");
        assert_eq!(summary.export_id(), "01234567890123-a1b2c3d4");
        assert_eq!(summary.export_time_micros, 1_604_474_914_028_000);
        assert_eq!(summary.item_count, Some(5));
        let files = "{\"itemCount\":3,\"md5Checksum\":\"q1w2==\",\"etag\":\"e\",\"dataFileS3Key\":\"p/AWSDynamoDB/x/data/a.json.gz\"}\n\
                     {\"itemCount\":2,\"dataFileS3Key\":\"p/AWSDynamoDB/x/data/b.json.gz\"}\n";
        let parsed = parse_files(files.as_bytes(), &summary).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].relative_path(), "data/a.json.gz");
        // An export prefix holding a `data` folder of its own.
        let nested = DataFile {
            key: "analytics/data/orders/AWSDynamoDB/x/data/c.json.gz".into(),
            item_count: 1,
            md5_base64: None,
        };
        assert_eq!(nested.relative_path(), "data/c.json.gz");
        assert_eq!(parsed[0].md5_base64.as_deref(), Some("q1w2=="));
        assert_eq!(parsed[1].md5_base64, None);
    }

    #[test]
    fn unusable_manifests_are_refused_with_the_reason() {
        let ion = SUMMARY.replace("DYNAMODB_JSON", "ION");
        assert_eq!(parse_summary(ion.as_bytes()), Err(ManifestError::Format("ION".into())));
        let incremental =
            SUMMARY.replace("\"outputFormat\"", "\"exportType\":\"INCREMENTAL_EXPORT\",\"outputFormat\"");
        assert_eq!(parse_summary(incremental.as_bytes()), Err(ManifestError::Incremental));
        let no_time = SUMMARY.replace("\"exportTime\"", "\"exportedAt\"");
        assert_eq!(parse_summary(no_time.as_bytes()), Err(ManifestError::Missing("exportTime")));
        let summary = parse_summary(SUMMARY.as_bytes()).unwrap();
        let short = "{\"itemCount\":3,\"dataFileS3Key\":\"x/data/a.json.gz\"}\n";
        assert_eq!(
            parse_files(short.as_bytes(), &summary),
            Err(ManifestError::CountMismatch { files: 3, summary: 5 })
        );
        let escape = "{\"itemCount\":5,\"dataFileS3Key\":\"x/../../etc/passwd\"}\n";
        assert!(matches!(
            parse_files(escape.as_bytes(), &summary),
            Err(ManifestError::FilesLine { line: 1, .. })
        ));
        assert!(matches!(
            parse_files(b"{not json\n", &summary),
            Err(ManifestError::FilesLine { line: 1, .. })
        ));
    }
}
