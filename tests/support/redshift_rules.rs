//! Amazon Redshift's documented rules, checked statement by statement.
//!
//! No Redshift cluster can run here, and parsing is not acceptance: sqlparser takes far more
//! than Redshift runs. So every statement the Redshift dialect emits in the tests is parsed
//! and walked, and must satisfy the rules below, each taken from AWS's documentation and
//! citing its page. The checker keeps the tables it has seen created and altered, so it knows
//! column types and counts across a run. Each rule has a statement in `tests/redshift_rules.rs`
//! that breaks it on purpose and shows that it fires.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, ColumnOption, CopySource, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, JoinConstraint, JoinOperator, ObjectName, Query, SelectItem, SetExpr, Statement,
    TableFactor, Value, Visit, Visitor,
};
use sqlparser::dialect::RedshiftSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// A documented rule and the page it comes from (Amazon Redshift Database Developer Guide
/// unless another guide is named).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    pub name: &'static str,
    pub page: &'static str,
}

const DG: &str = "https://docs.aws.amazon.com/redshift/latest/dg/";

macro_rules! rule {
    ($id:ident, $name:literal, $page:literal) => {
        pub const $id: Rule = Rule { name: $name, page: $page };
    };
}

// "Leader node–only functions" (c_SQL_functions_leader_node_only) and "Date and time
// functions" (Date_functions_header, deprecated leader node-only functions): they fail in a
// statement that reads or writes user tables; use GETDATE() or SYSDATE.
rule!(
    LEADER_NODE_ONLY,
    "no leader-node-only function in a statement that touches tables",
    "c_SQL_functions_leader_node_only"
);
// "Type compatibility and conversion" (c_Supported_data_types): character strings convert to
// dates, times and numbers; "Boolean type" (r_Boolean_type) lists only literals.
rule!(CHAR_TO_BOOLEAN, "no cast of a character value to BOOLEAN", "r_Boolean_type");
// "Numeric types" (r_Numeric_types201): "The maximum precision is 38." "The maximum scale is 37."
rule!(DECIMAL_LIMITS, "DECIMAL precision at most 38, scale at most 37", "r_Numeric_types201");
// "Character types" (r_Character_types): VARCHAR holds at most 65,535 bytes; without a length
// it holds 256.
rule!(VARCHAR_LIMITS, "VARCHAR of 1 to 65,535 bytes, with its length given", "r_Character_types");
// "VARBYTE type" (r_VARBYTE_type): "The maximum number of bytes (n) can range from 1 –
// 16,777,216." (1,024,000 before 2024.)
rule!(VARBYTE_LIMITS, "VARBYTE of at most 16,777,216 bytes", "r_VARBYTE_type");
// "Names and identifiers" (r_names): 1 to 127 bytes, "only UTF-8 printable characters".
rule!(IDENTIFIERS, "identifiers of 1 to 127 bytes of printable UTF-8", "r_names");
// "Unsupported PostgreSQL features" (c_unsupported-postgresql-features): "oid, tableoid,
// xmin, cmin, xmax, cmax, and ctid" cannot name user-defined columns.
rule!(
    SYSTEM_COLUMN_NAMES,
    "no user column named like a PostgreSQL system column",
    "c_unsupported-postgresql-features"
);
// "CREATE TABLE" (r_CREATE_TABLE_NEW): "The maximum number of columns you can define in a
// single table is 1,600."
rule!(COLUMN_COUNT, "at most 1,600 columns per table", "r_CREATE_TABLE_NEW");
// "ALTER TABLE" (r_ALTER_TABLE): "You can add only one column in each ALTER TABLE statement";
// no COLLATE on an added column; no ALTER COLUMN … TYPE inside a transaction block.
rule!(ALTER_TABLE, "one plain ADD COLUMN per ALTER TABLE; no column type change", "r_ALTER_TABLE");
// "PREPARE" (r_PREPARE): a parameter's type is inferred from where it is first used; in a
// select list nothing gives it one, and the statement fails to prepare.
rule!(UNTYPED_PARAMETER, "no untyped parameter in a select list or as a function argument", "r_PREPARE");
// "VARBYTE type" (r_VARBYTE_type): VARBYTE is Redshift's own type; a bytea parameter does not
// bind to it, and a driver looking up its type queries catalog tables Redshift lacks
// (pg_range, "System catalog tables", c_intro_catalog_views).
rule!(BIND_TYPES, "no binary parameter (bytes travel as hex text)", "r_VARBYTE_type");
// "Unsupported PostgreSQL features" (indexes), "Unsupported PostgreSQL data types"
// (c_unsupported-postgresql-datatypes), "INSERT" (r_INSERT_30: no ON CONFLICT, no RETURNING),
// "TRUNCATE" (r_TRUNCATE: commits the transaction it runs in).
rule!(
    POSTGRES_ONLY,
    "no PostgreSQL-only syntax or type (indexes, ON CONFLICT, RETURNING, TRUNCATE, JSONB, BYTEA, …)",
    "c_unsupported-postgresql-features"
);
// "Correlated subqueries" (r_correlated_subqueries): skip-level correlation references and
// correlation from the ON clause of an outer join return errors; the page's list is partial
// ("correlated subquery pattern is not supported" is also met outside it), so a disjunction of
// correlated subqueries is refused too.
rule!(CORRELATED_SUBQUERIES, "no correlated subquery of an unsupported pattern", "r_correlated_subqueries");
// "SUPER type" limitations (limitations-super): "You can't define SUPER columns as either a
// distribution or sort key."
rule!(SUPER_KEYS, "no SUPER column as DISTKEY or SORTKEY", "limitations-super");
// "CREATE DATABASE" (r_CREATE_DATABASE): in a database created COLLATE CASE_INSENSITIVE every
// VARCHAR compares without case unless the column says COLLATE CASE_SENSITIVE
// ("CREATE TABLE", column_attributes).
rule!(
    CASE_SENSITIVE_KEYS,
    "key and control text columns declared COLLATE CASE_SENSITIVE",
    "r_CREATE_DATABASE"
);
// "Quotas and limits" (Management Guide, amazon-redshift-limits): a statement is at most 16 MB.
rule!(STATEMENT_SIZE, "statements of at most 16 MB", "../mgmt/amazon-redshift-limits");
// "Character types": a longer string is an error, not a truncation.
rule!(VALUE_SIZE, "no string value over 65,535 bytes", "r_Character_types");
// Redshift Data API reference ("BatchExecuteStatement": Sqls 1 to 40) and "Considerations when
// calling the Amazon Redshift Data API" (Management Guide: "The maximum query statement size
// is 100 KB").
rule!(DATA_API_CALLS, "Data API calls of 1 to 40 statements of at most 100 KB", "../mgmt/data-api");
// "COPY from JSON format" (copy-usage_notes-copy-from-json): with 'auto', "matching is
// case-sensitive … matching JSON field names must also be lowercase".
rule!(COPY_JSON_AUTO, "COPY … JSON 'auto' into lower-case column names", "copy-usage_notes-copy-from-json");

