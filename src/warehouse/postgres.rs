//! The PostgreSQL warehouse: staging through binary `COPY … FROM STDIN`, apply in SQL, one
//! transaction per batch.

use dynashift_core::dialect::Postgres;

use super::pg_apply::{apply_batch, StageFrom};
use super::pg_session::PgSession;
pub use super::pg_session::{InvalidConnectionString, PgSettings};
use super::{Batch, Outcome, Warehouse, WarehouseError};

pub struct PostgresWarehouse {
    session: PgSession,
}

impl PostgresWarehouse {
    /// Prepares the warehouse; the connection is made on first use (and again after a loss).
    pub fn open(settings: PgSettings) -> Result<PostgresWarehouse, WarehouseError> {
        Ok(PostgresWarehouse { session: PgSession::new(settings, "PostgreSQL", &Postgres)? })
    }

    /// The session, for tools and tests (`query_text`).
    pub fn session(&self) -> &PgSession {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut PgSession {
        &mut self.session
    }
}

impl Warehouse for PostgresWarehouse {
    super::pg_session::session_warehouse_methods!();

    fn setup(&mut self) -> Result<(), WarehouseError> {
        self.session.create_control_tables(true)
    }

    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        self.session.with_client(|runtime, dialect, layout, client| {
            runtime.block_on(apply_batch(dialect, client, layout, batch, StageFrom::Connection))
        })
    }
}
