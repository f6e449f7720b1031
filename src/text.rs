//! Text for messages: errors and logs show on one line, statements shortened.

/// `text` on one line: runs of whitespace, line breaks included, become one space.
pub fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The start of a statement, for a message about it: its first 120 characters, then `…`.
pub fn short_sql(sql: &str) -> String {
    let mut chars = sql.char_indices();
    match chars.nth(120) {
        Some((end, _)) => format!("{}…", &sql[..end]),
        None => sql.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fit_one_line() {
        assert_eq!(one_line("a\n  b\tc  "), "a b c");
        assert_eq!(short_sql("SELECT 1"), "SELECT 1");
        let long = "é".repeat(130);
        assert_eq!(short_sql(&long), format!("{}…", "é".repeat(120)));
        assert_eq!(short_sql(&"x".repeat(120)), "x".repeat(120));
    }
}