// "CREATE EXTERNAL SCHEMA" (r_CREATE_EXTERNAL_SCHEMA), for Kinesis: `[IF NOT EXISTS] name FROM
// KINESIS [REGION '…'] IAM_ROLE { default | 'arn…' }`, up to 10 chained roles without spaces.
rule!(
    EXTERNAL_SCHEMA,
    "CREATE EXTERNAL SCHEMA … FROM KINESIS IAM_ROLE in its documented form",
    "r_CREATE_EXTERNAL_SCHEMA"
);
// "CREATE MATERIALIZED VIEW" (materialized-view-create-sql-command): no IF NOT EXISTS; BACKUP,
// table attributes, AUTO REFRESH, in that order, then AS and a query without ORDER BY or
// LIMIT. "Getting started with streaming ingestion from Amazon Kinesis Data Streams": a view
// reads one stream, its columns approximate_arrival_timestamp, partition_key, shard_id,
// sequence_number, refresh_time, kinesis_data; no joins.
rule!(
    STREAMING_VIEW,
    "CREATE MATERIALIZED VIEW over one stream in its documented form",
    "materialized-view-create-sql-command"
);

/// Every rule, for the README table and the tests that make each fire.
pub const RULES: &[Rule] = &[
    LEADER_NODE_ONLY,
    CHAR_TO_BOOLEAN,
    DECIMAL_LIMITS,
    VARCHAR_LIMITS,
    VARBYTE_LIMITS,
    IDENTIFIERS,
    SYSTEM_COLUMN_NAMES,
    COLUMN_COUNT,
    ALTER_TABLE,
    UNTYPED_PARAMETER,
    BIND_TYPES,
    POSTGRES_ONLY,
    CORRELATED_SUBQUERIES,
    SUPER_KEYS,
    CASE_SENSITIVE_KEYS,
    STATEMENT_SIZE,
    VALUE_SIZE,
    DATA_API_CALLS,
    COPY_JSON_AUTO,
    EXTERNAL_SCHEMA,
    STREAMING_VIEW,
];

