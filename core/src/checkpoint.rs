//! What a source commits per shard in `_dynashift.checkpoints`, as text: the sequence of the
//! last record taken, or a marker. A shard moves forward through these states only, and the
//! order below is how the furthest of two is chosen:
//!
//! 1. a sequence number (decimal, compared as a number);
//! 2. `end`: the shard was read to its end (it is closed and every record was taken);
//! 3. `pruned`: an ended shard that left the stream's listing; its row is deleted.
//!
//! Two keys are not shards: `@start` holds when a new reader first listed the stream (µs
//! since the epoch), so a restart knows the reader is not new; `@stream` holds the identity
//! of the stream the positions belong to, so a re-created stream is recognised.

use std::cmp::Ordering;

use crate::change::compare_decimal;

/// Marker of a shard read to its end.
pub const ENDED: &str = "end";
/// Marker of an ended shard that left the stream's listing.
pub const PRUNED: &str = "pruned";
/// Key of the row holding when a new reader first listed the stream (µs since the epoch).
pub const START_KEY: &str = "@start";
/// Key of the row holding the identity of the stream the positions belong to.
pub const STREAM_KEY: &str = "@stream";

fn rank(value: &str) -> u8 {
    match value {
        ENDED => 1,
        PRUNED => 2,
        _ => 0,
    }
}

/// Orders two committed values of one key (see the module's list).
pub fn compare_checkpoint(a: &str, b: &str) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        if digits(a) && digits(b) {
            compare_decimal(a, b)
        } else {
            a.cmp(b)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_follow_every_sequence() {
        assert_eq!(compare_checkpoint("9", "10"), Ordering::Less);
        assert_eq!(compare_checkpoint(ENDED, "99999999999999999999999999999999999999"), Ordering::Greater);
        assert_eq!(compare_checkpoint(PRUNED, ENDED), Ordering::Greater);
        assert_eq!(compare_checkpoint(ENDED, ENDED), Ordering::Equal);
    }
}
