//! Shard lineage: which shards of a stream may be read now. A child is read only once its
//! parents (both, after a merge) are drained, so an item's changes arrive parent-first.
//! Parents that no longer appear in the listing have aged out of the stream: nothing is left
//! to wait for. Shards may also come in generations (a table's DynamoDB streams, oldest
//! first): a shard is read only once every shard of an older generation is drained.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    pub parent: Option<String>,
    pub adjacent_parent: Option<String>,
    /// The shard has an ending sequence number: it takes no more records.
    pub closed: bool,
    /// (group, generation): within a group, earlier generations (in text order: a DynamoDB
    /// stream's label is its creation time) are drained first.
    pub generation: Option<(String, String)>,
}

impl ShardInfo {
    /// A shard of a stream without generations.
    pub fn new(
        id: String,
        parent: Option<String>,
        adjacent_parent: Option<String>,
        closed: bool,
    ) -> ShardInfo {
        ShardInfo { id, parent, adjacent_parent, closed, generation: None }
    }
}

#[derive(Debug, Default)]
pub struct Lineage {
    shards: BTreeMap<String, ShardInfo>,
    drained: HashSet<String>,
}

impl Lineage {
    /// Adds shards from a fresh listing; returns the ids not known before. Known shards keep
    /// their state, except that a shard seen closed stays closed.
    pub fn update(&mut self, listing: impl IntoIterator<Item = ShardInfo>) -> Vec<String> {
        let mut new = Vec::new();
        for shard in listing {
            match self.shards.get_mut(&shard.id) {
                Some(known) => known.closed |= shard.closed,
                None => {
                    new.push(shard.id.clone());
                    self.shards.insert(shard.id.clone(), shard);
                }
            }
        }
        new
    }

    pub fn contains(&self, id: &str) -> bool {
        self.shards.contains_key(id)
    }

    pub fn is_closed(&self, id: &str) -> bool {
        self.shards.get(id).is_some_and(|s| s.closed)
    }

    /// Forgets a shard (drained, and gone from the listing).
    pub fn remove(&mut self, id: &str) {
        self.shards.remove(id);
        self.drained.remove(id);
    }

    /// Drained shards that `listing` (a complete one) no longer holds.
    pub fn drained_and_unlisted(&self, listing: &HashSet<&str>) -> Vec<String> {
        self.drained.iter().filter(|id| !listing.contains(id.as_str())).cloned().collect()
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

    /// Whether an undrained shard of an older generation of `shard`'s group remains.
    fn older_generation_pending(&self, shard: &ShardInfo) -> bool {
        let Some((group, generation)) = &shard.generation else { return false };
        self.shards.values().any(|other| {
            other.generation.as_ref().is_some_and(|(g, n)| g == group && n < generation)
                && !self.drained.contains(&other.id)
        })
    }

    /// Shards to read now, in id order: not drained, every listed parent drained, no older
    /// generation left.
    pub fn readable(&self) -> Vec<String> {
        self.shards
            .values()
            .filter(|s| !self.drained.contains(&s.id))
            .filter(|s| self.parent_done(&s.parent) && self.parent_done(&s.adjacent_parent))
            .filter(|s| !self.older_generation_pending(s))
            .map(|s| s.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>, adjacent: Option<&str>) -> ShardInfo {
        ShardInfo::new(id.into(), parent.map(Into::into), adjacent.map(Into::into), false)
    }

    #[test]
    fn an_older_stream_is_drained_before_a_newer_one() {
        let mut l = Lineage::default();
        let of = |id: &str, generation: u32| ShardInfo {
            generation: Some(("T".into(), format!("2026-01-0{}T00:00:00.000", generation + 1))),
            ..shard(id, None, None)
        };
        assert_eq!(l.update([of("old-a", 0), of("old-b", 0), of("new-a", 1)]).len(), 3);
        assert_eq!(l.readable(), ["old-a", "old-b"]);
        l.mark_drained("old-a");
        l.mark_drained("old-b");
        assert_eq!(l.readable(), ["new-a"]);
        let listed: HashSet<&str> = ["old-b", "new-a"].into_iter().collect();
        assert_eq!(l.drained_and_unlisted(&listed), ["old-a"]);
        l.remove("old-a");
        assert!(!l.contains("old-a"));
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