impl Rule {
    pub fn url(&self) -> String {
        format!("{DG}{}.html", self.page)
    }
}

const LEADER_ONLY_FUNCTIONS: &[&str] = &[
    "current_schema",
    "current_schemas",
    "has_database_privilege",
    "has_schema_privilege",
    "has_table_privilege",
    "substr",
    "factorial",
    "age",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "isfinite",
    "now",
    "getbit",
    "get_byte",
    "set_bit",
    "set_byte",
    "to_ascii",
];

const POSTGRES_SYSTEM_COLUMNS: &[&str] = &["oid", "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

/// Columns holding keys, table names or positions: compared, so they must compare with case.
const KEY_COLUMNS: &[&str] = &["_ddb_key", "item_key", "source_table", "source", "shard"];

/// The type of a value a statement binds, as the driver sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Null,
    Text(usize),
    Int,
    Bytes,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub rule: Rule,
    pub detail: String,
    pub statement: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sql: String = self.statement.chars().take(300).collect();
        write!(f, "{} ({}): {}\n    in: {sql}", self.rule.name, self.rule.url(), self.detail)
    }
}

/// Checks statements in the order a warehouse would run them.
#[derive(Debug, Default)]
pub struct RedshiftRules {
    /// Table (normalised name) → its columns and their declared types.
    tables: HashMap<String, Vec<(String, DataType)>>,
    /// Statements checked, and which rules they were checked against (all of them).
    pub checked: usize,
}

fn normalise(name: &ObjectName) -> String {
    name.to_string().replace('"', "").to_lowercase()
}

fn last_part(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn is_char(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Varchar(_)
            | DataType::CharacterVarying(_)
            | DataType::CharVarying(_)
            | DataType::Char(_)
            | DataType::Character(_)
            | DataType::Text
            | DataType::String(_)
    )
}

/// The number inside `NAME(n…)` of a type's text, if any.
fn type_length(t: &DataType) -> Option<u64> {
    let text = t.to_string();
    let inner = text.split_once('(')?.1.split([')', ',']).next()?;
    inner.trim().parse().ok()
}

impl RedshiftRules {
    pub fn new() -> RedshiftRules {
        RedshiftRules::default()
    }

