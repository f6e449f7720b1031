//! One batch as one transaction on a PostgreSQL-wire session: the planned steps in order, the
//! stage filled by binary `COPY … FROM STDIN` (PostgreSQL) or by `COPY` from staged S3 objects
//! (Redshift), counters, rejects and positions, then commit.

use dynashift_core::dialect::Dialect;
use dynashift_core::sql::{
    append_statement, applied_counts_query, counters_update, stage_columns, AppliedCounts, Layout,
    StageControl, Statement,
};
use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Transaction};

use super::pg_append::{copy_rows, Copied};
use super::pg_bind::{stage_type, Bound, Value};
use super::pg_nul::StorableCells;
use super::pg_sql::{query_error, run_sql};
use super::redshift::{S3Loading, StagedBatch};
use super::snapshot_load::{appendable, decide_for, load_state_query, table_exists_query, Load, LoadState};
use super::steps::{batch_steps_loading, reject_statement, Step, STAGE};
use super::{Batch, Outcome, Reject, WarehouseError};

/// Where the stage's rows come from.
pub enum StageFrom<'a> {
    /// The batch's rows, sent over the connection.
    Connection,
    /// Objects already staged in S3, loaded by the server.
    S3(&'a S3Loading, &'a StagedBatch),
}

/// Loads plan `index`'s rows; returns the rejects recording values PostgreSQL could not
/// store exactly (see `pg_nul`).
async fn load_stage(
    d: &dyn Dialect,
    tx: &Transaction<'_>,
    batch: &Batch,
    index: usize,
    columns: &[(String, &'static str)],
) -> Result<Vec<Reject>, WarehouseError> {
    run_sql(tx, &d.create_stage(STAGE, columns), &[]).await?;
    let names: Vec<String> = columns.iter().map(|(n, _)| d.quote(n)).collect();
    let copy = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", d.quote(STAGE), names.join(", "));
    let types: Vec<Type> = columns.iter().map(|(_, t)| stage_type(t)).collect();
    let sink = tx.copy_in(copy.as_str()).await.map_err(|e| query_error("starting COPY into the stage", e))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let plan = &batch.tables[index];
    let storable = StorableCells::new(plan, batch.catalog.tables.get(&plan.source_table));
    let mut rejects = Vec::new();
    let mut replaced = Vec::new();
    for row in &plan.rows {
        storable.fix(row, &mut replaced, &mut rejects);
        let sequence = row.version.padded().to_string();
        let mut values: Vec<Bound> = Vec::with_capacity(columns.len());
        values.extend(StageControl::ALL.iter().map(|control| {
            Bound(match control {
                StageControl::Key => Value::Text(&row.key_text),
                StageControl::Version => Value::Int(row.version.micros),
                StageControl::Sequence => Value::Text(&sequence),
                StageControl::Event => Value::Text(row.event.as_str()),
                StageControl::Op => Value::Text(row.op.code()),
                StageControl::Deleted => Value::Bool(row.deleted),
                StageControl::EventIds => row.event_ids.as_deref().map_or(Value::Null, Value::Text),
            })
        }));
        for (cell, fixed) in row.cells.iter().zip(&replaced) {
            values.push(match fixed {
                Some(text) => Bound(Value::Text(text)),
                None => Bound::from(cell),
            });
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&refs).await.map_err(|e| query_error("staging rows", e))?;
    }
    writer.finish().await.map_err(|e| query_error("staging rows", e))?;
    Ok(rejects)
}

/// How each table plan of `batch` goes in (`snapshot_load`). The table is locked against
/// other writers first (`SHARE ROW EXCLUSIVE` conflicts with every `INSERT`, `UPDATE` and
/// `DELETE`, not with reads): a stream run applying to it meanwhile waits for this batch's
/// commit and is then guarded against its rows, or this batch waits for the run's and then
/// finds a change it did not append, and is guarded.
async fn loads(
    d: &dyn Dialect,
    tx: &Transaction<'_>,
    layout: &Layout,
    batch: &Batch,
) -> Result<Vec<Load>, WarehouseError> {
    let mut loads = vec![Load::Guarded; batch.tables.len()];
    for (index, plan) in batch.tables.iter().enumerate() {
        let Some(schema) = batch.catalog.tables.get(&plan.source_table) else { continue };
        if !appendable(batch, plan) {
            continue;
        }
        let context = "looking at a snapshot load's table";
        let one_row = |s: Statement| async move {
            let bound: Vec<Bound> = s.params.iter().map(Bound::from).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
            tx.query_one(s.sql.as_str(), &refs).await.map_err(|e| query_error(context, e))
        };
        let get = |row: &tokio_postgres::Row, i: usize| -> Result<i64, WarehouseError> {
            row.try_get::<_, i64>(i).map_err(|e| query_error(context, e))
        };
        let exists = get(&one_row(table_exists_query(layout, schema)).await?, 0)? > 0;
        if exists {
            let table = d.qualified(&layout.target_schema, &schema.name);
            run_sql(tx, &format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"), &[]).await?;
        }
        let row = one_row(load_state_query(d, layout, batch, schema, exists)).await?;
        let appended: Option<String> = row.try_get(1).map_err(|e| query_error(context, e))?;
        loads[index] = decide_for(
            plan,
            LoadState {
                changes_applied: get(&row, 0)?,
                appended: appended.and_then(|t| t.parse().ok()),
                tombstone: get(&row, 2)? > 0,
                any_row: get(&row, 3)? > 0,
            },
        );
    }
    Ok(loads)
}

/// Runs the unguarded `INSERT` of table plan `index`'s stage (`append_statement`); returns
/// the rows it inserted. Rows it skips had keys already in the table.
async fn append_staged(
    tx: &Transaction<'_>,
    batch: &Batch,
    index: usize,
    insert: &Statement,
) -> Result<u64, WarehouseError> {
    let plan = &batch.tables[index];
    // `execute`, not `run_sql`: a statement without parameters goes there as a simple query,
    // which reports no row count.
    let bound: Vec<Bound> = insert.params.iter().map(Bound::from).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    let inserted = tx
        .execute(insert.sql.as_str(), &refs)
        .await
        .map_err(|e| query_error("appending a snapshot load's rows", e))?;
    let skipped = (plan.rows.len() as u64).saturating_sub(inserted);
    if skipped > 0 {
        tracing::warn!(
            table = %plan.source_table,
            rows = skipped,
            "the export listed some items more than once; each key keeps the row loaded first"
        );
    }
    Ok(inserted)
}

/// Runs `batch` as one transaction on `client`.
pub async fn apply_batch(
    d: &dyn Dialect,
    client: &mut Client,
    layout: &Layout,
    batch: &Batch,
    stage_from: StageFrom<'_>,
) -> Result<Outcome, WarehouseError> {
    let tx = client.transaction().await.map_err(|e| query_error("starting a transaction", e))?;
    for setting in d.batch_settings() {
        run_sql(&tx, setting, &[]).await?;
    }
    let mut outcome = Outcome::default();
    let mut unstorable = Vec::new();
    let loads = match stage_from {
        StageFrom::Connection if d.name() == "postgres" => loads(d, &tx, layout, batch).await?,
        _ => Vec::new(),
    };
    let direct = matches!(stage_from, StageFrom::Connection);
    for step in batch_steps_loading(d, layout, batch, &loads, direct) {
        match step {
            Step::Sql(s) | Step::Schema(s) => {
                run_sql(&tx, &s.sql, &s.params).await?;
            }
            Step::Together(statements) => {
                for s in statements {
                    run_sql(&tx, &s.sql, &s.params).await?;
                }
            }
            Step::LoadStage { index, columns } => match stage_from {
                StageFrom::S3(loading, staged) => {
                    run_sql(&tx, &d.create_stage(STAGE, &columns), &[]).await?;
                    run_sql(&tx, &loading.copy_statement(staged, index, STAGE, &columns)?, &[]).await?;
                }
                StageFrom::Connection => unstorable.extend(load_stage(d, &tx, batch, index, &columns).await?),
            },
            Step::CountApplied { index } => {
                let plan = &batch.tables[index];
                let row = tx
                    .query_one(applied_counts_query(d, STAGE).as_str(), &[])
                    .await
                    .map_err(|e| query_error("counting applied changes", e))?;
                let get = |i: usize| -> Result<i64, WarehouseError> {
                    row.try_get::<_, i64>(i).map_err(|e| query_error("counting applied changes", e))
                };
                let counts = AppliedCounts {
                    changes: get(0)?,
                    deletes: get(1)?,
                    expired: get(2)?,
                    newest_version: get(3)?,
                };
                let s = counters_update(d, layout, &plan.source_table, counts, plan.expired_kept);
                run_sql(&tx, &s.sql, &s.params).await?;
                *outcome.applied.entry(plan.source_table.clone()).or_default() += counts.changes as u64;
            }
            Step::AppendStaged { index, insert } => {
                let inserted = append_staged(&tx, batch, index, &insert).await?;
                *outcome.applied.entry(batch.tables[index].source_table.clone()).or_default() += inserted;
            }
            Step::AppendRows { index } => {
                let plan = &batch.tables[index];
                let applied = match copy_rows(d, &tx, layout, batch, index).await? {
                    Copied::All(rejects) => {
                        unstorable.extend(rejects);
                        plan.rows.len() as u64
                    }
                    Copied::KeyTaken => {
                        let schema = batch.schema_of(plan)?;
                        let columns = stage_columns(d, schema, plan);
                        unstorable.extend(load_stage(d, &tx, batch, index, &columns).await?);
                        let insert = append_statement(d, layout, schema, plan, STAGE);
                        let inserted = append_staged(&tx, batch, index, &insert).await?;
                        run_sql(&tx, &d.drop_stage(STAGE), &[]).await?;
                        inserted
                    }
                };
                *outcome.applied.entry(plan.source_table.clone()).or_default() += applied;
            }
        }
    }
    let staged_rejects = match stage_from {
        StageFrom::S3(_, staged) => staged.rejects.as_slice(),
        StageFrom::Connection => &[],
    };
    for r in staged_rejects.iter().chain(&unstorable) {
        let s = reject_statement(d, layout, &batch.source, r);
        run_sql(&tx, &s.sql, &s.params).await?;
    }
    tx.commit().await.map_err(|e| query_error("committing the batch", e))?;
    Ok(outcome)
}
