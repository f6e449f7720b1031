//! A table plan's staged rows as Arrow record batches, column by column: DuckDB's Appender takes
//! a whole batch per call instead of one call per value, which was most of the staging time.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, BinaryBuilder, BooleanBuilder, Int64Builder, StringBuilder};
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use dynashift_core::plan::StagedRow;
use dynashift_core::types::Cell;

/// Rows per record batch: large enough to amortise each call, small enough that the copy
/// stays a fraction of the batch's own memory.
pub const ROWS_PER_RECORD_BATCH: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A staged value that does not fit its stage column; the planner never produces one.
    #[error("stage column {column} ({ty}) cannot hold a {cell} value")]
    CellMismatch { column: String, ty: &'static str, cell: &'static str },
    #[error("building the stage's record batch: {0}")]
    Arrow(String),
}

/// The stage's columns: the six system columns, then one per staged cell, typed as
/// `stage_columns` gives them (`VARCHAR`, `BIGINT`, `BOOLEAN` or `BLOB`).
pub fn record_batch(
    rows: &[StagedRow],
    columns: &[(String, &'static str)],
) -> Result<RecordBatch, StageError> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    let text = |f: &dyn Fn(&StagedRow) -> &str| {
        let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish()) as ArrayRef
    };
    arrays.push(text(&|r| &r.key_text));
    arrays.push({
        let mut b = Int64Builder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(r.version.micros));
        Arc::new(b.finish())
    });
    arrays.push(text(&|r| &r.version.sequence));
    arrays.push(text(&|r| r.event.as_str()));
    arrays.push(text(&|r| r.op.code()));
    arrays.push({
        let mut b = BooleanBuilder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(r.deleted));
        Arc::new(b.finish())
    });
    for (i, (name, ty)) in columns.iter().enumerate().skip(6) {
        arrays.push(cell_column(rows, i - 6, name, ty)?);
    }
    for ((name, _), array) in columns.iter().zip(&arrays) {
        fields.push(Field::new(name, array.data_type().clone(), true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| StageError::Arrow(e.to_string()))
}

fn cell_column(
    rows: &[StagedRow],
    index: usize,
    name: &str,
    ty: &'static str,
) -> Result<ArrayRef, StageError> {
    let mismatch = |cell: &Cell| StageError::CellMismatch {
        column: name.to_string(),
        ty,
        cell: match cell {
            Cell::Null => "NULL",
            Cell::Text(_) => "text",
            Cell::Int(_) => "integer",
            Cell::Bytes(_) => "binary",
        },
    };
    let cells = rows.iter().map(|r| &r.cells[index]);
    Ok(match ty {
        "BIGINT" => {
            let mut b = Int64Builder::with_capacity(rows.len());
            for c in cells {
                match c {
                    Cell::Int(v) => b.append_value(*v),
                    Cell::Null => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        "BLOB" => {
            let mut b = BinaryBuilder::with_capacity(rows.len(), rows.len() * 8);
            for c in cells {
                match c {
                    Cell::Bytes(v) => b.append_value(v),
                    Cell::Null => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
            for c in cells {
                match c {
                    Cell::Text(v) => b.append_value(v),
                    Cell::Null => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
    })
}