    /// Checks one statement with the values it binds.
    pub fn check(&mut self, sql: &str, binds: &[Bind]) -> Vec<Violation> {
        self.checked += 1;
        let mut out = Vec::new();
        let mut flag =
            |rule: Rule, detail: String| out.push(Violation { rule, detail, statement: sql.to_string() });
        if sql.len() > 16 * 1024 * 1024 {
            flag(STATEMENT_SIZE, format!("{} bytes", sql.len()));
            return out;
        }
        for (i, b) in binds.iter().enumerate() {
            match b {
                Bind::Bytes => flag(BIND_TYPES, format!("parameter ${} binds bytes", i + 1)),
                Bind::Text(n) if *n > 65_535 => {
                    flag(VALUE_SIZE, format!("parameter ${} is {n} bytes of text", i + 1))
                }
                _ => {}
            }
        }
        check_tokens(sql, &mut flag);
        let view_query = match super::streaming_ddl::check(sql, &mut flag) {
            super::streaming_ddl::Streaming::No => None,
            super::streaming_ddl::Streaming::Done => return out,
            super::streaming_ddl::Streaming::Query(query) => Some(query),
        };
        let statements = match Parser::parse_sql(&RedshiftSqlDialect {}, view_query.as_deref().unwrap_or(sql))
        {
            Ok(s) => s,
            Err(e) => {
                flag(POSTGRES_ONLY, format!("does not parse as Redshift SQL: {e}"));
                return out;
            }
        };
        for statement in &statements {
            if view_query.is_some() {
                super::streaming_ddl::check_view_query(statement, &mut flag);
            }
            self.check_statement(statement, &mut flag);
        }
        out
    }

    /// Checks one Data API call (`BatchExecuteStatement` or `ExecuteStatement`): its shape,
    /// then each statement, values written in.
    pub fn check_call(&mut self, sqls: &[String]) -> Vec<Violation> {
        let mut out = Vec::new();
        if sqls.is_empty() || sqls.len() > 40 {
            out.push(Violation {
                rule: DATA_API_CALLS,
                detail: format!("{} statements in one call", sqls.len()),
                statement: sqls.first().cloned().unwrap_or_default(),
            });
        }
        for sql in sqls {
            if sql.len() > 100_000 {
                out.push(Violation {
                    rule: DATA_API_CALLS,
                    detail: format!("a statement of {} bytes", sql.len()),
                    statement: sql.clone(),
                });
            }
            out.extend(self.check(sql, &[]));
        }
        out
    }

    fn column_type(&self, tables: &[String], column: &str) -> Option<&DataType> {
        let column = column.to_lowercase();
        tables.iter().filter_map(|t| self.tables.get(t)).flatten().find(|(n, _)| *n == column).map(|(_, t)| t)
    }

