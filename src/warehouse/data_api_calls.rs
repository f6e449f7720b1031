//! A batch as Redshift Data API calls. `BatchExecuteStatement` runs up to 40 statements of up
//! to 100 KB each as one transaction, and takes SQL text only: values are written in as
//! literals, the applied counts are added in SQL, and a batch too big for one call becomes
//! several calls in the batch's own order — data first, positions last.
//!
//! Why several calls are still exactly-once in effect: every change carries its version, and
//! the apply keeps a row only when it is newer than the row and the tombstone in place. If a
//! crash lands between two calls, the positions have not moved, the batch is read again, and
//! what already committed is filtered out as "not newer" — nothing is applied twice. A table's
//! stage lives only inside one call, so the statements from its load to its drop never split.

use dynashift_core::dialect::Dialect;
use dynashift_core::literal::{inline_params, redshift_literal};
use dynashift_core::sql::{applied_counts_query, counters_update_from_stage, Layout, Statement};

use super::steps::{batch_steps, reject_statement, Step, STAGE};
use super::{Batch, Reject, WarehouseError};
use crate::text::short_sql;

/// Statements per `BatchExecuteStatement`.
pub const MAX_STATEMENTS: usize = 40;
/// Bytes per statement text.
pub const MAX_SQL_BYTES: usize = 100_000;

/// One `BatchExecuteStatement`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Call {
    pub sqls: Vec<String>,
    /// Statements whose result is a table's applied counts: (index in `sqls`, source table).
    pub counts: Vec<(usize, String)>,
}

/// A run of statements that must share a call.
#[derive(Default)]
struct Unit {
    sqls: Vec<String>,
    counts: Vec<(usize, String)>,
    /// A position's DELETE and INSERT.
    position: bool,
}

/// `s` with its values written in, within the Data API's size limit.
pub fn inline(s: &Statement) -> Result<String, WarehouseError> {
    let sql = inline_params(&s.sql, &s.params, redshift_literal)
        .map_err(|e| WarehouseError::Corrupt(format!("{e}: {}", short_sql(&s.sql))))?;
    if sql.len() > MAX_SQL_BYTES {
        return Err(WarehouseError::Query {
            context: short_sql(&sql),
            cause: format!(
                "this statement is {} bytes, over the Data API's limit of {MAX_SQL_BYTES} \
                 (an attribute name or rejected record that long); use `connection = \"wire\"`",
                sql.len()
            )
            .into(),
        });
    }
    Ok(sql)
}

