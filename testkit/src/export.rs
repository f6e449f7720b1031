//! DynamoDB table exports in the service's layout, written from known items (for the tests and
//! the backfill benchmark):
//! `manifest-summary.json`, `manifest-files.json` (item counts, base64 MD5 of each stored
//! object) and gzip data files of `{"Item": …}` lines, one file per partition (some empty).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use dynashift_core::value::{write_typed_object, Item};

use crate::{image_for, keys_for, Rng};
use md5::Digest as _;

/// The id the written exports carry.
pub const EXPORT_ID: &str = "01764000000000-a1b2c3d4";

/// One written data file.
#[derive(Debug, Clone)]
pub struct Part {
    /// `data/<name>.json.gz`, relative to the export's folder.
    pub relative: String,
    /// The manifest's `dataFileS3Key`.
    pub key: String,
    pub items: usize,
}

/// Writes `items` of `table` as an export consistent as of `export_time` (RFC 3339) into
/// `dir`, spread over `parts` data files (the last one empty, as an empty partition's is).
/// Panics on I/O errors (test and benchmark tooling).
pub fn write_export<'a>(
    dir: &Path,
    table: &str,
    items: impl IntoIterator<Item = &'a Item>,
    parts: usize,
    export_time: &str,
) -> Vec<Part> {
    write_export_owned(dir, table, items.into_iter().cloned(), parts, export_time)
}

/// `write_export` for items made on the fly (a benchmark's million), written as they come:
/// item `i` goes to data file `i % (parts - 1)`.
pub fn write_export_owned(
    dir: &Path,
    table: &str,
    items: impl IntoIterator<Item = Item>,
    parts: usize,
    export_time: &str,
) -> Vec<Part> {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let parts = parts.max(2);
    let filled = parts - 1;
    let relative: Vec<String> = (0..parts).map(|p| format!("data/{p:04}abcdefghijklmnop.json.gz")).collect();
    let mut encoders: Vec<flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>> = relative
        .iter()
        .map(|r| {
            let file = std::io::BufWriter::new(std::fs::File::create(dir.join(r)).unwrap());
            flate2::write::GzEncoder::new(file, flate2::Compression::fast())
        })
        .collect();
    let mut counts = vec![0usize; parts];
    let mut line = String::new();
    for (i, item) in items.into_iter().enumerate() {
        let p = i % filled;
        line.clear();
        line.push_str("{\"Item\":");
        write_typed_object(&mut line, &item);
        line.push_str("}\n");
        encoders[p].write_all(line.as_bytes()).unwrap();
        counts[p] += 1;
    }
    for encoder in encoders {
        encoder.finish().unwrap().flush().unwrap();
    }
    let mut files = String::new();
    let mut written = Vec::new();
    for (p, relative) in relative.into_iter().enumerate() {
        let bytes = std::fs::read(dir.join(&relative)).unwrap();
        let key = format!("exports/AWSDynamoDB/{EXPORT_ID}/{relative}");
        files.push_str(&format!(
            "{{\"itemCount\":{},\"md5Checksum\":\"{}\",\"etag\":\"{:x}\",\"dataFileS3Key\":\"{key}\"}}\n",
            counts[p],
            md5_base64(&bytes),
            md5::Md5::digest(&bytes)
        ));
        written.push(Part { relative, key, items: counts[p] });
    }
    std::fs::write(dir.join("manifest-files.json"), &files).unwrap();
    write_summary(dir, table, counts.iter().sum(), export_time);
    written
}

/// (Re)writes `manifest-summary.json` for `count` items.
pub fn write_summary(dir: &Path, table: &str, count: usize, export_time: &str) {
    let summary = format!(
        "{{\"version\":\"2020-06-30\",\"exportArn\":\"arn:aws:dynamodb:us-east-1:123456789012:table/{table}/export/{EXPORT_ID}\",\
         \"startTime\":\"{export_time}\",\"endTime\":\"{export_time}\",\"tableArn\":\"arn:aws:dynamodb:us-east-1:123456789012:table/{table}\",\
         \"tableId\":\"12345a12-abcd-123a-ab12-1234abc12345\",\"exportTime\":\"{export_time}\",\"s3Bucket\":\"export-bucket\",\
         \"s3Prefix\":\"exports\",\"s3SseAlgorithm\":\"AES256\",\"s3SseKmsKeyId\":null,\
         \"manifestFilesS3Key\":\"exports/AWSDynamoDB/{EXPORT_ID}/manifest-files.json\",\"billedSizeBytes\":0,\
         \"itemCount\":{count},\"outputFormat\":\"DYNAMODB_JSON\"}}"
    );
    std::fs::write(dir.join("manifest-summary.json"), summary).unwrap();
}

pub fn md5_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
}

/// The items of a model table, by key text.
pub fn table_items(model: &crate::Model, table: &str) -> BTreeMap<String, Item> {
    model.tables.get(table).cloned().unwrap_or_default()
}

/// `count` W1 `Orders` items (the W1 shape: a dozen attributes, a map, a list, a set, binary).
pub fn orders_items(count: usize, seed: u64) -> impl Iterator<Item = Item> {
    let mut rng = Rng::new(seed);
    (0..count as u64).map(move |i| image_for(&mut rng, &keys_for(0, i), 1))
}