    fn check_statement(&mut self, statement: &Statement, flag: &mut impl FnMut(Rule, String)) {
        let relations = relations_of(statement);
        match statement {
            Statement::CreateTable(ct) => {
                let name = normalise(&ct.name);
                let mut columns = Vec::new();
                for c in &ct.columns {
                    check_column_definition(c, false, flag);
                    let column = c.name.value.to_lowercase();
                    let collated = c.options.iter().any(|o| {
                        matches!(&o.option, ColumnOption::Collation(n) if n.to_string().eq_ignore_ascii_case("CASE_SENSITIVE"))
                    });
                    if KEY_COLUMNS.contains(&column.as_str()) && is_char(&c.data_type) && !collated {
                        flag(CASE_SENSITIVE_KEYS, format!("`{}` of {name}", c.name.value));
                    }
                    columns.push((column, c.data_type.clone()));
                }
                if columns.len() > 1600 {
                    flag(COLUMN_COUNT, format!("{name} is created with {} columns", columns.len()));
                }
                let keys = ct.distkey.iter().chain(ct.sortkey.iter().flatten());
                for key in keys {
                    let key = key.to_string().replace('"', "").to_lowercase();
                    if let Some((_, DataType::Custom(t, _))) = columns.iter().find(|(n, _)| *n == key) {
                        if t.to_string().eq_ignore_ascii_case("super") {
                            flag(SUPER_KEYS, format!("`{key}` of {name}"));
                        }
                    }
                }
                self.tables.insert(name, columns);
            }
            Statement::AlterTable(at) => {
                let name = normalise(&at.name);
                let adds = at
                    .operations
                    .iter()
                    .filter(|o| matches!(o, AlterTableOperation::AddColumn { .. }))
                    .count();
                if adds > 1 {
                    flag(ALTER_TABLE, format!("{adds} columns added in one statement"));
                }
                for op in &at.operations {
                    match op {
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            check_column_definition(column_def, true, flag);
                            let columns = self.tables.entry(name.clone()).or_default();
                            columns
                                .push((column_def.name.value.to_lowercase(), column_def.data_type.clone()));
                            if columns.len() > 1600 {
                                flag(COLUMN_COUNT, format!("{name} grows to {} columns", columns.len()));
                            }
                        }
                        AlterTableOperation::AlterColumn { .. } => {
                            flag(ALTER_TABLE, "a column's definition is changed".into())
                        }
                        _ => {}
                    }
                }
            }
            Statement::Drop { names, .. } => {
                for n in names {
                    self.tables.remove(&normalise(n));
                }
            }
            Statement::CreateIndex(_) => flag(POSTGRES_ONLY, "Redshift has no indexes".into()),
            Statement::Truncate(_) => flag(POSTGRES_ONLY, "TRUNCATE commits the batch's transaction".into()),
            Statement::Insert(insert) => {
                if insert.on.is_some() {
                    flag(POSTGRES_ONLY, "INSERT … ON CONFLICT".into());
                }
                if insert.returning.is_some() {
                    flag(POSTGRES_ONLY, "INSERT … RETURNING".into());
                }
            }
            Statement::Update(update) if update.returning.is_some() => {
                flag(POSTGRES_ONLY, "UPDATE … RETURNING".into())
            }
            Statement::Delete(delete) if delete.returning.is_some() => {
                flag(POSTGRES_ONLY, "DELETE … RETURNING".into())
            }
            Statement::Copy { source: CopySource::Table { columns, .. }, .. } => {
                for c in columns {
                    if c.value != c.value.to_lowercase() {
                        flag(COPY_JSON_AUTO, format!("column `{}`", c.value));
                    }
                }
            }
            _ => {}
        }
        let mut walker = Walker { rules: self, relations: &relations, flag, scopes: Vec::new() };
        walker.scopes.push(relation_names(statement));
        let _ = statement.visit(&mut walker);
    }
}

/// Checks on the token stream: identifiers as written.
fn check_tokens(sql: &str, flag: &mut impl FnMut(Rule, String)) {
    let Ok(tokens) = Tokenizer::new(&RedshiftSqlDialect {}, sql).tokenize() else { return };
    for token in tokens {
        match token {
            Token::Word(w) if w.quote_style == Some('"') => {
                if w.value.is_empty() || w.value.len() > 127 {
                    flag(IDENTIFIERS, format!("an identifier of {} bytes", w.value.len()));
                }
                if w.value.chars().any(char::is_control) {
                    flag(IDENTIFIERS, format!("identifier {:?} holds a control character", w.value));
                }
            }
            Token::SingleQuotedString(s) if s.len() > 65_535 => {
                flag(VALUE_SIZE, format!("a string literal of {} bytes", s.len()))
            }
            _ => {}
        }
    }
}

fn check_column_definition(c: &sqlparser::ast::ColumnDef, added: bool, flag: &mut impl FnMut(Rule, String)) {
    check_type(&c.data_type, true, flag);
    let name = c.name.value.to_lowercase();
    if POSTGRES_SYSTEM_COLUMNS.contains(&name.as_str()) {
        flag(SYSTEM_COLUMN_NAMES, format!("column `{}`", c.name.value));
    }
    if added && c.options.iter().any(|o| matches!(o.option, ColumnOption::Collation(_))) {
        flag(ALTER_TABLE, format!("COLLATE on added column `{}`", c.name.value));
    }
}

