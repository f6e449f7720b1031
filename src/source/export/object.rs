//! Where an export's files are: a local folder laid out as the export is in S3
//! (`manifest-summary.json`, `manifest-files.json`, `data/*.json.gz`), or the export's
//! `s3://bucket/prefix/AWSDynamoDB/<export id>/` folder, read in ranged requests so that a
//! large data file never sits in memory whole.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use super::manifest::DataFile;
use crate::aws::{s3_client, sdk_config, sdk_message, AwsSettings};
use crate::warehouse::s3_stage::S3Location;

/// Bytes one ranged request of a data file fetches.
const RANGE_BYTES: u64 = 8 << 20;
/// The largest manifest read (a manifest lists one line per data file: a few hundred bytes
/// each).
const MANIFEST_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    S3(String),
    #[error("larger than {MANIFEST_MAX} bytes: not a manifest")]
    TooLarge,
}

/// A failed S3 call while a data file is read: the service's trouble, not the file's (the
/// backfill stops and resumes from its positions; the file is not reported as damaged).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct S3ReadError(pub String);

/// Whether an I/O error from a data file's stream is an S3 call that failed.
pub fn is_s3_failure(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<S3ReadError>())
}

/// An export's folder.
pub enum ExportLocation {
    Dir(PathBuf),
    S3 { location: S3Location, client: aws_sdk_s3::Client, runtime: Arc<tokio::runtime::Runtime> },
}

impl std::fmt::Display for ExportLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportLocation::Dir(dir) => write!(f, "{}/", dir.display()),
            ExportLocation::S3 { location, .. } => f.write_str(&location.url(&location.prefix)),
        }
    }
}

impl ExportLocation {
    /// `s3://…` (with `aws` for the client) or a local folder.
    pub fn parse(text: &str, aws: &AwsSettings) -> Result<ExportLocation, String> {
        if !text.starts_with("s3://") {
            return Ok(ExportLocation::Dir(PathBuf::from(text)));
        }
        let location = S3Location::parse(text).map_err(|e| e.to_string())?;
        let runtime = crate::runtime::background("dynashift-export").map_err(|e| e.to_string())?;
        let sdk = runtime.block_on(sdk_config(aws));
        runtime.block_on(crate::aws::require_credentials(&sdk)).map_err(|e| e.to_string())?;
        let client = s3_client(&sdk, aws);
        Ok(ExportLocation::S3 { location, client, runtime: Arc::new(runtime) })
    }

    /// A manifest (`name`, in the export's folder), whole.
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>, ObjectError> {
        match self {
            ExportLocation::Dir(dir) => {
                let path = dir.join(name);
                if std::fs::metadata(&path)?.len() > MANIFEST_MAX {
                    return Err(ObjectError::TooLarge);
                }
                Ok(std::fs::read(path)?)
            }
            ExportLocation::S3 { location, client, runtime } => {
                let key = format!("{}{name}", location.prefix);
                let mut reader = S3Reader::open(client.clone(), runtime.clone(), &location.bucket, &key)?;
                if reader.size > MANIFEST_MAX {
                    return Err(ObjectError::TooLarge);
                }
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
        }
    }

    /// A data file's stored (compressed) bytes, as a stream. Data files are found below the
    /// export's folder (`data/…`), whether or not the manifest's keys carry the export prefix.
    pub fn open(&self, file: &DataFile) -> Result<Box<dyn Read + Send>, ObjectError> {
        Ok(self.open_sized(file)?.0)
    }

    /// `open`, with the file's size when each read of it is a download (from S3).
    pub fn open_sized(&self, file: &DataFile) -> Result<(Box<dyn Read + Send>, Option<u64>), ObjectError> {
        match self {
            ExportLocation::Dir(dir) => {
                Ok((Box::new(std::fs::File::open(dir.join(file.relative_path()))?), None))
            }
            ExportLocation::S3 { location, client, runtime } => {
                let key = format!("{}{}", location.prefix, file.relative_path());
                let reader = S3Reader::open(client.clone(), runtime.clone(), &location.bucket, &key)?;
                let size = reader.size;
                Ok((Box::new(reader), Some(size)))
            }
        }
    }
}

/// An S3 object read in ranges of `RANGE_BYTES`.
struct S3Reader {
    client: aws_sdk_s3::Client,
    runtime: Arc<tokio::runtime::Runtime>,
    bucket: String,
    key: String,
    size: u64,
    offset: u64,
    chunk: Vec<u8>,
    at: usize,
}

impl S3Reader {
    fn open(
        client: aws_sdk_s3::Client,
        runtime: Arc<tokio::runtime::Runtime>,
        bucket: &str,
        key: &str,
    ) -> Result<S3Reader, ObjectError> {
        let head = runtime.block_on(client.head_object().bucket(bucket).key(key).send()).map_err(|e| {
            ObjectError::S3(format!("s3://{bucket}/{key}: HeadObject failed: {}", sdk_message(&e)))
        })?;
        let size = head.content_length().unwrap_or(0).max(0) as u64;
        Ok(S3Reader {
            client,
            runtime,
            bucket: bucket.to_string(),
            key: key.to_string(),
            size,
            offset: 0,
            chunk: Vec::new(),
            at: 0,
        })
    }
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            if self.offset >= self.size {
                return Ok(0);
            }
            let last = (self.offset + RANGE_BYTES).min(self.size) - 1;
            let range = format!("bytes={}-{last}", self.offset);
            let request = self.client.get_object().bucket(&self.bucket).key(&self.key).range(range).send();
            let fetched = self.runtime.block_on(async {
                let out = request.await.map_err(|e| sdk_message(&e))?;
                out.body.collect().await.map(|b| b.into_bytes().to_vec()).map_err(|e| e.to_string())
            });
            let failed = |why: String| {
                let message = format!("s3://{}/{}: GetObject failed: {why}", self.bucket, self.key);
                std::io::Error::other(S3ReadError(message))
            };
            let bytes = fetched.map_err(failed)?;
            if bytes.is_empty() {
                return Err(failed("an empty range".into()));
            }
            self.offset += bytes.len() as u64;
            self.chunk = bytes;
            self.at = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
