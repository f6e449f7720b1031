//! Redshift's streaming-ingestion DDL, which sqlparser does not parse, checked token by token
//! against its documented grammar: `CREATE EXTERNAL SCHEMA … FROM KINESIS` and
//! `CREATE MATERIALIZED VIEW … AS query` (the query itself is handed back, to be parsed and
//! checked as any statement, and checked here for what a view over a stream may hold).
#![allow(dead_code)]

use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement, TableFactor};
use sqlparser::tokenizer::{Token, Tokenizer};

use super::redshift_rules::{Rule, EXTERNAL_SCHEMA, STREAMING_VIEW};

/// The columns a Kinesis stream gives a view ("Getting started with streaming ingestion from
/// Amazon Kinesis Data Streams", materialized-view-streaming-ingestion-getting-started).
pub const STREAM_COLUMNS: [&str; 6] = [
    "approximate_arrival_timestamp",
    "partition_key",
    "shard_id",
    "sequence_number",
    "refresh_time",
    "kinesis_data",
];

/// What `check` made of a statement.
pub enum Streaming {
    /// Not streaming DDL: check it as usual.
    No,
    /// `CREATE EXTERNAL SCHEMA`, checked.
    Done,
    /// `CREATE MATERIALIZED VIEW`, checked up to `AS`: the query, to check as a statement.
    Query(String),
}

/// Walks the words and symbols of a statement, whitespace left out.
struct Words {
    tokens: Vec<Token>,
    next: usize,
}

impl Words {
    fn peek(&self) -> Option<&Token> {
        self.tokens[self.next..].iter().find(|t| !matches!(t, Token::Whitespace(_)))
    }

    fn take(&mut self) -> Option<Token> {
        while let Some(t) = self.tokens.get(self.next).cloned() {
            self.next += 1;
            if !matches!(t, Token::Whitespace(_)) {
                return Some(t);
            }
        }
        None
    }

    /// Takes the next token if it is the unquoted keyword `word`.
    fn keyword(&mut self, word: &str) -> bool {
        let is = matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
        if is {
            self.take();
        }
        is
    }

    fn keywords(&mut self, words: &[&str]) -> bool {
        let at = self.next;
        if words.iter().all(|w| self.keyword(w)) {
            return true;
        }
        self.next = at;
        false
    }

    /// An identifier, quoted or not.
    fn name(&mut self) -> Option<String> {
        match self.take() {
            Some(Token::Word(w)) => Some(w.value),
            _ => None,
        }
    }

    /// The rest of the statement, as written (a final `;` left out).
    fn rest(&self) -> String {
        let text: String = self.tokens[self.next..].iter().map(|t| t.to_string()).collect();
        text.trim().trim_end_matches(';').to_string()
    }
}

/// Checks `sql` if it is streaming DDL.
pub fn check(sql: &str, flag: &mut impl FnMut(Rule, String)) -> Streaming {
    let Ok(tokens) = Tokenizer::new(&sqlparser::dialect::RedshiftSqlDialect {}, sql).tokenize() else {
        return Streaming::No;
    };
    let mut words = Words { tokens, next: 0 };
    if words.keywords(&["CREATE", "EXTERNAL", "SCHEMA"]) {
        external_schema(&mut words, &mut |d| flag(EXTERNAL_SCHEMA, d));
        return Streaming::Done;
    }
    if words.keywords(&["CREATE", "MATERIALIZED", "VIEW"]) {
        return match view_head(&mut words, &mut |d| flag(STREAMING_VIEW, d)) {
            true => Streaming::Query(words.rest()),
            false => Streaming::Done,
        };
    }
    Streaming::No
}

/// "CREATE EXTERNAL SCHEMA" (r_CREATE_EXTERNAL_SCHEMA), Kinesis:
/// `CREATE EXTERNAL SCHEMA [IF NOT EXISTS] schema_name FROM KINESIS [REGION 'r']
/// IAM_ROLE { default | 'arn:aws:iam::<account>:role/<name>' }`; "You can chain up to 10
/// roles", "Don't include spaces in the list of chained roles"; Kinesis needs no
/// AUTHENTICATION (that is for Kafka).
fn external_schema(words: &mut Words, flag: &mut impl FnMut(String)) {
    words.keywords(&["IF", "NOT", "EXISTS"]);
    if words.name().is_none() {
        return flag("no schema name".into());
    }
    if !words.keywords(&["FROM", "KINESIS"]) {
        return flag("not FROM KINESIS".into());
    }
    if words.keyword("REGION") && !matches!(words.take(), Some(Token::SingleQuotedString(_))) {
        return flag("REGION without a quoted region".into());
    }
    if !words.keyword("IAM_ROLE") {
        return flag("no IAM_ROLE".into());
    }
    if !words.keyword("default") {
        match words.take() {
            Some(Token::SingleQuotedString(roles)) => {
                let chain: Vec<&str> = roles.split(',').collect();
                if chain.len() > 10 {
                    flag(format!("{} chained roles", chain.len()));
                }
                if let Some(bad) =
                    chain.iter().find(|r| r.contains(' ') || !r.starts_with("arn:") || !r.contains(":role/"))
                {
                    flag(format!("{bad:?} is not a role ARN"));
                }
            }
            other => return flag(format!("IAM_ROLE {other:?}: neither default nor a quoted ARN")),
        }
    }
    let rest = words.rest();
    if !rest.is_empty() {
        flag(format!("unexpected `{rest}`"));
    }
}