/// Type limits; `defining` for a column definition (where a bare VARCHAR means 256 bytes).
fn check_type(t: &DataType, defining: bool, flag: &mut impl FnMut(Rule, String)) {
    match t {
        DataType::Decimal(info) | DataType::Numeric(info) => {
            use sqlparser::ast::ExactNumberInfo::*;
            let (p, s) = match info {
                PrecisionAndScale(p, s) => (*p, *s),
                Precision(p) => (*p, 0),
                None => (18, 0),
            };
            if p > 38 || !(0..=37).contains(&s) || s as u64 > p {
                flag(DECIMAL_LIMITS, format!("{t}"));
            }
        }
        DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::CharVarying(_) | DataType::Text => {
            match type_length(t) {
                Some(n) if (1..=65_535).contains(&n) => {}
                Some(n) => flag(VARCHAR_LIMITS, format!("{t}: {n} bytes")),
                Option::None if defining => {
                    flag(VARCHAR_LIMITS, format!("{t} without a length is 256 bytes"))
                }
                Option::None => {}
            }
        }
        DataType::JSONB | DataType::JSON | DataType::Bytea | DataType::Uuid | DataType::Array(_) => {
            flag(POSTGRES_ONLY, format!("type {t}"))
        }
        DataType::Custom(name, _) => {
            let n = name.to_string().to_lowercase();
            if n == "varbyte" || n == "varbinary" || n == "binary varying" {
                match type_length(t) {
                    Some(len) if (1..=16_777_216).contains(&len) => {}
                    Some(len) => flag(VARBYTE_LIMITS, format!("{t}: {len} bytes")),
                    Option::None => {}
                }
            } else if ["serial", "bigserial", "jsonb", "bytea", "timestamptz[]"].contains(&n.as_str()) {
                flag(POSTGRES_ONLY, format!("type {t}"));
            }
        }
        DataType::Varbinary(_) => {
            if let Some(len) = type_length(t) {
                if len > 16_777_216 {
                    flag(VARBYTE_LIMITS, format!("{t}"));
                }
            }
        }
        _ => {}
    }
}

/// Tables a statement reads or writes, normalised.
fn relations_of(statement: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let _ = sqlparser::ast::visit_relations(statement, |r| {
        out.push(normalise(r));
        ControlFlow::<()>::Continue(())
    });
    out
}

/// Names a statement's top level binds: the tables it writes (and their aliases).
fn relation_names(statement: &Statement) -> HashSet<String> {
    let mut names = HashSet::new();
    let mut add = |n: &ObjectName| {
        let full = normalise(n);
        names.insert(last_part(&full).to_string());
        names.insert(full);
    };
    match statement {
        Statement::Delete(d) => {
            let from = match &d.from {
                sqlparser::ast::FromTable::WithFromKeyword(t)
                | sqlparser::ast::FromTable::WithoutKeyword(t) => t,
            };
            for t in from {
                factor_names(&t.relation, &mut names);
            }
        }
        Statement::Update(u) => {
            factor_names(&u.table.relation, &mut names);
            if let Some(
                sqlparser::ast::UpdateTableFromKind::BeforeSet(f)
                | sqlparser::ast::UpdateTableFromKind::AfterSet(f),
            ) = &u.from
            {
                for t in f {
                    factor_names(&t.relation, &mut names);
                }
            }
        }
        Statement::Insert(i) => {
            if let sqlparser::ast::TableObject::TableName(n) = &i.table {
                add(n);
            }
        }
        _ => {}
    }
    names
}

fn factor_names(factor: &TableFactor, names: &mut HashSet<String>) {
    if let TableFactor::Table { name, alias, .. } = factor {
        let full = normalise(name);
        names.insert(last_part(&full).to_string());
        names.insert(full);
        if let Some(a) = alias {
            names.insert(a.name.value.to_lowercase());
        }
    }
}

/// The names a query's FROM clause binds.
fn query_scope(query: &Query) -> HashSet<String> {
    let mut names = HashSet::new();
    if let SetExpr::Select(select) = query.body.as_ref() {
        for t in &select.from {
            factor_names(&t.relation, &mut names);
            for j in &t.joins {
                factor_names(&j.relation, &mut names);
            }
        }
    }
    names
}

fn contains_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if matches!(
            x,
            Expr::Exists { .. }
                | Expr::Subquery(_)
                | Expr::In { target: sqlparser::ast::InTarget::Subquery(_), .. }
        ) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

