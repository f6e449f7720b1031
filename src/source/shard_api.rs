//! What the shard reader needs from a stream service (Kinesis Data Streams, DynamoDB
//! Streams), and how the services' errors are sorted: retried, or a stop with the reason.

use std::future::Future;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime;

use super::lineage::ShardInfo;
use crate::aws::sdk_message;
use crate::cause::Cause;

/// Classifies an SDK error by its service code (Kinesis and DynamoDB Streams share them).
pub fn classify<E, R>(e: SdkError<E, R>, call: &str) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.as_service_error().and_then(|s| s.code()).map(str::to_string);
    let text = format!("{call}: {}", sdk_message(&e));
    classify_code(code.as_deref(), Cause::with_message(text, e))
}

/// The decision behind `classify`, by the service's error code.
pub fn classify_code(code: Option<&str>, text: Cause) -> ApiError {
    match code {
        Some("ResourceNotFoundException") => ApiError::NotFound(text),
        Some("AccessDeniedException") => ApiError::Denied(text),
        Some("ExpiredIteratorException") => ApiError::Expired,
        Some("ProvisionedThroughputExceededException")
        | Some("LimitExceededException")
        | Some("ThrottlingException")
        | Some("KMSThrottlingException") => ApiError::Throttled(text),
        Some("TrimmedDataAccessException") => ApiError::Trimmed(text),
        // Asking again cannot help: positions of another stream, a key that is disabled,
        // missing or not usable, a malformed request.
        Some(
            "InvalidArgumentException"
            | "ValidationException"
            | "KMSAccessDeniedException"
            | "KMSDisabledException"
            | "KMSInvalidStateException"
            | "KMSNotFoundException"
            | "KMSOptInRequired",
        ) => ApiError::Permanent(text),
        _ => ApiError::Transient(text),
    }
}

impl ApiError {
    /// What went wrong, whatever the kind.
    pub fn into_cause(self) -> Cause {
        match self {
            ApiError::Expired => "iterator expired".into(),
            ApiError::NotFound(cause)
            | ApiError::Denied(cause)
            | ApiError::Trimmed(cause)
            | ApiError::Throttled(cause)
            | ApiError::Transient(cause)
            | ApiError::Permanent(cause) => cause,
        }
    }
}

/// Where a new reader's shards start, from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    /// Seconds since the epoch (with fraction).
    At(f64),
}

/// A start position that is none of the three forms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{0}` is not trim_horizon, latest, or an RFC 3339 time")]
pub struct InvalidStartPosition(pub String);

impl StartPosition {
    pub fn parse(text: &str) -> Result<StartPosition, InvalidStartPosition> {
        match text {
            "trim_horizon" => Ok(StartPosition::TrimHorizon),
            "latest" => Ok(StartPosition::Latest),
            t => DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
                .map(|d| StartPosition::At(d.as_secs_f64()))
                .map_err(|_| InvalidStartPosition(t.to_string())),
        }
    }
}

/// Where one shard iterator starts.
#[derive(Debug, Clone, PartialEq)]
pub enum IteratorStart {
    /// At this record (it comes back first).
    At(String),
    /// Just after this record.
    After(String),
    TrimHorizon,
    Latest,
    /// Seconds since the epoch.
    Timestamp(f64),
}

/// One record as the service returned it.
pub struct Payload {
    pub sequence: String,
    pub data: Vec<u8>,
    /// Why the record cannot be decoded, when the service's side already knows.
    pub problem: Option<String>,
}

/// One `GetRecords` answer.
pub struct Page {
    pub records: Vec<Payload>,
    /// `None`: the shard is closed and fully read.
    pub next: Option<String>,
    /// How far behind the tip the shard is, where the service says.
    pub behind_ms: Option<i64>,
    /// When the newest record of the page reached the stream (milliseconds since the epoch).
    pub newest_made_ms: Option<i64>,
    /// At a shard's end, its children, where the service names them.
    pub children: Vec<ShardInfo>,
}

