//! Redshift SQL made runnable on PostgreSQL, for the Data API stand-in: a few Redshift-only
//! words are rewritten, and `COPY … FROM 's3://…'` is parsed for the stand-in to emulate.
//!
//! Statements are tokenized (sqlparser, PostgreSQL rules) only to find what to rewrite; the
//! output is the original text with those tokens' byte ranges replaced, so quoted identifiers,
//! string literals and comments pass through byte for byte.
#![allow(dead_code)]

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// What to do with one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Translated {
    /// Run this on PostgreSQL.
    Sql(String),
    /// Load the table from S3 (the stand-in does this itself).
    Copy(CopySpec),
}

/// A `COPY <table> [(<columns>)] FROM 's3://…' IAM_ROLE '…' FORMAT AS JSON 'auto' …`.
#[derive(Debug, Clone, PartialEq)]
pub struct CopySpec {
    /// The table as written (quotes kept), for PostgreSQL to resolve.
    pub table: String,
    /// The listed columns, unquoted (unquoted names lower-cased, as Redshift folds them).
    pub columns: Option<Vec<String>>,
    pub url: String,
    pub gzip: bool,
    pub manifest: bool,
}

/// A significant token with the byte range it covers in the statement.
struct Tok {
    token: Token,
    start: usize,
    end: usize,
}

/// `sql` as PostgreSQL should run it, or the COPY to emulate. An `Err` is a Redshift-like
/// message (without the `ERROR: ` prefix).
pub fn translate(sql: &str) -> Result<Translated, String> {
    let Some(toks) = significant_tokens(sql) else {
        // Let PostgreSQL report what the tokenizer could not read.
        return Ok(Translated::Sql(sql.to_string()));
    };
    if toks.first().and_then(keyword).as_deref() == Some("COPY") {
        return parse_copy(sql, &toks).map(Translated::Copy);
    }
    Ok(Translated::Sql(rewrite(sql, &toks)))
}

/// The statement's tokens other than whitespace and comments, with byte ranges.
fn significant_tokens(sql: &str) -> Option<Vec<Tok>> {
    let spans: Vec<TokenWithSpan> =
        Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().ok()?;
    // The tokenizer reports 1-based lines and character columns; map them to byte offsets.
    let mut byte_at: Vec<usize> = sql.char_indices().map(|(b, _)| b).collect();
    byte_at.push(sql.len());
    let mut line_first = vec![0usize];
    for (i, c) in sql.chars().enumerate() {
        if c == '\n' {
            line_first.push(i + 1);
        }
    }
    let offset = |l: Location| -> Option<usize> {
        let first = *line_first.get((l.line as usize).checked_sub(1)?)?;
        byte_at.get(first + (l.column as usize).checked_sub(1)?).copied()
    };
    let mut out = Vec::new();
    for t in spans {
        if matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        out.push(Tok { start: offset(t.span.start)?, end: offset(t.span.end)?, token: t.token });
    }
    Some(out)
}

