//! The one place a value becomes SQL text. Everything else is bound as a parameter or
//! loaded as data; a few statements (Redshift's `COPY … FROM 's3://…' IAM_ROLE '…'`) take
//! only literals, and those are built here.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot be written into SQL: it contains a backslash or a control character")]
pub struct LiteralError {
    pub what: String,
}

/// `'text'` with `'` doubled. Backslashes and control characters are refused rather than
/// escaped: how a warehouse reads them inside a literal varies (Redshift treats `\` as an
/// escape in some contexts), and no S3 URL, ARN or region needs them.
pub fn string_literal(what: &str, text: &str) -> Result<String, LiteralError> {
    if text.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(LiteralError { what: what.to_string() });
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_and_escapes_refused() {
        assert_eq!(string_literal("x", "s3://b/k").unwrap(), "'s3://b/k'");
        assert_eq!(string_literal("x", "it's").unwrap(), "'it''s'");
        assert_eq!(string_literal("x", "'; DROP TABLE t; --").unwrap(), "'''; DROP TABLE t; --'");
        assert!(string_literal("role", "a\\'b").is_err());
        assert!(string_literal("role", "a\nb").is_err());
        assert!(string_literal("role", "a\u{0}b").is_err());
    }
}
