//! Naming: DynamoDB table and attribute names → warehouse identifiers.
//!
//! DynamoDB names are case-sensitive UTF-8 up to 64 KB; warehouses fold case and cap length.
//! A name is chosen once and stored, so it never changes; collisions get a stable suffix.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How DynamoDB names become warehouse identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NamingStyle {
    /// `customerId` → `customer_id`; characters other than letters, digits and `_` → `_`.
    #[default]
    SnakeCase,
    /// Lower-cased, otherwise unchanged (the reference design's behaviour).
    Lower,
    /// Unchanged, for case-sensitive identifiers.
    Preserve,
}

impl NamingStyle {
    /// The style's name, as configured and stored in the table registry.
    pub fn as_str(self) -> &'static str {
        match self {
            NamingStyle::SnakeCase => "snake_case",
            NamingStyle::Lower => "lower",
            NamingStyle::Preserve => "preserve",
        }
    }
}

/// The name as styled, before length limits and collisions.
pub fn styled(name: &str, style: NamingStyle) -> String {
    let out = match style {
        NamingStyle::SnakeCase => snake_case(name),
        NamingStyle::Lower => name.to_lowercase(),
        NamingStyle::Preserve => name.to_string(),
    };
    // Control characters (NUL, tabs, newlines, …) are not printable, and Redshift takes only
    // printable UTF-8 in identifiers, quoted or not; NUL fits in none anywhere.
    // <https://docs.aws.amazon.com/redshift/latest/dg/r_names.html>
    let out = if out.chars().any(char::is_control) {
        out.chars().map(|c| if c.is_control() { '_' } else { c }).collect()
    } else {
        out
    };
    if out.is_empty() {
        "_".into()
    } else {
        out
    }
}

fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else if c.is_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('_') || out.is_empty() {
            out.push('_');
        }
    }
    out
}

/// Cuts `name` to at most `max_bytes` bytes at a character boundary, ending it with a short
/// hash of `original` so different long names stay different.
pub fn fit(name: &str, original: &str, max_bytes: usize) -> String {
    if name.len() <= max_bytes {
        return name.to_string();
    }
    let hash = short_hash(original);
    let keep = max_bytes.saturating_sub(hash.len() + 1);
    let mut cut = keep.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{}", &name[..cut], hash)
}

/// Eight hex digits of `s`'s SHA-256: a stable suffix that keeps cut names distinct.
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Names already used in one namespace (a schema's tables, a table's columns). Comparison
/// ignores case, since DuckDB and Redshift fold it even in quoted identifiers.
#[derive(Debug, Clone, Default)]
pub struct NameSet {
    taken: HashSet<String>,
}

impl NameSet {
    /// An empty set.
    pub fn new() -> NameSet {
        NameSet::default()
    }

    /// Marks `name` as taken.
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_lowercase());
    }

    /// Whether `name` is taken, ignoring case.
    pub fn contains(&self, name: &str) -> bool {
        self.taken.contains(&name.to_lowercase())
    }

    /// Picks a free identifier for `candidate` (already styled), of at most `max_bytes`,
    /// adding `_2`, `_3`, … on a collision, and reserves it.
    pub fn allocate(&mut self, candidate: &str, original: &str, max_bytes: usize) -> String {
        let base = fit(candidate, original, max_bytes);
        if !self.contains(&base) {
            self.reserve(&base);
            return base;
        }
        for n in 2u32.. {
            let suffix = format!("_{n}");
            let head = fit(candidate, original, max_bytes.saturating_sub(suffix.len()));
            let name = format!("{head}{suffix}");
            if !self.contains(&name) {
                self.reserve(&name);
                return name;
            }
        }
        unreachable!("an unbounded counter always finds a free name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_rules() {
        let s = |n| styled(n, NamingStyle::SnakeCase);
        assert_eq!(s("customerId"), "customer_id");
        assert_eq!(s("HTTPServer"), "http_server");
        assert_eq!(s("audit-log"), "audit_log");
        assert_eq!(s("Orders.v2"), "orders_v2");
        assert_eq!(s("a;DROP TABLE x;--"), "a_drop_table_x_");
        assert_eq!(s("naïveÉté"), "naïve_été");
        assert_eq!(s("x\"y"), "x_y");
        assert_eq!(s(""), "_");
        assert_eq!(styled("Mixed\"Case", NamingStyle::Lower), "mixed\"case");
        assert_eq!(styled("Mixed\0Case", NamingStyle::Preserve), "Mixed_Case");
        assert_eq!(styled("tab\there\nnew\u{7f}del\u{85}", NamingStyle::Preserve), "tab_here_new_del_");
        assert_eq!(styled("Tab\tHere", NamingStyle::Lower), "tab_here");
    }

    #[test]
    fn long_names_are_cut_with_hash() {
        let long = "a".repeat(65536);
        let other = format!("{}b", "a".repeat(65535));
        let x = fit(&long, &long, 127);
        let y = fit(&other, &other, 127);
        assert!(x.len() <= 127 && y.len() <= 127);
        assert_ne!(x, y);
        let uni = "é".repeat(100);
        let cut = fit(&uni, &uni, 127);
        assert!(cut.len() <= 127);
    }

    #[test]
    fn collisions_get_stable_suffixes() {
        let mut set = NameSet::new();
        set.reserve("_ddb_version");
        assert_eq!(set.allocate("user_id", "userId", 127), "user_id");
        assert_eq!(set.allocate("user_id", "user_id", 127), "user_id_2");
        assert_eq!(set.allocate("USER_ID", "USER_ID", 127), "USER_ID_3");
        assert_eq!(set.allocate("_ddb_version", "_ddb_version", 127), "_ddb_version_2");
        let long = "x".repeat(200);
        let a = set.allocate(&long, &long, 63);
        let b = set.allocate(&long, &long, 63);
        assert!(a.len() <= 63 && b.len() <= 63 && a != b);
    }
}
