//! Shard lineage: which shards of a stream may be read now. A child is read only once its
//! parents (both, after a merge) are drained, so an item's changes arrive parent-first.
//! Parents that no longer appear in the listing have aged out of the stream: nothing is left
//! to wait for.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
}

#[derive(Debug, Default)]
pub struct Lineage {
    shards: BTreeMap<String, ShardInfo>,
    drained: HashSet<String>,
}

impl Lineage {
    /// Adds shards from a fresh listing (known shards keep their state).
    pub fn update(&mut self, listing: impl IntoIterator<Item = ShardInfo>) {
        for shard in listing {
            self.shards.entry(shard.id.clone()).or_insert(shard);
        }
    }

    /// The shard ended (no next iterator): everything in it has been read.
    pub fn mark_drained(&mut self, id: &str) {
        self.drained.insert(id.to_string());
    }

    pub fn is_drained(&self, id: &str) -> bool {
        self.drained.contains(id)
    }

    fn parent_done(&self, parent: &Option<String>) -> bool {
        parent.as_ref().is_none_or(|p| !self.shards.contains_key(p) || self.drained.contains(p))
    }

    /// Shards to read now, in id order: not drained, every listed parent drained.
    pub fn readable(&self) -> Vec<String> {
        self.shards
            .values()
            .filter(|s| !self.drained.contains(&s.id))
            .filter(|s| self.parent_done(&s.parent) && self.parent_done(&s.adjacent_parent))
            .map(|s| s.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>) -> ShardInfo {
        ShardInfo { id: id.into(), parent: parent.map(Into::into), adjacent_parent: adjacent.map(Into::into) }
    }

    #[test]
    fn children_wait_for_their_parents() {
        let mut l = Lineage::default();
        // s0 split into s2 and s3, which merged into s4; s1 untouched.
        l.update([
            shard("s0", None, None),
            shard("s1", None, None),
            shard("s2", Some("s0"), None),
            shard("s3", Some("s0"), None),
            shard("s4", Some("s2"), Some("s3")),
        ]);
        assert_eq!(l.readable(), ["s0", "s1"]);
        l.mark_drained("s0");
        assert_eq!(l.readable(), ["s1", "s2", "s3"]);
        l.mark_drained("s2");
        assert_eq!(l.readable(), ["s1", "s3"], "a merge waits for both parents");
        l.mark_drained("s3");
        assert_eq!(l.readable(), ["s1", "s4"]);
    }

    #[test]
    fn parents_aged_out_do_not_block() {
        let mut l = Lineage::default();
        l.update([shard("s5", Some("gone"), Some("also-gone"))]);
        assert_eq!(l.readable(), ["s5"]);
    }
}