/// An unquoted word, upper-cased.
fn keyword(t: &Tok) -> Option<String> {
    match &t.token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn is_kw(toks: &[Tok], i: usize, kw: &str) -> bool {
    toks.get(i).and_then(keyword).as_deref() == Some(kw)
}

/// Index of the `)` closing the `(` at `open`.
fn closing_paren(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `toks[i]`'s end, or that of its parenthesized argument list right after it.
fn end_with_args(toks: &[Tok], i: usize) -> (usize, usize) {
    if matches!(toks.get(i + 1).map(|t| &t.token), Some(Token::LParen)) {
        if let Some(close) = closing_paren(toks, i + 1) {
            return (close, toks[close].end);
        }
    }
    (i, toks[i].end)
}

/// Replaces Redshift-only words: `VARBYTE(n)` → `BYTEA`, `SUPER` → `JSONB`, `SYSDATE` →
/// `LOCALTIMESTAMP`, `VARCHAR(MAX)` → `VARCHAR(65535)`; drops `DISTKEY(…)`, `SORTKEY(…)` (also
/// `COMPOUND`/`INTERLEAVED`, `AUTO`) and `DISTSTYLE …`, with the whitespace before them.
fn rewrite(sql: &str, toks: &[Tok]) -> String {
    let mut edits: Vec<(usize, usize, &str)> = Vec::new();
    // Start of a removed clause: the end of the token before it, so its leading space goes too.
    let cut_from = |i: usize| if i == 0 { toks[0].start } else { toks[i - 1].end };
    let mut i = 0;
    while i < toks.len() {
        let Some(kw) = keyword(&toks[i]) else {
            i += 1;
            continue;
        };
        match kw.as_str() {
            "VARBYTE" => {
                let (last, end) = end_with_args(toks, i);
                edits.push((toks[i].start, end, "BYTEA"));
                i = last;
            }
            "SUPER" => edits.push((toks[i].start, toks[i].end, "JSONB")),
            "SYSDATE" => edits.push((toks[i].start, toks[i].end, "LOCALTIMESTAMP")),
            "VARCHAR"
                if matches!(toks.get(i + 1).map(|t| &t.token), Some(Token::LParen))
                    && is_kw(toks, i + 2, "MAX") =>
            {
                edits.push((toks[i + 2].start, toks[i + 2].end, "65535"));
                i += 2;
            }
            "DISTKEY" | "SORTKEY" => {
                let first = if i > 0 && (is_kw(toks, i - 1, "COMPOUND") || is_kw(toks, i - 1, "INTERLEAVED"))
                {
                    i - 1
                } else {
                    i
                };
                let (last, end) = if is_kw(toks, i + 1, "AUTO") {
                    (i + 1, toks[i + 1].end)
                } else {
                    end_with_args(toks, i)
                };
                edits.push((cut_from(first), end, ""));
                i = last;
            }
            "DISTSTYLE" => {
                let last = if toks.get(i + 1).and_then(keyword).is_some() { i + 1 } else { i };
                edits.push((cut_from(i), toks[last].end, ""));
                i = last;
            }
            _ => {}
        }
        i += 1;
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (start, end, with) in edits {
        out.push_str(&sql[at..start]);
        out.push_str(with);
        at = end;
    }
    out.push_str(&sql[at..]);
    out
}

fn parse_copy(sql: &str, toks: &[Tok]) -> Result<CopySpec, String> {
    let near = |i: usize| match toks.get(i) {
        Some(t) => format!("syntax error at or near \"{}\"", &sql[t.start..t.end]),
        None => "syntax error at end of input".to_string(),
    };
    let string_at = |i: usize| match toks.get(i).map(|t| &t.token) {
        Some(Token::SingleQuotedString(s)) => Ok(s.clone()),
        _ => Err(near(i)),
    };
    // The table: a possibly qualified name.
    let mut i = 1;
    if !matches!(toks.get(i).map(|t| &t.token), Some(Token::Word(_))) {
        return Err(near(i));
    }
    let table_start = toks[i].start;
    while matches!(toks.get(i + 1).map(|t| &t.token), Some(Token::Period))
        && matches!(toks.get(i + 2).map(|t| &t.token), Some(Token::Word(_)))
    {
        i += 2;
    }
    let table = sql[table_start..toks[i].end].to_string();
    i += 1;
    let mut columns = None;
    if matches!(toks.get(i).map(|t| &t.token), Some(Token::LParen)) {
        let mut names = Vec::new();
        i += 1;
        loop {
            match toks.get(i).map(|t| &t.token) {
                Some(Token::Word(w)) if w.quote_style.is_some() => names.push(w.value.clone()),
                Some(Token::Word(w)) => names.push(w.value.to_lowercase()),
                _ => return Err(near(i)),
            }
            i += 1;
            match toks.get(i).map(|t| &t.token) {
                Some(Token::Comma) => i += 1,
                Some(Token::RParen) => break,
                _ => return Err(near(i)),
            }
        }
        i += 1;
        columns = Some(names);
    }
    if !is_kw(toks, i, "FROM") {
        return Err(near(i));
    }
    let url = string_at(i + 1)?;
    i += 2;
    let (mut role, mut json_auto, mut gzip, mut manifest) = (false, false, false, false);
    while i < toks.len() {
        if matches!(toks[i].token, Token::SemiColon) && i + 1 == toks.len() {
            break;
        }
        let kw = keyword(&toks[i]).ok_or_else(|| near(i))?;
        match kw.as_str() {
            "IAM_ROLE" => {
                if !is_kw(toks, i + 1, "DEFAULT") {
                    string_at(i + 1)?;
                }
                role = true;
                i += 2;
            }
            "FORMAT" | "JSON" => {
                i += usize::from(kw == "FORMAT");
                i += usize::from(is_kw(toks, i, "AS"));
                if !is_kw(toks, i, "JSON") {
                    return Err(format!(
                        "the Data API stand-in loads only FORMAT AS JSON 'auto', not {}",
                        toks.get(i).map_or("(nothing)", |t| &sql[t.start..t.end])
                    ));
                }
                let arg = string_at(i + 1)
                    .map_err(|_| "FORMAT AS JSON needs an argument ('auto' or a JSONPaths file)")?;
                if !arg.eq_ignore_ascii_case("auto") && !arg.eq_ignore_ascii_case("auto ignorecase") {
                    return Err(format!(
                        "the Data API stand-in loads only FORMAT AS JSON 'auto', not '{arg}'"
                    ));
                }
                json_auto = true;
                i += 2;
            }
            "GZIP" => (gzip, i) = (true, i + 1),
            "MANIFEST" => (manifest, i) = (true, i + 1),
            "REGION" => {
                i += 1 + usize::from(is_kw(toks, i + 1, "AS"));
                string_at(i)?;
                i += 1;
            }
            "CREDENTIALS" | "ACCESS_KEY_ID" | "SECRET_ACCESS_KEY" | "SESSION_TOKEN" => {
                return Err(format!("the Data API stand-in accepts only IAM_ROLE credentials, not {kw}"))
            }
            other => return Err(format!("COPY option {other} is not supported by the Data API stand-in")),
        }
    }
    if !role {
        return Err("Missing credentials: COPY needs IAM_ROLE 'arn:aws:iam::<account>:role/<name>'".into());
    }
    if !url.starts_with("s3://") {
        return Err(format!("Invalid S3 URL '{url}': COPY loads from s3://<bucket>/<key>"));
    }
    if !json_auto {
        return Err(
            "the Data API stand-in loads only FORMAT AS JSON 'auto' (the default is pipe-delimited text)"
                .into(),
        );
    }
    Ok(CopySpec { table, columns, url, gzip, manifest })
}
