//! A staged row's cells packed end to end in one allocation. A batch holds its planned rows
//! until it commits, and an enum of 32 bytes per cell (most of them short text or NULL) was
//! most of that memory: W1's planned rows took 740 bytes each, half again their held changes.
//!
//! Each cell is a tag byte, then for text and binary its length (LEB128) and bytes, for an
//! integer its eight bytes (little-endian), for NULL nothing.

use crate::types::Cell;

const NULL: u8 = 0;
const TEXT: u8 = 1;
const INT: u8 = 2;
const BYTES: u8 = 3;

/// A cell as it is read back from `Cells`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellRef<'a> {
    /// SQL NULL.
    Null,
    /// Text, cast by SQL to its column's type.
    Text(&'a str),
    /// A 64-bit integer, for BIGINT columns.
    Int(i64),
    /// Binary data, for binary columns.
    Bytes(&'a [u8]),
}

impl CellRef<'_> {
    /// The cell's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            CellRef::Null => "NULL",
            CellRef::Text(_) => "text",
            CellRef::Int(_) => "an integer",
            CellRef::Bytes(_) => "binary data",
        }
    }

    /// The same value as an owned `Cell`.
    pub fn to_cell(self) -> Cell {
        match self {
            CellRef::Null => Cell::Null,
            CellRef::Text(t) => Cell::Text(t.into()),
            CellRef::Int(i) => Cell::Int(i),
            CellRef::Bytes(b) => Cell::Bytes(b.to_vec()),
        }
    }
}

impl<'a> From<&'a Cell> for CellRef<'a> {
    fn from(cell: &'a Cell) -> CellRef<'a> {
        match cell {
            Cell::Null => CellRef::Null,
            Cell::Text(t) => CellRef::Text(t),
            Cell::Int(i) => CellRef::Int(*i),
            Cell::Bytes(b) => CellRef::Bytes(b),
        }
    }
}

/// A row's cells in stage order. Shared, not copied, when a batch too large for the
/// warehouse's memory is split into parts.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Cells(std::sync::Arc<[u8]>);

impl std::fmt::Debug for Cells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<C: Into<Cell>> FromIterator<C> for Cells {
    fn from_iter<I: IntoIterator<Item = C>>(cells: I) -> Cells {
        let mut out = Vec::new();
        for cell in cells {
            write_cell(&mut out, CellRef::from(&cell.into()));
        }
        Cells(out.into())
    }
}

impl Cells {
    /// `width` cells: those of `sparse` (pairs of a column index and a cell, sorted by index)
    /// at `slot[index]`, NULL elsewhere. `slot` must map the indices in increasing order.
    pub fn place(sparse: &SparseCells, slot: &[usize], width: usize) -> Cells {
        let mut out = Vec::with_capacity(sparse.0.len() + width);
        let mut next = 0;
        for (index, cell) in sparse.iter() {
            let at = slot[index];
            out.resize(out.len() + (at - next), NULL);
            write_cell(&mut out, cell);
            next = at + 1;
        }
        out.resize(out.len() + width.saturating_sub(next), NULL);
        Cells(out.into())
    }

    /// The cells in stage order.
    pub fn iter(&self) -> CellIter<'_> {
        CellIter { bytes: &self.0 }
    }

    /// The cell at stage position `index` (a walk over the cells before it).
    pub fn get(&self, index: usize) -> Option<CellRef<'_>> {
        self.iter().nth(index)
    }

    /// Number of cells (a walk over all of them).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the row has no cells.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The cells' bytes and the count of references kept with them.
    pub fn heap_bytes(&self) -> usize {
        self.0.len() + 2 * std::mem::size_of::<usize>()
    }
}

/// One row's cells while its table is planned: column index and cell, sorted by index, for
/// the columns its image has (the stage's columns are known only once every row is planned).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SparseCells(Box<[u8]>);

impl SparseCells {
    /// Packs `(column index, cell)` pairs given in any order.
    pub fn new(mut cells: Vec<(usize, Cell)>) -> SparseCells {
        cells.sort_by_key(|(i, _)| *i);
        let mut out = Vec::new();
        for (index, cell) in &cells {
            write_len(&mut out, *index);
            write_cell(&mut out, CellRef::from(cell));
        }
        SparseCells(out.into_boxed_slice())
    }

