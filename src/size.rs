//! Memory sizes as users write them in the configuration (`64MB`, `1.5GB`, `512MiB`).

/// Accepts sizes like `512MB`, `1.5GB`, `100000KB`.
pub fn valid_size(s: &str) -> bool {
    parse_size(s).is_some()
}

/// A size like `512MB` in bytes (KB = 1000 bytes, KiB = 1024, as DuckDB reads them).
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == ' ');
    let unit = t[digits.len()..].trim().to_ascii_uppercase();
    let value = digits.parse::<f64>().ok().filter(|v| *v > 0.0 && v.is_finite())?;
    let scale: f64 = match unit.as_str() {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        "TIB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * scale).min(u64::MAX as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units() {
        assert_eq!(parse_size("64MB"), Some(64_000_000));
        assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse_size("2MiB"), Some(2 * 1024 * 1024));
        assert_eq!(parse_size("plenty"), None);
        assert_eq!(parse_size("0MB"), None);
        assert_eq!(parse_size("12"), None);
    }
}
