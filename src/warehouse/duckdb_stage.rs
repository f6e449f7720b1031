//! A table plan's staged rows as Arrow record batches, column by column: DuckDB's Appender takes
//! a whole batch per call instead of one call per value, which was most of the staging time.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, LargeBinaryBuilder, LargeStringBuilder, TimestampMicrosecondArray,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;
use dynashift_core::cells::CellRef;
use dynashift_core::change::SEQUENCE_WIDTH;
use dynashift_core::plan::StagedRow;
use dynashift_core::sql::{StageControl, STAGE_CONTROL_COLUMNS};

/// Rows per record batch: large enough to amortise each call, small enough that the copy
/// stays a fraction of the batch's own memory. Text and binary columns use 64-bit offsets, so
/// no size of value or batch overflows them.
pub const ROWS_PER_RECORD_BATCH: usize = 16 * 1024;

/// Bytes of cells per record batch: items near DynamoDB's 400 KB made a batch of 16K rows
/// gigabytes, copied whole next to the rows it came from.
pub const BYTES_PER_RECORD_BATCH: usize = 8 * 1024 * 1024;

/// `rows` cut into record batches of at most `ROWS_PER_RECORD_BATCH` rows and, past its first
/// row, `BYTES_PER_RECORD_BATCH` bytes of keys and cells.
pub fn record_batch_chunks(rows: &[StagedRow]) -> impl Iterator<Item = &[StagedRow]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut end = 0;
        while end < rest.len() && end < ROWS_PER_RECORD_BATCH && (end == 0 || bytes < BYTES_PER_RECORD_BATCH)
        {
            bytes += rest[end].key_text.len() + rest[end].cells.heap_bytes();
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A staged value that does not fit its stage column; the planner never produces one.
    #[error("stage column {column} ({ty}) cannot hold {cell}")]
    CellMismatch { column: String, ty: &'static str, cell: &'static str },
    /// A staged row shorter than the stage; the planner never produces one either.
    #[error("a staged row has no cell for stage column {0}")]
    MissingCell(String),
    #[error("building the stage's record batch: {0}")]
    Arrow(#[source] duckdb::arrow::error::ArrowError),
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
    let optional_text = |f: &dyn Fn(&StagedRow) -> Option<&str>| {
        let mut b = LargeStringBuilder::with_capacity(rows.len(), rows.len() * 8);
        rows.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish()) as ArrayRef
    };
    for control in StageControl::ALL {
        arrays.push(match control {
            StageControl::Key => text(&|r| &r.key_text),
            StageControl::Version => {
                let mut b = Int64Builder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_value(r.version.micros));
                Arc::new(b.finish())
            }
            StageControl::Sequence => {
                use std::fmt::Write as _;
                let mut b = LargeStringBuilder::with_capacity(rows.len(), rows.len() * SEQUENCE_WIDTH);
                for r in rows {
                    // Written straight into the column's buffer; the empty append ends the value.
                    let _ = write!(b, "{}", r.version.padded());
                    b.append_value("");
                }
                Arc::new(b.finish())
            }
            StageControl::Event => text(&|r| r.event.as_str()),
            StageControl::Op => text(&|r| r.op.code()),
            StageControl::Deleted => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                rows.iter().for_each(|r| b.append_value(r.deleted));
                Arc::new(b.finish())
            }
            StageControl::EventIds => optional_text(&|r| r.event_ids.as_deref()),
        });
    }
    arrays.extend(cell_columns(rows, &columns[STAGE_CONTROL_COLUMNS.min(columns.len())..])?);
    for ((name, _), array) in columns.iter().zip(&arrays) {
        fields.push(Field::new(name, array.data_type().clone(), true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(StageError::Arrow)
}

/// The rows as the columns an append to their table takes: the stage's, less `_ddb_op` (every
/// row is an upsert), then `_ddb_synced_at` at `synced_at` (µs since the epoch, UTC, as
/// DuckDB's `CURRENT_TIMESTAMP` stores in a `TIMESTAMP`).
pub fn append_record_batch(
    rows: &[StagedRow],
    columns: &[(String, &'static str)],
    synced_at: i64,
) -> Result<RecordBatch, StageError> {
    let staged = record_batch(rows, columns)?;
    let kept: Vec<usize> = (0..staged.num_columns()).filter(|&i| i != OP_COLUMN).collect();
    let kept = staged.project(&kept).map_err(StageError::Arrow)?;
    let mut fields: Vec<Field> = kept.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays = kept.columns().to_vec();
    fields.push(Field::new("_ddb_synced_at", DataType::Timestamp(TimeUnit::Microsecond, None), false));
    arrays.push(Arc::new(TimestampMicrosecondArray::from(vec![synced_at; rows.len()])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(StageError::Arrow)
}

/// Where `_ddb_op` is among the stage's columns.
const OP_COLUMN: usize = 4;

/// A column being built from the rows' cells.
enum CellBuilder {
    Int(Int64Builder),
    Blob(LargeBinaryBuilder),
    Text(LargeStringBuilder),
}

impl CellBuilder {
    fn new(ty: &str, rows: usize) -> CellBuilder {
        match ty {
            "BIGINT" => CellBuilder::Int(Int64Builder::with_capacity(rows)),
            "BLOB" => CellBuilder::Blob(LargeBinaryBuilder::with_capacity(rows, rows * 8)),
            _ => CellBuilder::Text(LargeStringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    /// Appends `cell`; false when the column cannot hold it.
    fn append(&mut self, cell: CellRef<'_>) -> bool {
        match (self, cell) {
            (CellBuilder::Int(b), CellRef::Int(v)) => b.append_value(v),
            (CellBuilder::Int(b), CellRef::Null) => b.append_null(),
            (CellBuilder::Blob(b), CellRef::Bytes(v)) => b.append_value(v),
            (CellBuilder::Blob(b), CellRef::Null) => b.append_null(),
            (CellBuilder::Text(b), CellRef::Text(v)) => b.append_value(v),
            (CellBuilder::Text(b), CellRef::Null) => b.append_null(),
            _ => return false,
        }
        true
    }

    fn finish(self) -> ArrayRef {
        match self {
            CellBuilder::Int(mut b) => Arc::new(b.finish()),
            CellBuilder::Blob(mut b) => Arc::new(b.finish()),
            CellBuilder::Text(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The staged cells as one array per stage column, each row's packed cells walked once.
fn cell_columns(rows: &[StagedRow], columns: &[(String, &'static str)]) -> Result<Vec<ArrayRef>, StageError> {
    let mut builders: Vec<CellBuilder> =
        columns.iter().map(|(_, ty)| CellBuilder::new(ty, rows.len())).collect();
    for row in rows {
        let mut cells = row.cells.iter();
        for (builder, (name, ty)) in builders.iter_mut().zip(columns) {
            let cell = cells.next().ok_or_else(|| StageError::MissingCell(name.clone()))?;
            if !builder.append(cell) {
                return Err(StageError::CellMismatch { column: name.clone(), ty, cell: cell.kind() });
            }
        }
    }
    Ok(builders.into_iter().map(CellBuilder::finish).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::{DataType, Int64Type};
    use dynashift_core::change::{EventKind, Version};
    use dynashift_core::plan::RowOp;
    use dynashift_core::sql::append_columns;
    use dynashift_core::types::Cell;

    fn row(cells: Vec<Cell>) -> StagedRow {
        let cells = cells.into_iter().collect();
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
        use dynashift_core::dialect::{Dialect, DuckDb};
        let mut cols: Vec<(String, &'static str)> = StageControl::ALL
            .iter()
            .map(|c| (c.name().to_string(), DuckDb.system_type(c.system_type())))
            .collect();
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
    fn record_batches_are_bounded_in_rows_and_bytes() {
        let small: Vec<StagedRow> = (0..40_000).map(|_| row(vec![Cell::Int(1)])).collect();
        let sizes: Vec<usize> = record_batch_chunks(&small).map(<[StagedRow]>::len).collect();
        assert_eq!(sizes, [ROWS_PER_RECORD_BATCH, ROWS_PER_RECORD_BATCH, 40_000 - 2 * ROWS_PER_RECORD_BATCH]);
        let large: Vec<StagedRow> =
            (0..30).map(|_| row(vec![Cell::Text("x".repeat(3 * 1024 * 1024).into())])).collect();
        let sizes: Vec<usize> = record_batch_chunks(&large).map(<[StagedRow]>::len).collect();
        assert_eq!(sizes, [3; 10], "8 MB reached at the third row of 3 MB");
        let huge = vec![row(vec![Cell::Text("x".repeat(20 * 1024 * 1024).into())])];
        assert_eq!(record_batch_chunks(&huge).count(), 1, "a row larger than the bound goes alone");
    }

    #[test]
    fn appended_columns_leave_out_the_op_and_end_with_the_sync_time() {
        assert_eq!(StageControl::ALL[OP_COLUMN], StageControl::Op);
        let rows = vec![row(vec![Cell::Int(5)])];
        let batch = append_record_batch(&rows, &columns(&["BIGINT"]), 42).unwrap();
        let names = append_columns(["amount"]);
        assert_eq!(batch.num_columns(), names.len());
        assert_eq!(
            names,
            [
                "_ddb_key",
                "_ddb_version",
                "_ddb_sequence",
                "_ddb_event",
                "_ddb_deleted",
                "_ddb_event_ids",
                "amount",
                "_ddb_synced_at"
            ]
        );
        assert_eq!(batch.column(6).as_primitive::<Int64Type>().value(0), 5);
        assert_eq!(batch.column(7).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, None));
    }

    #[test]
    fn a_cell_that_does_not_fit_its_column_is_an_error() {
        let e = record_batch(&[row(vec![Cell::Text("x".into())])], &columns(&["BIGINT"])).unwrap_err();
        assert_eq!(e.to_string(), "stage column c0 (BIGINT) cannot hold text");
        let e = record_batch(&[row(vec![])], &columns(&["VARCHAR"])).unwrap_err();
        assert_eq!(e.to_string(), "a staged row has no cell for stage column c0");
    }
}