    /// Column index and cell, by increasing index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, CellRef<'_>)> {
        let mut bytes: &[u8] = &self.0;
        std::iter::from_fn(move || {
            if bytes.is_empty() {
                return None;
            }
            let index = read_len(&mut bytes);
            Some((index, read_cell(&mut bytes)))
        })
    }
}

/// Iterator over a row's cells in stage order (see `Cells::iter`).
pub struct CellIter<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for CellIter<'a> {
    type Item = CellRef<'a>;

    fn next(&mut self) -> Option<CellRef<'a>> {
        (!self.bytes.is_empty()).then(|| read_cell(&mut self.bytes))
    }
}

fn write_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_cell(out: &mut Vec<u8>, cell: CellRef<'_>) {
    match cell {
        CellRef::Null => out.push(NULL),
        CellRef::Text(t) => {
            out.push(TEXT);
            write_len(out, t.len());
            out.extend_from_slice(t.as_bytes());
        }
        CellRef::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        CellRef::Bytes(b) => {
            out.push(BYTES);
            write_len(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

// The bytes read below were written by this module in this process: a malformed one is a bug
// here, never a property of the input, so it panics with that said.

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) =
        bytes.split_at_checked(n).unwrap_or_else(|| panic!("packed cells cut short: a bug in packing"));
    *bytes = rest;
    head
}

fn read_len(bytes: &mut &[u8]) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = take(bytes, 1)[0];
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            return n;
        }
        shift += 7;
    }
}

fn read_cell<'a>(bytes: &mut &'a [u8]) -> CellRef<'a> {
    match take(bytes, 1)[0] {
        NULL => CellRef::Null,
        TEXT => {
            let len = read_len(bytes);
            let text = take(bytes, len);
            CellRef::Text(
                std::str::from_utf8(text).unwrap_or_else(|e| panic!("packed text {e}: a bug in packing")),
            )
        }
        INT => {
            let mut le = [0u8; 8];
            le.copy_from_slice(take(bytes, 8));
            CellRef::Int(i64::from_le_bytes(le))
        }
        BYTES => {
            let len = read_len(bytes);
            CellRef::Bytes(take(bytes, len))
        }
        tag => panic!("packed cell tag {tag}: a bug in packing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cell() -> impl Strategy<Value = Cell> {
        prop_oneof![
            Just(Cell::Null),
            ".{0,300}".prop_map(|s| Cell::Text(s.into())),
            any::<i64>().prop_map(Cell::Int),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Cell::Bytes),
        ]
    }

    proptest! {
        #[test]
        fn cells_read_back_as_written(cells in prop::collection::vec(cell(), 0..40)) {
            let packed: Cells = cells.iter().cloned().collect();
            let back: Vec<Cell> = packed.iter().map(CellRef::to_cell).collect();
            prop_assert_eq!(&back, &cells);
            prop_assert_eq!(packed.len(), cells.len());
            for (i, c) in cells.iter().enumerate() {
                prop_assert_eq!(packed.get(i), Some(CellRef::from(c)));
            }
            prop_assert_eq!(packed.get(cells.len()), None);
        }

        #[test]
        fn sparse_cells_are_placed_in_stage_order(
            present in prop::collection::btree_map(0usize..300, cell(), 0..30),
        ) {
            // The stage holds every column some row used: here, those present and one past each.
            let mut used: Vec<usize> = present.keys().flat_map(|&i| [i, i + 1]).collect();
            used.sort_unstable();
            used.dedup();
            let mut slot = vec![usize::MAX; 302];
            for (pos, &i) in used.iter().enumerate() {
                slot[i] = pos;
            }
            let mut shuffled: Vec<(usize, Cell)> = present.clone().into_iter().collect();
            shuffled.reverse();
            let placed = Cells::place(&SparseCells::new(shuffled), &slot, used.len());
            let expected: Vec<Cell> =
                used.iter().map(|i| present.get(i).cloned().unwrap_or(Cell::Null)).collect();
            prop_assert_eq!(placed.iter().map(CellRef::to_cell).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn packed_cells_are_a_fraction_of_the_enum() {
        let row: Vec<Cell> = (0..20)
            .map(|i| if i % 3 == 0 { Cell::Null } else { Cell::Text(format!("value {i}").into()) })
            .collect();
        let packed: Cells = row.iter().cloned().collect();
        assert!(packed.heap_bytes() * 3 < row.len() * std::mem::size_of::<Cell>(), "{}", packed.heap_bytes());
    }
}
