//! A batch as an ordered list of steps: SQL statements and stage loads. Every driver runs
//! the same steps inside one transaction; `plan` prints them.

use dynashift_core::dialect::Dialect;
use dynashift_core::sql::{
    append_statement, applied_counts_query, apply_statements, counters_update, schema_changes, stage_columns,
    AppliedCounts, Layout, Param, Statement,
};

use dynashift_core::value::hex_encode;

use super::s3_stage::cut_at_char_boundary;

use super::snapshot_load::{appended_source, Load};
use super::{Batch, Reject};

/// Name of the per-table staging table (session-local).
pub const STAGE: &str = "_dynashift_stage";

pub enum Step {
    Sql(Statement),
    /// Statements that must commit together even where a batch spans several transactions
    /// (the Data API's calls): a position's DELETE and INSERT.
    Together(Vec<Statement>),
    /// DDL and the registry rows describing it: they must commit together.
    Schema(Statement),
    /// Create the stage for table plan `index` and bulk-load its rows.
    LoadStage {
        index: usize,
        columns: Vec<(String, &'static str)>,
    },
    /// Add the surviving stage rows to the table's applied count.
    CountApplied {
        index: usize,
    },
    /// Append table plan `index`'s rows straight to its table through the driver's own bulk
    /// path, unguarded (`snapshot_load`). Its counts follow as SQL.
    AppendRows {
        index: usize,
    },
    /// The unguarded `INSERT` of table plan `index`'s stage (`append_statement`); rows it
    /// skips had keys already in the table.
    AppendStaged {
        index: usize,
        insert: Statement,
    },
}

pub fn batch_steps(d: &dyn Dialect, layout: &Layout, batch: &Batch) -> Vec<Step> {
    batch_steps_loading(d, layout, batch, &[], false)
}

/// The steps, each table plan loaded as `loads[index]` says (guarded where it says nothing):
/// an appended one through `Step::AppendRows` when the driver appends `direct`ly, else
/// through its stage and one `INSERT`.
pub fn batch_steps_loading(
    d: &dyn Dialect,
    layout: &Layout,
    batch: &Batch,
    loads: &[Load],
    direct: bool,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let control = |t: &str| d.qualified(&layout.control_schema, t);
    for (index, plan) in batch.tables.iter().enumerate() {
        let Some(schema) = batch.catalog.tables.get(&plan.source_table) else { continue };
        steps.extend(schema_changes(d, layout, schema, plan).into_iter().map(Step::Schema));
        if plan.rows.is_empty() {
            if plan.expired_kept > 0 {
                let counts = AppliedCounts::default();
                steps.push(Step::Sql(counters_update(
                    d,
                    layout,
                    &plan.source_table,
                    counts,
                    plan.expired_kept,
                )));
            }
            continue;
        }
        if let Some(Load::Appended { before }) = loads.get(index) {
            if direct {
                steps.push(Step::AppendRows { index });
            } else {
                steps.push(Step::LoadStage { index, columns: stage_columns(d, schema, plan) });
                steps.push(Step::AppendStaged {
                    index,
                    insert: append_statement(d, layout, schema, plan, STAGE),
                });
                steps.push(Step::Sql(Statement::new(d.drop_stage(STAGE))));
            }
            let rows = plan.rows.len() as u64;
            let counts = AppliedCounts {
                changes: rows as i64,
                deletes: 0,
                expired: 0,
                newest_version: plan.rows.iter().map(|r| r.version.micros).max().unwrap_or(0),
            };
            steps.push(Step::Sql(counters_update(d, layout, &plan.source_table, counts, plan.expired_kept)));
            let appended = appended_source(&batch.source);
            steps.push(checkpoint_step(
                d,
                layout,
                &appended,
                &plan.source_table,
                &(before + rows).to_string(),
            ));
            continue;
        }
        if let Some(lock) = d.lock_before_guards(&d.qualified(&layout.target_schema, &schema.name)) {
            steps.push(Step::Sql(Statement::new(lock)));
        }
        steps.push(Step::LoadStage { index, columns: stage_columns(d, schema, plan) });
        if let Some(analyze) = d.analyze_stage(STAGE) {
            steps.push(Step::Sql(Statement::new(analyze)));
        }
        steps.extend(apply_statements(d, layout, schema, plan, STAGE).into_iter().map(Step::Sql));
        steps.push(Step::CountApplied { index });
        steps.push(Step::Sql(Statement::new(d.drop_stage(STAGE))));
    }
    for r in &batch.rejects {
        steps.push(Step::Sql(reject_statement(d, layout, &batch.source, r)));
    }
    // Marks before positions: where a batch spans several transactions (the Data API), a mark
    // deleted with a position's move must not outlive a stop between them (it would count
    // past the new position), while a new mark only speaks of data written before it.
    let source = super::marks_source(&batch.source);
    for marks in batch.table_marks.chunks(MARKS_PER_STATEMENT) {
        steps.push(marks_step(d, layout, &source, marks));
    }
    for p in &batch.checkpoints {
        steps.push(checkpoint_step(d, layout, &batch.source, &p.shard, &p.sequence));
    }
    if !batch.applied_at.is_empty() {
        let source = super::applies_source(&batch.source);
        for (table, at) in &batch.applied_at {
            steps.push(checkpoint_step(d, layout, &source, table, &at.to_string()));
        }
    }
    let held = super::held_source(&batch.source);
    for (table, text) in &batch.held {
        steps.push(checkpoint_step(d, layout, &held, table, text));
    }
    let behind = super::behind_source(&batch.source);
    for (shard, text) in &batch.shard_behind {
        steps.push(checkpoint_step(d, layout, &behind, shard, text));
    }
    steps.push(Step::Sql(Statement::with(
        format!(
            "INSERT INTO {} (committed_at, records, changes, rejects, applied) VALUES ({}, {}, 0)",
            control("runs"),
            d.now(),
            d.params(1, 3)
        ),
        vec![
            Param::Int(batch.records as i64),
            Param::Int(batch.changes as i64),
            Param::Int(batch.rejects.len() as i64),
        ],
    )));
    steps
}

/// Replaces the checkpoint of `source`'s `shard` with `sequence` (`PRUNED`: removes it).
fn checkpoint_step(d: &dyn Dialect, layout: &Layout, source: &str, shard: &str, sequence: &str) -> Step {
    let control = d.qualified(&layout.control_schema, "checkpoints");
    let key = || vec![Param::Text(source.to_string()), Param::Text(shard.to_string())];
    let mut together = vec![Statement::with(
        format!("DELETE FROM {control} WHERE source = {} AND shard = {}", d.param(1), d.param(2)),
        key(),
    )];
    if sequence != dynashift_core::checkpoint::PRUNED {
        let mut params = key();
        params.push(Param::Text(sequence.to_string()));
        together.push(Statement::with(
            format!(
                "INSERT INTO {control} (source, shard, sequence, updated_at) VALUES ({}, {})",
                d.params(1, 3),
                d.now()
            ),
            params,
        ));
    }
    Step::Together(together)
}

/// Table marks written by one DELETE and one INSERT: a batch may move a mark on every shard a
/// held table pins, for each table it applies.
const MARKS_PER_STATEMENT: usize = 64;

/// Replaces the rows of `marks` (kept under `source`) with their new positions; a `PRUNED`
/// mark is only removed.
fn marks_step(d: &dyn Dialect, layout: &Layout, source: &str, marks: &[super::TableMark]) -> Step {
    let control = d.qualified(&layout.control_schema, "checkpoints");
    let keys: Vec<String> = marks.iter().map(|m| super::mark_key(&m.table, &m.position.shard)).collect();
    let mut params = vec![Param::Text(source.to_string())];
    params.extend(keys.iter().map(|k| Param::Text(k.clone())));
    let list: Vec<String> = (2..=keys.len() + 1).map(|i| d.param(i)).collect();
    let mut together = vec![Statement::with(
        format!("DELETE FROM {control} WHERE source = {} AND shard IN ({})", d.param(1), list.join(", ")),
        params,
    )];
    let kept: Vec<(&String, &super::TableMark)> = keys
        .iter()
        .zip(marks)
        .filter(|(_, m)| &*m.position.sequence != dynashift_core::checkpoint::PRUNED)
        .collect();
    if !kept.is_empty() {
        let mut params = Vec::with_capacity(kept.len() * 3);
        let mut rows = Vec::with_capacity(kept.len());
        for (i, (key, mark)) in kept.into_iter().enumerate() {
            rows.push(format!("({}, {})", d.params(i * 3 + 1, 3), d.now()));
            params.push(Param::Text(source.to_string()));
            params.push(Param::Text(key.clone()));
            params.push(Param::Text(mark.position.sequence.to_string()));
        }
        together.push(Statement::with(
            format!("INSERT INTO {control} (source, shard, sequence, updated_at) VALUES {}", rows.join(", ")),
            params,
        ));
    }
    Step::Together(together)
}

/// Records one reject: raw text, and raw bytes too when they are not UTF-8.
pub fn reject_statement(d: &dyn Dialect, layout: &Layout, source: &str, r: &Reject) -> Statement {
    // Raw bytes that are not UTF-8, or hold U+0000 (which PostgreSQL's text cannot), are kept
    // whole in raw_bytes; raw_text then shows them with replacement characters.
    let bytes_expr = d.bytes_from_hex_param(&d.param(7));
    let (mut text, mut bytes) = match std::str::from_utf8(&r.raw) {
        Ok(s) if !s.contains('\0') => (s.to_string(), Param::Null),
        _ => {
            let bytes = match bytes_expr {
                Some(_) => Param::Text(hex_encode(&r.raw)),
                None => Param::Bytes(r.raw.clone()),
            };
            (String::from_utf8_lossy(&r.raw).replace('\0', "\u{FFFD}"), bytes)
        }
    };
    let mut table = r.table.clone();
    // The last resort where text columns are bounded (Redshift): a record too large for its
    // row is cut, with a note, rather than failing the batch on every retry. The Redshift
    // targets keep such records whole in S3 before they get here.
    if let Some(max) = d.max_text_bytes() {
        if text.len() > max {
            let note = format!(" … (cut here: the record is {} bytes)", r.raw.len());
            text = format!("{}{note}", cut_at_char_boundary(&text, max.saturating_sub(note.len())));
        }
        if matches!(&bytes, Param::Text(hex) if hex.len() > max) {
            bytes = Param::Null;
        }
        if let Some(t) = table.as_mut().filter(|t| t.len() > max) {
            *t = cut_at_char_boundary(t, max).to_string();
        }
    }
    Statement::with(
        format!(
            "INSERT INTO {} (source, shard, sequence, table_name, reason, raw_text, raw_bytes, rejected_at) \
             VALUES ({}, {}, {})",
            d.qualified(&layout.control_schema, "rejects"),
            d.params(1, 6),
            bytes_expr.unwrap_or_else(|| d.param(7)),
            d.now()
        ),
        vec![
            Param::Text(source.to_string()),
            Param::Text(r.position.shard.to_string()),
            Param::Text(r.position.sequence.to_string()),
            table.map(Param::Text).unwrap_or(Param::Null),
            Param::Text(r.reason.clone()),
            Param::Text(text),
            bytes,
        ],
    )
}

/// The whole transaction as reviewable text.
pub fn describe_transaction(d: &dyn Dialect, layout: &Layout, batch: &Batch) -> Vec<String> {
    let mut out = vec!["BEGIN TRANSACTION;".to_string()];
    out.extend(describe(d, layout, batch));
    out.push("COMMIT;".into());
    out
}

/// The steps as reviewable text.
pub fn describe(d: &dyn Dialect, layout: &Layout, batch: &Batch) -> Vec<String> {
    batch_steps(d, layout, batch)
        .into_iter()
        .map(|step| match step {
            Step::Sql(s) | Step::Schema(s) => s.to_string(),
            Step::Together(statements) => {
                statements.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("\n")
            }
            Step::LoadStage { index, columns } => {
                let cols: Vec<(String, &'static str)> = columns;
                format!(
                    "{};\n-- load {} staged rows of {} into {}",
                    d.create_stage(STAGE, &cols),
                    batch.tables[index].rows.len(),
                    batch.tables[index].source_table,
                    STAGE
                )
            }
            Step::AppendStaged { insert, .. } => insert.to_string(),
            Step::AppendRows { index } => format!(
                "-- append {} rows of {} to its table",
                batch.tables[index].rows.len(),
                batch.tables[index].source_table
            ),
            Step::CountApplied { index } => format!(
                "{};\n-- then: {}",
                applied_counts_query(d, STAGE),
                counters_update(d, layout, &batch.tables[index].source_table, AppliedCounts::default(), 0)
                    .sql
            ),
        })
        .collect()
}
