//! Redshift SQL made runnable on PostgreSQL, for the Data API stand-in: a few Redshift-only
//! words are rewritten, and `COPY … FROM 's3://…'` is parsed and emulated (S3 manifest parts
//! loaded with `json_populate_recordset`).
//!
//! Statements are tokenized (sqlparser, PostgreSQL rules) only to find what to rewrite; the
//! output is the original text with those tokens' byte ranges replaced, so quoted identifiers,
//! string literals and comments pass through byte for byte.
#![allow(dead_code)]

use std::io::Read as _;

use serde_json::Value;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};
use tokio_postgres::Client;

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

/// Redshift-style error text: `ERROR: <message>`.
pub fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("ERROR: {}", db.message()),
        None => format!("ERROR: {e}"),
    }
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

// ----- COPY emulation ----------------------------------------------------------------------------------

/// Emulates `COPY … FROM 's3://…manifest' … FORMAT AS JSON 'auto' [GZIP] MANIFEST` inside the
/// call's transaction: every manifest entry's JSON lines are inserted into the table, keys
/// matched to the columns case-insensitively, values converted by PostgreSQL from their JSON
/// text (so "123" loads into BIGINT). Strings longer than a VARCHAR(n) column's n *bytes* fail
/// the load, as on Redshift. Returns the rows loaded.
pub async fn run_copy(
    client: &Client,
    s3: &aws_sdk_s3::Client,
    copy: &CopySpec,
    running: &(dyn Fn() -> bool + Sync),
) -> Result<i64, String> {
    let table = &copy.table;
    let load_error = |detail: String| {
        format!(
            "ERROR: Load into table '{}' failed. Check 'sys_load_error_detail' system table for details. ({detail})",
            table.trim_matches('"')
        )
    };
    // The table's columns, with the declared length of character ones.
    let described = client
        .query(
            "SELECT a.attname::text, CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 4 \
             THEN a.atttypmod - 4 END FROM pg_attribute a WHERE a.attrelid = to_regclass($1) \
             AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[table],
        )
        .await
        .map_err(|e| pg_error(&e))?;
    let mut columns: Vec<(String, Option<i32>)> = Vec::new();
    for row in &described {
        columns.push((row.try_get(0).map_err(|e| pg_error(&e))?, row.try_get(1).map_err(|e| pg_error(&e))?));
    }
    if columns.is_empty() {
        return Err(format!("ERROR: relation {table} does not exist"));
    }
    if let Some(listed) = &copy.columns {
        let mut chosen = Vec::new();
        for name in listed {
            let column = columns.iter().find(|(c, _)| c == name);
            chosen.push(
                column
                    .cloned()
                    .ok_or_else(|| format!("ERROR: column \"{name}\" of relation {table} does not exist"))?,
            );
        }
        columns = chosen;
    }
    if !copy.manifest {
        return Err("ERROR: the Data API stand-in loads only through a MANIFEST".into());
    }
    let manifest = get_object(s3, &copy.url)
        .await?
        .ok_or_else(|| format!("ERROR: Manifest file {} does not exist", copy.url))?;
    let entries = manifest_entries(&manifest).ok_or("ERROR: Manifest file is not in correct json format")?;
    let mut loaded = 0;
    for (url, mandatory) in entries {
        if !running() {
            return Err("ERROR: Query cancelled.".into());
        }
        let Some(bytes) = get_object(s3, &url).await? else {
            if mandatory {
                return Err(load_error(format!("the manifest's mandatory file {url} does not exist")));
            }
            continue;
        };
        let mut text = String::new();
        let read = match copy.gzip {
            true => flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text).map(drop),
            false => String::from_utf8(bytes).map(|t| text = t).map_err(std::io::Error::other),
        };
        read.map_err(|e| load_error(format!("{url}: {e}")))?;
        loaded += load_part(client, table, &columns, &url, &text, &load_error).await?;
    }
    Ok(loaded)
}

/// `(url, mandatory)` of every entry of a COPY manifest.
fn manifest_entries(manifest: &[u8]) -> Option<Vec<(String, bool)>> {
    let manifest: Value = serde_json::from_slice(manifest).ok()?;
    let entries = manifest.get("entries")?.as_array()?.iter().map(|e| {
        let mandatory = e.get("mandatory").and_then(Value::as_bool).unwrap_or(false);
        Some((e.get("url")?.as_str()?.to_string(), mandatory))
    });
    entries.collect()
}

/// The object at `s3://bucket/key`, or None when there is none.
async fn get_object(s3: &aws_sdk_s3::Client, url: &str) -> Result<Option<Vec<u8>>, String> {
    let (bucket, key) = url
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| format!("ERROR: Invalid S3 URL '{url}'"))?;
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => match out.body.collect().await {
            Ok(body) => Ok(Some(body.into_bytes().to_vec())),
            Err(e) => Err(format!("ERROR: reading {url}: {e}")),
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(format!("ERROR: S3 GetObject {url}: {}", aws_sdk_s3::error::DisplayErrorContext(&e))),
    }
}

/// Loads one part's JSON lines into `columns` of `table`.
async fn load_part(
    client: &Client,
    table: &str,
    columns: &[(String, Option<i32>)],
    url: &str,
    text: &str,
    load_error: &(dyn Fn(String) -> String + Sync),
) -> Result<i64, String> {
    // The lines, checked one by one, joined into one JSON array of their original text (so
    // numbers keep their exact digits).
    let (mut array, mut lines) = (String::from("["), 0);
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = format!("{url} line {}", n + 1);
        let object = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Err(load_error(format!("{at}: not a JSON object"))),
            Err(e) => return Err(load_error(format!("{at}: invalid JSON: {e}"))),
        };
        for (key, value) in &object {
            let limit = columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(key)).and_then(|(_, l)| *l);
            if let (Value::String(s), Some(limit)) = (value, limit) {
                if s.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
                    return Err(load_error(format!(
                        "{at}, column {key}: String length exceeds DDL length ({} bytes, VARCHAR({limit}))",
                        s.len()
                    )));
                }
            }
        }
        if lines > 0 {
            array.push(',');
        }
        array.push_str(line);
        lines += 1;
    }
    if lines == 0 {
        return Ok(0);
    }
    array.push(']');
    let names: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
    let quoted: Vec<String> = names.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
    let from_record: Vec<String> = quoted.iter().map(|c| format!("r.{c}")).collect();
    // Each line's keys renamed to the column they match (others dropped), then the rows built
    // as the table's row type: PostgreSQL converts each value from its JSON text.
    let sql = format!(
        "INSERT INTO {table} ({}) SELECT {} FROM json_populate_recordset(NULL::{table}, (\
           SELECT COALESCE(json_agg(COALESCE((\
             SELECT json_object_agg(c.name, kv.value) FROM json_each(line.value) AS kv \
             JOIN unnest($2::text[]) AS c(name) ON lower(kv.key) = lower(c.name)), '{{}}'::json) \
           ORDER BY line.n), '[]'::json) \
         FROM json_array_elements($1::text::json) WITH ORDINALITY AS line(value, n))) AS r",
        quoted.join(", "),
        from_record.join(", ")
    );
    let inserted = client.execute(&sql, &[&array, &names]).await.map_err(|e| load_error(pg_error(&e)))?;
    Ok(i64::try_from(inserted).unwrap_or(i64::MAX))
}
