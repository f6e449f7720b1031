//! A snapshot load's rows copied straight into their PostgreSQL table.
//!
//! An appended load (`snapshot_load`) is not guarded, so its rows need no stage: one `COPY`
//! in text format puts them in the table, each value read by its column type's own input
//! function, which is what the stage's `CAST`s call. That skips writing and reading the
//! stage, and the conflict check of `INSERT … ON CONFLICT` on every row.
//!
//! An export may list an item twice (in two data files, or in two batches of one file): then
//! the table's key index refuses the copy. It rolls back to its savepoint and the batch's rows
//! of that table go through the stage and `ON CONFLICT DO NOTHING` instead, which keeps the
//! row loaded first.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use dynashift_core::cells::CellRef;
use dynashift_core::dialect::Dialect;
use dynashift_core::plan::StagedRow;
use dynashift_core::sql::{append_columns, Layout};
use futures_util::SinkExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::Transaction;

use super::pg_nul::StorableCells;
use super::pg_sql::{query_error, run_sql};
use super::{Batch, Reject, WarehouseError};

/// The savepoint a copy rolls back to when the key index refuses it.
const SAVEPOINT: &str = "dynashift_append";

/// Bytes of rows gathered before they are sent.
const SEND_BYTES: usize = 256 * 1024;

/// What copying a table plan's rows did.
pub enum Copied {
    /// Every row is in; the rejects record values stored with U+FFFD (`pg_nul`).
    All(Vec<Reject>),
    /// A key was already in the table (or twice in the rows): nothing was copied, and the
    /// transaction is back where it was before.
    KeyTaken,
}

/// Copies table plan `index` of `batch` into its table.
pub async fn copy_rows(
    d: &dyn Dialect,
    tx: &Transaction<'_>,
    layout: &Layout,
    batch: &Batch,
    index: usize,
) -> Result<Copied, WarehouseError> {
    let plan = &batch.tables[index];
    let schema = batch.schema_of(plan)?;
    let names: Vec<String> = append_columns(plan.staged.iter().map(|&i| schema.columns[i].name.as_str()))
        .iter()
        .map(|n| d.quote(n))
        .collect();
    let copy = format!(
        "COPY {} ({}) FROM STDIN",
        d.qualified(&layout.target_schema, &schema.name),
        names.join(", ")
    );
    run_sql(tx, &format!("SAVEPOINT {SAVEPOINT}"), &[]).await?;
    let storable = StorableCells::new(plan, Some(schema));
    let mut rejects = Vec::new();
    match send_rows(tx, &copy, &plan.rows, &storable, &mut rejects).await {
        Ok(()) => {
            run_sql(tx, &format!("RELEASE SAVEPOINT {SAVEPOINT}"), &[]).await?;
            Ok(Copied::All(rejects))
        }
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            run_sql(tx, &format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"), &[]).await?;
            run_sql(tx, &format!("RELEASE SAVEPOINT {SAVEPOINT}"), &[]).await?;
            Ok(Copied::KeyTaken)
        }
        Err(e) => Err(query_error(format!("copying a snapshot load's rows into `{}`", schema.name), e)),
    }
}

async fn send_rows(
    tx: &Transaction<'_>,
    copy: &str,
    rows: &[StagedRow],
    storable: &StorableCells<'_>,
    rejects: &mut Vec<Reject>,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in::<_, Bytes>(copy).await?;
    futures_util::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(SEND_BYTES + 64 * 1024);
    let mut fixed = Vec::new();
    for row in rows {
        storable.fix(row, &mut fixed, rejects);
        write_row(&mut buf, row, &fixed);
        if buf.len() >= SEND_BYTES {
            sink.send(buf.split().freeze()).await?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await?;
    }
    sink.finish().await?;
    Ok(())
}

/// One row in `COPY`'s text format, in `append_columns` order. `_ddb_synced_at` is `now`,
/// which a timestamp's input reads as the transaction's start, as `now()` is.
fn write_row(out: &mut BytesMut, row: &StagedRow, fixed: &[Option<String>]) {
    write_text(out, &row.key_text);
    out.extend_from_slice(b"\t");
    write_shown(out, row.version.micros);
    out.extend_from_slice(b"\t");
    write_shown(out, row.version.padded());
    out.extend_from_slice(b"\t");
    out.extend_from_slice(row.event.as_str().as_bytes());
    out.extend_from_slice(if row.deleted { b"\tt\t" } else { b"\tf\t" });
    match &row.event_ids {
        Some(ids) => write_text(out, ids),
        None => out.extend_from_slice(NULL),
    }
    for (i, cell) in row.cells.iter().enumerate() {
        out.extend_from_slice(b"\t");
        match (fixed.get(i).and_then(Option::as_deref), cell) {
            (Some(text), _) => write_text(out, text),
            (None, CellRef::Null) => out.extend_from_slice(NULL),
            (None, CellRef::Text(text)) => write_text(out, text),
            (None, CellRef::Int(n)) => write_shown(out, n),
            (None, CellRef::Bytes(b)) => write_bytes(out, b),
        }
    }
    out.extend_from_slice(b"\tnow\n");
}

/// `COPY`'s text format for NULL.
const NULL: &[u8] = b"\\N";

/// Text with the characters `COPY`'s text format gives a meaning escaped: backslash, and the
/// delimiters of columns and rows.
fn write_text(out: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A number or padded sequence as its text (no character of it needs escaping).
fn write_shown(out: &mut BytesMut, value: impl std::fmt::Display) {
    // Writing into a `BytesMut` cannot fail.
    let _ = write!(out, "{value}");
}

/// `bytea`'s hex input (`\x…`), its backslash escaped for `COPY`.
fn write_bytes(out: &mut BytesMut, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\\\x");
    for &b in bytes {
        out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynashift_core::change::{EventKind, Version};
    use dynashift_core::plan::RowOp;
    use dynashift_core::types::Cell;

    #[test]
    fn rows_are_written_in_copy_text_format() {
        let row = StagedRow {
            key_text: r#"{"id":{"S":"a\tb"}}"#.into(),
            version: Version::new(7, None),
            event: EventKind::Load,
            op: RowOp::Upsert,
            deleted: false,
            event_ids: None,
            cells: [
                Cell::Text("line\none\\two\r".into()),
                Cell::Null,
                Cell::Int(-42),
                Cell::Bytes(vec![0x00, 0xab]),
                Cell::Text("\\N".into()),
            ]
            .into_iter()
            .collect(),
        };
        let mut out = BytesMut::new();
        write_row(&mut out, &row, &[None, None, None, None, None]);
        let zeros = "0".repeat(dynashift_core::change::SEQUENCE_WIDTH);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!(
                "{{\"id\":{{\"S\":\"a\\\\tb\"}}}}\t7\t{zeros}\tLOAD\tf\t\\N\tline\\none\\\\two\\r\t\\N\t-42\t\\\\x00ab\t\\\\N\tnow\n"
            )
        );
        out.clear();
        write_row(&mut out, &row, &[Some("fixed".into()), None, None, None, None]);
        assert!(std::str::from_utf8(&out).unwrap().contains("\\N\tfixed\t\\N\t-42"), "a replacement wins");
    }
}
