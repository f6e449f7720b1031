//! The one place a value becomes SQL text. Everything else is bound as a parameter or
//! loaded as data; a few statements (Redshift's `COPY … FROM 's3://…' IAM_ROLE '…'`) take
//! only literals, and so does the Redshift Data API's `BatchExecuteStatement`, which has no
//! parameters: its statements get their values written in here.

use crate::sql::Param;
use crate::value::hex_encode;

/// A value `string_literal` refuses to write into SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot be written into SQL: it contains a backslash or a control character")]
pub struct LiteralError {
    /// What the value is (such as "the IAM role"), for the message.
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

/// A parameter as a Redshift literal that no value can break out of. Text that is plain
/// printable ASCII without quotes or backslashes is written as `'text'`; any other text
/// travels as hex digits (`FROM_VARBYTE(FROM_HEX('…'), 'utf8')`), binary as `FROM_HEX('…')`.
pub fn redshift_literal(p: &Param) -> String {
    match p {
        Param::Null => "NULL".into(),
        Param::Int(i) => i.to_string(),
        Param::Text(s) if is_plain(s) => format!("'{s}'"),
        Param::Text(s) => format!("FROM_VARBYTE(FROM_HEX('{}'), 'utf8')", hex_encode(s.as_bytes())),
        Param::Bytes(b) => format!("FROM_HEX('{}')", hex_encode(b)),
    }
}

fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'\'' && b != b'\\')
}

/// Why `inline_params` cannot write a statement's parameters into it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InlineError {
    /// A placeholder names a parameter the statement lacks: its number, and the parameter count.
    #[error("statement uses placeholder ${0} but has only {1} parameters")]
    MissingParam(usize, usize),
    /// A quoted identifier or string literal has no closing quote.
    #[error("statement has an unterminated quoted identifier or string")]
    Unterminated,
}

/// `sql` with every placeholder `$n` outside quoted identifiers and string literals replaced
/// by `literal(params[n-1])`. Identifiers are always double-quoted by the dialects, so a
/// column named `$1` stays a name.
pub fn inline_params(
    sql: &str,
    params: &[Param],
    literal: impl Fn(&Param) -> String,
) -> Result<String, InlineError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') => {
                // Skip to the closing quote; a doubled quote is part of the text.
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(InlineError::Unterminated),
                        Some(&c) if c == q && bytes.get(i + 1) == Some(&q) => i += 2,
                        Some(&c) if c == q => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'$' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let n: usize = sql[start + 1..i].parse().unwrap_or(usize::MAX);
                let p = n
                    .checked_sub(1)
                    .and_then(|k| params.get(k))
                    .ok_or(InlineError::MissingParam(n, params.len()))?;
                out.push_str(&sql[copied..start]);
                out.push_str(&literal(p));
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_outside_quotes_become_literals() {
        let sql = r#"INSERT INTO "s"."t$1" ("a""$2", b) VALUES ($1, $2, '$1', $10)"#;
        let mut params: Vec<Param> = (1..=10).map(|i| Param::Int(i * 100)).collect();
        params[0] = Param::Text("it's".into());
        params[1] = Param::Null;
        let out = inline_params(sql, &params, redshift_literal).unwrap();
        assert_eq!(
            out,
            r#"INSERT INTO "s"."t$1" ("a""$2", b) VALUES (FROM_VARBYTE(FROM_HEX('69742773'), 'utf8'), NULL, '$1', 1000)"#
        );
        assert_eq!(
            inline_params("SELECT $3", &params[..2], redshift_literal),
            Err(InlineError::MissingParam(3, 2))
        );
        assert_eq!(inline_params("SELECT \"x", &[], redshift_literal), Err(InlineError::Unterminated));
    }

    #[test]
    fn redshift_literals_are_plain_or_hex() {
        assert_eq!(redshift_literal(&Param::Text("shard-0001".into())), "'shard-0001'");
        assert_eq!(redshift_literal(&Param::Text(String::new())), "''");
        assert_eq!(redshift_literal(&Param::Text("a\\b".into())), "FROM_VARBYTE(FROM_HEX('615c62'), 'utf8')");
        assert_eq!(redshift_literal(&Param::Text("é".into())), "FROM_VARBYTE(FROM_HEX('c3a9'), 'utf8')");
        assert_eq!(redshift_literal(&Param::Bytes(vec![0, 255])), "FROM_HEX('00ff')");
        assert_eq!(redshift_literal(&Param::Int(-5)), "-5");
    }

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
