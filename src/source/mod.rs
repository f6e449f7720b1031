//! Sources hand over raw records with their positions; decoding happens elsewhere.

pub mod attribute_json;
pub mod dynamodb_streams;
pub mod export;
pub mod file;
pub mod kinesis;
pub mod lineage;
pub mod redshift_mv;
pub mod scan;
pub mod shard_api;
pub mod shards;
pub mod view_server;

use dynashift_core::Position;

/// One record as read, before decoding.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub data: Vec<u8>,
    pub position: Position,
    /// Set when the source itself found the input unusable (an empty file, say); the record
    /// is then rejected with this reason.
    pub problem: Option<String>,
}

/// An open source of either kind.
pub enum Source {
    File(file::FileSource),
    Kinesis(shards::ShardReader<kinesis::KinesisApi>),
    DynamodbStreams(shards::ShardReader<dynamodb_streams::StreamsApi>),
    Export(export::ExportSource),
    Scan(scan::ScanSource),
    RedshiftMv(Box<redshift_mv::MvSource>),
}

impl Source {
    /// Up to `max` records; empty when the input is consumed (or, following, nothing new came).
    pub fn next_batch(&mut self, max: usize) -> anyhow::Result<Vec<RawRecord>> {
        Ok(match self {
            Source::File(f) => f.next_batch(max)?,
            Source::Kinesis(k) => k.next_batch(max)?,
            Source::DynamodbStreams(d) => d.next_batch(max)?,
            Source::Export(e) => e.next_batch(max)?,
            Source::Scan(s) => s.next_batch(max)?,
            Source::RedshiftMv(m) => m.next_batch(max)?,
        })
    }

    /// Shard markers (ends, prunes, the reader's start) to commit with the records last
    /// returned (see `dynashift_core::checkpoint`).
    /// Whether the last read stopped at its size in bytes rather than at the records asked
    /// for or the end of the input: more is waiting.
    pub fn read_was_cut(&self) -> bool {
        match self {
            Source::File(f) => f.read_was_cut(),
            Source::Export(e) => e.read_was_cut(),
            Source::Scan(s) => s.read_was_cut(),
            Source::RedshiftMv(m) => m.read_was_cut(),
            _ => false,
        }
    }

    /// How long the source keeps a record, in seconds (`None` for files: for ever).
    pub fn retention_secs(&self) -> Option<u64> {
        match self {
            // The view keeps what Redshift keeps: as long as the user likes.
            Source::File(_) | Source::Export(_) | Source::Scan(_) | Source::RedshiftMv(_) => None,
            Source::Kinesis(k) => k.retention_secs(),
            Source::DynamodbStreams(d) => d.retention_secs(),
        }
    }

    pub fn take_marks(&mut self) -> Vec<Position> {
        match self {
            Source::File(_) | Source::RedshiftMv(_) => Vec::new(),
            Source::Export(e) => e.take_marks(),
            Source::Scan(s) => s.take_marks(),
            Source::Kinesis(k) => k.take_marks(),
            Source::DynamodbStreams(d) => d.take_marks(),
        }
    }
}
