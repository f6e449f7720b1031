//! An item or an image: attribute name → value, kept sorted by name so output is
//! deterministic.
//!
//! A sorted vector rather than a `BTreeMap`: items hold a dozen attributes or so, and a
//! B-tree allocates a node of eleven slots even for a two-entry nested map, which made
//! building items the larger part of decoding.

use super::AttrValue;
use crate::text::{text_heap_bytes, Text};

/// An item or image: attribute name → value, sorted by name, each name once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Item(Vec<(Text, AttrValue)>);

/// Two attributes of one map share a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateName(pub String);

impl Item {
    /// An empty item.
    pub fn new() -> Item {
        Item(Vec::new())
    }

    /// Builds an item from pairs in any order; refuses a repeated name.
    pub fn from_unique(mut pairs: Vec<(Text, AttrValue)>) -> Result<Item, DuplicateName> {
        // Strictly ascending already (as written by many producers): sorted and unique.
        if pairs.is_sorted_by(|a, b| a.0 < b.0) {
            return Ok(Item(pairs));
        }
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(DuplicateName(w[0].0.to_string()));
        }
        Ok(Item(pairs))
    }

    /// Sets `name` to `value`; returns the value it replaces.
    pub fn insert(&mut self, name: Text, value: AttrValue) -> Option<AttrValue> {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// The value of attribute `name`, if the item has it.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.position(name).map(|i| &self.0[i].1)
    }

    /// Whether the item has attribute `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Removes attribute `name`; returns its value.
    pub fn remove(&mut self, name: &str) -> Option<AttrValue> {
        self.position(name).map(|i| self.0.remove(i).1)
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok()
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the item has no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Attributes in name order.
    pub fn iter(&self) -> Iter<'_> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// Attribute names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Text> + ExactSizeIterator {
        self.0.iter().map(|(n, _)| n)
    }

    /// Attribute values, in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &AttrValue> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// Approximate heap memory held by the item (names, values, nested items), for memory
    /// budgets.
    pub fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Text, AttrValue)>()
            + self.0.iter().map(|(n, v)| text_heap_bytes(n) + v.heap_bytes()).sum::<usize>()
    }
}

/// Iterator over an item's `(name, value)` pairs in name order.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (Text, AttrValue)>,
    fn(&'a (Text, AttrValue)) -> (&'a Text, &'a AttrValue),
>;

impl<'a> IntoIterator for &'a Item {
    type Item = (&'a Text, &'a AttrValue);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Item {
    type Item = (Text, AttrValue);
    type IntoIter = std::vec::IntoIter<(Text, AttrValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Like a map: a later pair with the same name replaces an earlier one.
impl<N: Into<Text>> FromIterator<(N, AttrValue)> for Item {
    fn from_iter<I: IntoIterator<Item = (N, AttrValue)>>(pairs: I) -> Item {
        let mut item = Item::new();
        for (n, v) in pairs {
            item.insert(n.into(), v);
        }
        item
    }
}

impl<T: Into<Text>, const N: usize> From<[(T, AttrValue); N]> for Item {
    fn from(pairs: [(T, AttrValue); N]) -> Item {
        pairs.into_iter().collect()
    }
}

impl<N: Into<Text>> Extend<(N, AttrValue)> for Item {
    fn extend<I: IntoIterator<Item = (N, AttrValue)>>(&mut self, pairs: I) {
        for (n, v) in pairs {
            self.insert(n.into(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_map_like() {
        let mut item = Item::new();
        assert_eq!(item.insert("b".into(), AttrValue::Bool(true)), None);
        assert_eq!(item.insert("a".into(), AttrValue::Null), None);
        assert_eq!(item.insert("b".into(), AttrValue::Bool(false)), Some(AttrValue::Bool(true)));
        assert_eq!(item.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(item.get("b"), Some(&AttrValue::Bool(false)));
        assert!(item.contains_key("a") && !item.contains_key("c"));
        assert_eq!(item.remove("a"), Some(AttrValue::Null));
        assert_eq!(item.len(), 1);
    }

    #[test]
    fn duplicates_are_refused() {
        let pairs =
            vec![("x".into(), AttrValue::Null), ("y".into(), AttrValue::Null), ("x".into(), AttrValue::Null)];
        assert_eq!(Item::from_unique(pairs), Err(DuplicateName("x".into())));
        let ok =
            Item::from_unique(vec![("z".into(), AttrValue::Null), ("a".into(), AttrValue::Null)]).unwrap();
        assert_eq!(ok.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["a", "z"]);
    }
}