/// A listing of a stream's shards.
pub struct Listing {
    pub shards: Vec<ShardInfo>,
    /// False when a page could not be read: what is missing is not gone.
    pub complete: bool,
}

#[derive(Debug)]
pub enum ApiError {
    NotFound(Cause),
    Denied(Cause),
    /// The iterator is too old; a fresh one is needed.
    Expired,
    /// The position is older than the stream keeps.
    Trimmed(Cause),
    Throttled(Cause),
    Transient(Cause),
    /// Asking again cannot help.
    Permanent(Cause),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{what} does not exist (or is not visible to these credentials): {cause}")]
    NotFound {
        what: String,
        #[source]
        cause: Cause,
    },
    #[error("access to {what} was denied: {cause}")]
    Denied {
        what: String,
        #[source]
        cause: Cause,
    },
    #[error(
        "{what}: a committed position is older than the stream's retention, so changes were lost to \
         dynashift: run a full load (backfill) of the affected tables, then start again ({cause})"
    )]
    Trimmed {
        what: String,
        #[source]
        cause: Cause,
    },
    /// No credentials (the message says what was tried and what to set).
    #[error(transparent)]
    Credentials(#[from] crate::aws::CredentialsError),
    #[error("{what}: {cause}")]
    Other {
        what: String,
        #[source]
        cause: Cause,
    },
}

/// A stream service's API, as the reader needs it.
pub trait ShardApi: Clone + Send + Sync + 'static {
    /// What is read, for messages: "Kinesis stream `x`".
    fn describe(&self) -> String;
    /// Every shard, with its parents.
    fn list(&self) -> impl Future<Output = Result<Listing, ApiError>> + Send;
    /// The children of `shard`, which has ended (a cheaper call than `list` where there is
    /// one).
    fn children(&self, shard: &str) -> impl Future<Output = Result<Listing, ApiError>> + Send;
    /// What identifies the stream itself (its ARN and creation time), where positions are
    /// keyed by shard alone and a re-created stream would reuse them.
    fn identity(&self) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    /// How long the stream keeps a record, in seconds, when the service says.
    fn retention(&self) -> impl Future<Output = Result<Option<u64>, ApiError>> + Send {
        async { Ok(None) }
    }
    fn iterator(
        &self,
        shard: &str,
        start: &IteratorStart,
    ) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;
    fn records(
        &self,
        shard: &str,
        iterator: String,
        limit: usize,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;
    /// Whether a resume must see the committed record again: a service that continues
    /// silently at the trim horizon when a position has expired (Kinesis) is caught only so.
    fn verifies_resume(&self) -> bool;
    /// Whether iterators can start at a time (AT_TIMESTAMP).
    fn has_timestamps(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(StartPosition::parse("trim_horizon"), Ok(StartPosition::TrimHorizon));
        assert_eq!(StartPosition::parse("latest"), Ok(StartPosition::Latest));
        assert_eq!(StartPosition::parse("2025-11-24T16:00:00Z"), Ok(StartPosition::At(1_764_000_000.0)));
        assert!(StartPosition::parse("yesterday").is_err());
    }

    #[test]
    fn permanent_errors_stop_and_throttling_waits() {
        let c = |code: &str| classify_code(Some(code), code.into());
        for code in [
            "InvalidArgumentException",
            "KMSDisabledException",
            "KMSNotFoundException",
            "ValidationException",
        ] {
            assert!(matches!(c(code), ApiError::Permanent(_)), "{code}");
        }
        for code in
            ["ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"]
        {
            assert!(matches!(c(code), ApiError::Throttled(_)), "{code}");
        }
        assert!(matches!(classify_code(None, "timeout".into()), ApiError::Transient(_)));
        // A stream being updated is a passing state.
        assert!(matches!(c("ResourceInUseException"), ApiError::Transient(_)));
    }
}
