//! dynashift: replicate DynamoDB change streams into DuckDB, PostgreSQL and Redshift.
//!
//! The pure core (`dynashift_core`) decodes, reduces and plans; this crate holds the
//! adapters around it: configuration, sources, warehouses and the run loop.

pub mod aws;
pub mod backfill;
pub mod backoff;
pub mod cause;
pub mod check;
pub mod config;
pub mod flow;
pub mod memory;
pub mod metrics;
pub mod metrics_server;
pub mod pipeline;
pub mod planner;
pub mod progress;
pub mod report;
pub mod run;
pub mod runtime;
pub mod setup;
pub mod size;
pub mod source;
pub mod spill;
pub mod text;
pub mod warehouse;
pub mod watch;

pub use dynashift_core as core;