fn is_placeholder(e: &Expr) -> bool {
    matches!(e, Expr::Value(v) if matches!(v.value, Value::Placeholder(_)))
}

struct Walker<'a, F: FnMut(Rule, String)> {
    rules: &'a RedshiftRules,
    relations: &'a [String],
    flag: &'a mut F,
    /// Names bound by each enclosing query, outermost first.
    scopes: Vec<HashSet<String>>,
}

impl<F: FnMut(Rule, String)> Visitor for Walker<'_, F> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.scopes.push(query_scope(query));
        if let SetExpr::Select(select) = query.body.as_ref() {
            for item in &select.projection {
                let expr = match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                    _ => continue,
                };
                if is_placeholder(expr) {
                    (self.flag)(UNTYPED_PARAMETER, format!("`{expr}` in a select list"));
                }
            }
            for t in &select.from {
                for j in &t.joins {
                    let on = match &j.join_operator {
                        JoinOperator::LeftOuter(JoinConstraint::On(e))
                        | JoinOperator::RightOuter(JoinConstraint::On(e))
                        | JoinOperator::FullOuter(JoinConstraint::On(e))
                        | JoinOperator::Left(JoinConstraint::On(e))
                        | JoinOperator::Right(JoinConstraint::On(e)) => Some(e),
                        _ => None,
                    };
                    if on.is_some_and(contains_subquery) {
                        (self.flag)(CORRELATED_SUBQUERIES, "a subquery in an outer join's ON clause".into());
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => {
                let name = f.name.to_string().replace('"', "").to_lowercase();
                if LEADER_ONLY_FUNCTIONS.contains(&last_part(&name)) && !self.relations.is_empty() {
                    (self.flag)(LEADER_NODE_ONLY, format!("{}", f.name));
                }
                if let FunctionArguments::List(list) = &f.args {
                    for arg in &list.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                            if is_placeholder(e) {
                                (self.flag)(UNTYPED_PARAMETER, format!("`{e}` as an argument of {}", f.name));
                            }
                        }
                    }
                }
            }
            Expr::Cast { expr: inner, data_type, .. } => {
                check_type(data_type, false, self.flag);
                if matches!(data_type, DataType::Boolean | DataType::Bool) {
                    let source = match inner.as_ref() {
                        Expr::Identifier(i) => self.rules.column_type(self.relations, &i.value).cloned(),
                        Expr::CompoundIdentifier(parts) => parts
                            .last()
                            .and_then(|i| self.rules.column_type(self.relations, &i.value))
                            .cloned(),
                        Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)) => None,
                        _ => Some(DataType::Varchar(None)),
                    };
                    if source.as_ref().is_some_and(is_char) {
                        (self.flag)(CHAR_TO_BOOLEAN, format!("CAST({inner} AS {data_type})"));
                    }
                }
            }
            Expr::BinaryOp { left, op: sqlparser::ast::BinaryOperator::Or, right }
                if contains_subquery(left) && contains_subquery(right) =>
            {
                (self.flag)(CORRELATED_SUBQUERIES, "subqueries on both sides of an OR".into());
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 && self.scopes.len() >= 3 => {
                // A reference past the enclosing query to one further out skips a level.
                let qualifier = parts[parts.len() - 2].value.to_lowercase();
                let n = self.scopes.len();
                let near = self.scopes[n - 1].contains(&qualifier) || self.scopes[n - 2].contains(&qualifier);
                let far = self.scopes[..n - 2].iter().any(|s| s.contains(&qualifier));
                if !near && far {
                    (self.flag)(CORRELATED_SUBQUERIES, format!("skip-level reference {expr}"));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Panics listing every violation, if any.
pub fn assert_conforms(violations: &[Violation]) {
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().take(20).map(|v| v.to_string()).collect();
        panic!("{} statements break Redshift's documented rules:\n{}", violations.len(), list.join("\n"));
    }
}
