//! Sources hand over raw records with their positions; decoding happens elsewhere.

pub mod file;

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