/// The calls applying `batch`. `copy` gives the statement loading a table plan's stage (a
/// `COPY … FROM` manifest); `extra_rejects` are recorded with the batch (values cut while
/// staging).
pub fn data_api_calls(
    d: &dyn Dialect,
    layout: &Layout,
    batch: &Batch,
    extra_rejects: &[Reject],
    copy: impl FnMut(usize, &[(String, &'static str)]) -> Result<String, WarehouseError>,
) -> Result<Vec<Call>, WarehouseError> {
    data_api_calls_within(MAX_STATEMENTS, d, layout, batch, extra_rejects, copy)
}

/// `data_api_calls` with at most `max_statements` per call (tests use fewer, to get more
/// call boundaries).
pub fn data_api_calls_within(
    max_statements: usize,
    d: &dyn Dialect,
    layout: &Layout,
    batch: &Batch,
    extra_rejects: &[Reject],
    mut copy: impl FnMut(usize, &[(String, &'static str)]) -> Result<String, WarehouseError>,
) -> Result<Vec<Call>, WarehouseError> {
    let drop_stage = d.drop_stage(STAGE);
    let mut units: Vec<Unit> = Vec::new();
    // A table's DDL and registry rows, waiting for its stage unit (or to stand alone).
    let mut schema: Vec<String> = Vec::new();
    let mut open: Option<Unit> = None;
    for step in batch_steps(d, layout, batch) {
        match step {
            Step::Schema(s) => schema.push(inline(&s)?),
            Step::LoadStage { index, columns } => {
                let sqls = vec![d.create_stage(STAGE, &columns), copy(index, &columns)?];
                open = Some(Unit { sqls, ..Unit::default() });
            }
            Step::CountApplied { index } => {
                let plan = &batch.tables[index];
                let unit = open.as_mut().ok_or_else(|| corrupt("counts outside a stage"))?;
                let update =
                    counters_update_from_stage(d, layout, &plan.source_table, STAGE, plan.expired_kept);
                unit.sqls.push(inline(&update)?);
                unit.counts.push((unit.sqls.len(), plan.source_table.clone()));
                unit.sqls.push(applied_counts_query(d, STAGE));
            }
            Step::AppendRows { .. } | Step::AppendStaged { .. } => {
                return Err(corrupt("the Data API's batches are always guarded"))
            }
            Step::Together(statements) => {
                push_table(&mut units, std::mem::take(&mut schema), Unit::default(), max_statements);
                let sqls = statements.iter().map(inline).collect::<Result<Vec<_>, _>>()?;
                units.push(Unit { sqls, counts: Vec::new(), position: true });
            }
            Step::Sql(s) => match open.as_mut() {
                Some(unit) => {
                    unit.sqls.push(inline(&s)?);
                    if s.sql == drop_stage {
                        let data = open.take().unwrap_or_default();
                        push_table(&mut units, std::mem::take(&mut schema), data, max_statements);
                    }
                }
                None => {
                    push_table(&mut units, std::mem::take(&mut schema), Unit::default(), max_statements);
                    units.push(Unit { sqls: vec![inline(&s)?], ..Unit::default() });
                }
            },
        }
    }
    if open.is_some() {
        return Err(corrupt("a stage is never dropped"));
    }
    push_table(&mut units, schema, Unit::default(), max_statements);
    if let Some(big) = units.iter().find(|u| u.sqls.len() > max_statements) {
        return Err(WarehouseError::Query {
            context: short_sql(&big.sqls[0]),
            cause: format!(
                "this batch adds more columns to one table than one Data API call can hold \
                 ({} statements, at most {max_statements}); use `connection = \"wire\"` or a smaller batch_size",
                big.sqls.len()
            ).into(),
        });
    }
    // Cut values are recorded after the tables' data, before the positions.
    let at = units.iter().position(|u| u.position).unwrap_or(units.len());
    let cut: Vec<Unit> = extra_rejects
        .iter()
        .map(|r| {
            Ok(Unit {
                sqls: vec![inline(&reject_statement(d, layout, &batch.source, r))?],
                ..Unit::default()
            })
        })
        .collect::<Result<_, WarehouseError>>()?;
    units.splice(at..at, cut);
    Ok(pack(units, max_statements))
}

/// Adds a table's schema statements and its stage unit: one unit when they fit in a call,
/// else the schema first, alone (a stop between the two leaves table and registry agreeing).
fn push_table(units: &mut Vec<Unit>, schema: Vec<String>, data: Unit, max_statements: usize) {
    let ddl = merge_inserts(schema);
    if ddl.len() + data.sqls.len() <= max_statements {
        let shift = ddl.len();
        let mut sqls = ddl;
        sqls.extend(data.sqls);
        let counts = data.counts.into_iter().map(|(i, t)| (i + shift, t)).collect();
        units.push(Unit { sqls, counts, position: false });
        return;
    }
    units.push(Unit { sqls: ddl, counts: Vec::new(), position: false });
    units.push(data);
}

/// Consecutive single-row `INSERT … VALUES (…)` statements into the same columns become one
/// multi-row INSERT (the registry rows of a table's new columns), within the size limit.
fn merge_inserts(sqls: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for sql in sqls {
        let head = |s: &str| s.starts_with("INSERT INTO ").then(|| s.find(" VALUES (")).flatten();
        if let (Some(last), Some(at)) = (out.last_mut(), head(&sql)) {
            if head(last) == Some(at)
                && last[..at] == sql[..at]
                && last.len() + sql.len() - at < MAX_SQL_BYTES
            {
                last.push_str(", ");
                last.push_str(&sql[at + " VALUES ".len()..]);
                continue;
            }
        }
        out.push(sql);
    }
    out
}

fn corrupt(what: &str) -> WarehouseError {
    WarehouseError::Corrupt(format!("Data API batch: {what}"))
}

/// Fills calls in order, starting a new call when the next unit does not fit.
fn pack(units: Vec<Unit>, max_statements: usize) -> Vec<Call> {
    let mut calls: Vec<Call> = Vec::new();
    for unit in units {
        if unit.sqls.is_empty() {
            continue;
        }
        let fits = calls.last().is_some_and(|c| c.sqls.len() + unit.sqls.len() <= max_statements);
        if !fits {
            calls.push(Call::default());
        }
        let Some(call) = calls.last_mut() else { continue };
        let base = call.sqls.len();
        call.counts.extend(unit.counts.into_iter().map(|(i, t)| (base + i, t)));
        call.sqls.extend(unit.sqls);
    }
    calls
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dynashift_core::dialect::Redshift;
    use dynashift_core::schema::Catalog;
    use dynashift_core::Position;

    use super::*;
    use crate::config::Config;
    use crate::planner::Planner;
    use crate::source::RawRecord;

    const CONFIG: &str =
        "[source]\nkind = \"file\"\npath = \"x\"\n[target]\nkind = \"postgres\"\nurl = \"host=h\"\n";

    /// A batch over `tables` tables with a new attribute each, `bad` undecodable records and
    /// records from `shards` shards.
    fn batch(tables: usize, bad: usize, shards: usize) -> Batch {
        let config = Config::parse(CONFIG, Path::new("t.toml")).unwrap();
        let mut planner = Planner::new(config, Catalog::default(), Redshift.limits());
        let mut records = Vec::new();
        for t in 0..tables {
            let line = format!(
                r#"{{"eventName":"INSERT","tableName":"T{t}","dynamodb":{{"ApproximateCreationDateTime":1764000000000,"Keys":{{"id":{{"S":"k"}}}},"NewImage":{{"id":{{"S":"k"}},"a{t}":{{"S":"it's \\ é"}}}}}}}}"#
            );
            records.push(RawRecord {
                data: line.into_bytes(),
                position: Position::new(format!("shard-{}", t % shards), (t + 1).to_string()),
                problem: None,
            });
        }
        for b in 0..bad {
            records.push(RawRecord {
                data: format!("{{not json {b}").into_bytes(),
                position: Position::new(format!("shard-{}", b % shards), (1000 + b).to_string()),
                problem: None,
            });
        }
        planner.prepare(records).batch
    }

    fn calls(b: &Batch) -> Vec<Call> {
        data_api_calls(&Redshift, &Layout::default(), b, &[], |i, _| Ok(format!("COPY stage FROM 'm{i}'")))
            .unwrap()
    }

    #[test]
    fn a_small_batch_is_one_call() {
        let c = calls(&batch(1, 1, 1));
        assert_eq!(c.len(), 1);
        let sql = c[0].sqls.join("\n");
        assert!(sql.contains("COPY stage FROM 'm0'"), "{sql}");
        assert!(!sql.contains("$1"), "{sql}");
        assert_eq!(c[0].counts.len(), 1);
        assert!(c[0].sqls[c[0].counts[0].0].starts_with("SELECT COUNT(*) AS changes"));
    }

    #[test]
    fn large_batches_split_between_stages_with_positions_last() {
        let c = calls(&batch(12, 30, 25));
        assert!(c.len() > 2, "{} calls", c.len());
        for call in &c {
            assert!(call.sqls.len() <= MAX_STATEMENTS);
            let created = call.sqls.iter().filter(|s| s.starts_with("CREATE TEMP TABLE")).count();
            let dropped = call.sqls.iter().filter(|s| s.starts_with("DROP TABLE IF EXISTS")).count();
            assert_eq!(created, dropped, "a stage split across calls");
            for (i, _) in &call.counts {
                assert!(call.sqls[*i].starts_with("SELECT COUNT(*)"));
            }
        }
        let all: Vec<&String> = c.iter().flat_map(|c| &c.sqls).collect();
        let last_data = all.iter().rposition(|s| s.contains("_dynashift_stage")).unwrap();
        let first_position = all.iter().position(|s| s.contains("\"checkpoints\"")).unwrap();
        let first_reject = all.iter().position(|s| s.contains("\"rejects\"")).unwrap();
        assert!(last_data < first_reject && first_reject < first_position);
        assert!(c.last().unwrap().sqls.last().unwrap().contains("\"runs\""));
        let tables: usize = c.iter().map(|c| c.counts.len()).sum();
        assert_eq!(tables, 12);
    }

    #[test]
    fn registry_rows_merge_into_one_insert() {
        let sqls = vec![
            "ALTER TABLE t ADD COLUMN a x".to_string(),
            "INSERT INTO c (p, q) VALUES ('a', 1)".to_string(),
            "INSERT INTO c (p, q) VALUES ('b', 2)".to_string(),
            "INSERT INTO d (p, q) VALUES ('c', 3)".to_string(),
        ];
        assert_eq!(
            merge_inserts(sqls),
            vec![
                "ALTER TABLE t ADD COLUMN a x".to_string(),
                "INSERT INTO c (p, q) VALUES ('a', 1), ('b', 2)".to_string(),
                "INSERT INTO d (p, q) VALUES ('c', 3)".to_string(),
            ]
        );
    }

    #[test]
    fn oversized_statements_are_refused_with_the_reason() {
        let mut b = batch(1, 0, 1);
        b.rejects.push(Reject {
            position: Position::new("s", "1"),
            table: None,
            reason: "malformed".into(),
            raw: vec![b'x'; 120_000],
        });
        let Err(err) = data_api_calls(&Redshift, &Layout::default(), &b, &[], |_, _| Ok(String::new()))
        else {
            panic!("a 120 KB statement was accepted");
        };
        assert!(err.to_string().contains("over the Data API's limit"), "{err}");
    }
}