/// "CREATE MATERIALIZED VIEW" (materialized-view-create-sql-command): `CREATE MATERIALIZED
/// VIEW mv_name [ BACKUP { YES | NO } ] [ table_attributes ] [ AUTO REFRESH { YES | NO } ] AS
/// query`, no IF NOT EXISTS. Returns whether it reached the query.
fn view_head(words: &mut Words, flag: &mut impl FnMut(String)) -> bool {
    if words.keywords(&["IF", "NOT", "EXISTS"]) {
        flag("CREATE MATERIALIZED VIEW has no IF NOT EXISTS".into());
        return false;
    }
    if words.name().is_none() {
        flag("no view name".into());
        return false;
    }
    if words.peek() == Some(&Token::Period) {
        words.take();
        if words.name().is_none() {
            flag("no view name after the schema".into());
            return false;
        }
    }
    // The clauses may each appear once, in the documented order.
    let mut stage = 0;
    loop {
        let (at, ok) = if words.keyword("BACKUP") {
            (1, words.keyword("YES") || words.keyword("NO"))
        } else if words.keyword("DISTSTYLE") {
            (2, ["EVEN", "ALL", "KEY", "AUTO"].iter().any(|s| words.keyword(s)))
        } else if words.keyword("DISTKEY") {
            (2, parenthesised_names(words) == Some(1))
        } else if words.keyword("SORTKEY") {
            (2, parenthesised_names(words).is_some_and(|n| n > 0))
        } else if words.keywords(&["AUTO", "REFRESH"]) {
            (3, words.keyword("YES") || words.keyword("NO"))
        } else if words.keyword("AS") {
            return true;
        } else {
            flag(format!("unexpected `{}` before AS", words.rest()));
            return false;
        };
        if !ok || at < stage {
            flag(format!("a misplaced or malformed clause before `{}`", words.rest()));
            return false;
        }
        stage = at;
    }
}

/// `( name [, …] )`: how many names.
fn parenthesised_names(words: &mut Words) -> Option<usize> {
    if words.take() != Some(Token::LParen) {
        return None;
    }
    let mut names = 0;
    loop {
        words.name()?;
        names += 1;
        match words.take()? {
            Token::Comma => continue,
            Token::RParen => return Some(names),
            _ => return None,
        }
    }
}

/// What a view over a stream may select ("Getting started with streaming ingestion from Amazon
/// Kinesis Data Streams": one stream per view; the stream's own columns; no joins), and what no
/// materialized view may hold ("CREATE MATERIALIZED VIEW": no ORDER BY, LIMIT or OFFSET).
pub fn check_view_query(statement: &Statement, flag: &mut impl FnMut(Rule, String)) {
    let Statement::Query(query) = statement else {
        return flag(STREAMING_VIEW, "the view's body is not a query".into());
    };
    if query.order_by.is_some() || query.limit_clause.is_some() {
        flag(STREAMING_VIEW, "ORDER BY, LIMIT or OFFSET in a materialized view".into());
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return flag(STREAMING_VIEW, "not one SELECT over the stream".into());
    };
    match select.from.as_slice() {
        [from] if from.joins.is_empty() => {
            if !matches!(&from.relation, TableFactor::Table { name, .. } if name.0.len() == 2) {
                flag(STREAMING_VIEW, "the view reads something other than `external_schema.stream`".into());
            }
        }
        _ => flag(STREAMING_VIEW, "a view over a stream reads one stream, with no join".into()),
    }
    for item in &select.projection {
        let column = match item {
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(&i.value),
            SelectItem::ExprWithAlias { expr: Expr::Identifier(i), .. } => Some(&i.value),
            _ => None,
        };
        if let Some(column) = column {
            if !STREAM_COLUMNS.contains(&column.to_lowercase().as_str()) {
                flag(STREAMING_VIEW, format!("`{column}` is not a column of a Kinesis stream"));
            }
        }
    }
}
