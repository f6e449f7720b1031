//! dynashift's pure core: the change model, decoding, reduction, naming, typing, plans and
//! SQL text. No I/O, no async, no database driver: everything here is testable in memory.
#![warn(missing_docs)]

pub mod alarm;
pub mod cells;
pub mod change;
pub mod checkpoint;
pub mod decode;
pub mod dialect;
pub mod held;
pub mod json;
pub mod limits;
pub mod literal;
pub mod naming;
pub mod number;
pub mod pack_json;
pub mod packed;
pub mod plan;
pub mod reduce;
pub mod schedule;
pub mod schema;
pub mod spilled;
pub mod sql;
pub mod streaming_view;
pub mod text;
pub mod typed_json;
pub mod types;
pub mod value;

pub use change::{Change, EventKind, Op, Position, Version};
pub use decode::{decode, DecodeContext, DecodeError};
pub use value::{AttrValue, Item, Text};
