//! A table plan's staged rows as Arrow record batches, column by column: DuckDB's Appender takes
//! a whole batch per call instead of one call per value, which was most of the staging time.

use std::sync::Arc;

use duckdb::arrow::array::{ArrayRef, BooleanBuilder, Int64Builder, LargeBinaryBuilder, LargeStringBuilder};
use duckdb::arrow::datatypes::{Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use dynashift_core::change::SEQUENCE_WIDTH;
use dynashift_core::plan::StagedRow;
use dynashift_core::sql::STAGE_CONTROL_COLUMNS;
use dynashift_core::types::Cell;

/// Rows per record batch: large enough to amortise each call, small enough that the copy
/// stays a fraction of the batch's own memory. Text and binary columns use 64-bit offsets, so
/// no size of value or batch overflows them.
pub const ROWS_PER_RECORD_BATCH: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A staged value that does not fit its stage column; the planner never produces one.
    #[error("stage column {column} ({ty}) cannot hold {cell}")]
    CellMismatch { column: String, ty: &'static str, cell: &'static str },
    /// A staged row shorter than the stage; the planner never produces one either.
    #[error("a staged row has no cell for stage column {0}")]
    MissingCell(String),
    #[error("building the stage's record batch: {0}")]
    Arrow(String),
}

/// The stage's columns: the control columns, then one per staged cell, typed as
/// `stage_columns` gives them (`VARCHAR`, `BIGINT`, `BOOLEAN` or `BLOB`).
pub fn record_batch(
    rows: &[StagedRow],
    columns: &[(String, &'static str)],
) -> Result<RecordBatch, StageError> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    let text = |f: &dyn Fn(&StagedRow) -> &str| {
        let mut b = LargeStringBuilder::with_capacity(rows.len(), rows.len() * 16);
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish()) as ArrayRef
    };
    arrays.push(text(&|r| &r.key_text));
    arrays.push({
        let mut b = Int64Builder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(r.version.micros));
        Arc::new(b.finish())
    });
    arrays.push({
        use std::fmt::Write as _;
        let mut b = LargeStringBuilder::with_capacity(rows.len(), rows.len() * SEQUENCE_WIDTH);
        for r in rows {
            // Written straight into the column's buffer; the empty append ends the value.
            let _ = write!(b, "{}", r.version.padded());
            b.append_value("");
        }
        Arc::new(b.finish()) as ArrayRef
    });
    arrays.push(text(&|r| r.event.as_str()));
    arrays.push(text(&|r| r.op.code()));
    arrays.push({
        let mut b = BooleanBuilder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(r.deleted));
        Arc::new(b.finish())
    });
    let optional_text = |f: &dyn Fn(&StagedRow) -> Option<&str>| {
        let mut b = LargeStringBuilder::with_capacity(rows.len(), rows.len() * 8);
        rows.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish()) as ArrayRef
    };
    arrays.push(optional_text(&|r| r.event_ids.as_deref()));
    for (index, (name, ty)) in columns.iter().skip(STAGE_CONTROL_COLUMNS).enumerate() {
        arrays.push(cell_column(rows, index, name, ty)?);
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
    let mismatch = |cell: Option<&Cell>| match cell {
        None => StageError::MissingCell(name.to_string()),
        Some(cell) => StageError::CellMismatch {
            column: name.to_string(),
            ty,
            cell: match cell {
                Cell::Null => "NULL",
                Cell::Text(_) => "text",
                Cell::Int(_) => "an integer",
                Cell::Bytes(_) => "binary data",
            },
        },
    };
    let cells = rows.iter().map(|r| r.cells.get(index));
    Ok(match ty {
        "BIGINT" => {
            let mut b = Int64Builder::with_capacity(rows.len());
            for c in cells {
                match c {
                    Some(Cell::Int(v)) => b.append_value(*v),
                    Some(Cell::Null) => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        "BLOB" => {
            let mut b = LargeBinaryBuilder::with_capacity(rows.len(), rows.len() * 8);
            for c in cells {
                match c {
                    Some(Cell::Bytes(v)) => b.append_value(v),
                    Some(Cell::Null) => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = LargeStringBuilder::with_capacity(rows.len(), rows.len() * 16);
            for c in cells {
                match c {
                    Some(Cell::Text(v)) => b.append_value(v),
                    Some(Cell::Null) => b.append_null(),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::{DataType, Int64Type};
    use dynashift_core::change::{EventKind, Version};
    use dynashift_core::plan::RowOp;

    fn row(cells: Vec<Cell>) -> StagedRow {
        StagedRow {
            key_text: "k".into(),
            version: Version::new(7, None),
            event: EventKind::Modify,
            op: RowOp::Upsert,
            deleted: false,
            event_ids: None,
            cells,
        }
    }

    fn columns(cells: &[&'static str]) -> Vec<(String, &'static str)> {
        let system = ["VARCHAR", "BIGINT", "VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN", "VARCHAR"];
        let names = [
            "_ddb_key",
            "_ddb_version",
            "_ddb_sequence",
            "_ddb_event",
            "_ddb_op",
            "_ddb_deleted",
            "_ddb_event_ids",
        ];
        let mut cols: Vec<(String, &'static str)> = names.iter().map(|n| n.to_string()).zip(system).collect();
        cols.extend(cells.iter().enumerate().map(|(i, t)| (format!("c{i}"), *t)));
        cols
    }

    #[test]
    fn cells_become_typed_columns_with_nulls() {
        let rows = vec![
            row(vec![Cell::Text("a".into()), Cell::Int(5), Cell::Bytes(vec![1, 2])]),
            row(vec![Cell::Null, Cell::Null, Cell::Null]),
        ];
        let batch = record_batch(&rows, &columns(&["VARCHAR", "BIGINT", "BLOB"])).unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (2, 10));
        assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), 7);
        assert!(batch.column(6).is_null(0), "no eventIDs");
        assert_eq!(batch.column(7).as_string::<i64>().value(0), "a");
        assert_eq!(batch.column(8).as_primitive::<Int64Type>().value(0), 5);
        assert_eq!(batch.column(9).data_type(), &DataType::LargeBinary);
        assert!((7..10).all(|c| batch.column(c).is_null(1)));
    }

    #[test]
    fn a_cell_that_does_not_fit_its_column_is_an_error() {
        let e = record_batch(&[row(vec![Cell::Text("x".into())])], &columns(&["BIGINT"])).unwrap_err();
        assert_eq!(e.to_string(), "stage column c0 (BIGINT) cannot hold text");
        let e = record_batch(&[row(vec![])], &columns(&["VARCHAR"])).unwrap_err();
        assert_eq!(e.to_string(), "a staged row has no cell for stage column c0");
    }
}
