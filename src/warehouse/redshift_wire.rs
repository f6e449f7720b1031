//! Redshift over the PostgreSQL wire protocol: temporary IAM credentials for each connection,
//! rows staged in S3 and loaded by `COPY … MANIFEST`, apply in SQL, one transaction per batch.

#[cfg(feature = "test-support")]
use dynashift_core::dialect::Dialect;
use dynashift_core::dialect::Redshift;

use super::pg_apply::{apply_batch, StageFrom};
use super::pg_session::{PgSession, PgSettings};
use super::redshift::{temporary_credentials, RedshiftOptions, S3Loading};
use super::s3_stage::S3Stager;
use super::{Batch, Outcome, Warehouse, WarehouseError};
use crate::aws::{s3_client, sdk_config};

pub struct RedshiftWireWarehouse {
    session: PgSession,
    /// Bulk loading through S3. `None` only where PostgreSQL stands in for Redshift in tests:
    /// rows then go through `COPY … FROM STDIN`, which PostgreSQL has and Redshift has not.
    loading: Option<S3Loading>,
    /// Batches applied, numbering the staged objects.
    batches: u64,
}

impl RedshiftWireWarehouse {
    /// Prepares the warehouse; the AWS clients are built on the session's runtime, where they
    /// are used, and the connection is made on first use.
    pub fn open(
        settings: PgSettings,
        options: RedshiftOptions,
    ) -> Result<RedshiftWireWarehouse, WarehouseError> {
        let session = PgSession::new(settings, "Redshift", &Redshift)?;
        let sdk = session.runtime().block_on(sdk_config(&options.aws));
        let loading = S3Loading {
            stager: S3Stager::new(s3_client(&sdk, &options.aws), options.staging),
            copy_role: options.copy_role,
            s3_region: options.s3_region,
            part_rows: options.part_rows,
        };
        let auth = options.auth;
        let session = session.with_login(Box::new(move |runtime, db_name| {
            runtime.block_on(temporary_credentials(&auth, &sdk, db_name))
        }));
        Ok(RedshiftWireWarehouse { session, loading: Some(loading), batches: 0 })
    }

    /// Runs `dialect`'s plan (Redshift's, adapted to run on PostgreSQL) on a PostgreSQL server,
    /// rows staged over the connection: the tests' stand-in for a cluster.
    #[cfg(feature = "test-support")]
    pub fn on_postgres(
        settings: PgSettings,
        dialect: &'static dyn Dialect,
    ) -> Result<RedshiftWireWarehouse, WarehouseError> {
        let session = PgSession::new(settings, "Redshift", dialect)?;
        Ok(RedshiftWireWarehouse { session, loading: None, batches: 0 })
    }

    /// The session, for tools and tests (`query_text`).
    pub fn session(&self) -> &PgSession {
        &self.session
    }

    pub fn session_mut(&mut self) -> &mut PgSession {
        &mut self.session
    }
}

impl Warehouse for RedshiftWireWarehouse {
    super::pg_session::session_warehouse_methods!();

    fn setup(&mut self) -> Result<(), WarehouseError> {
        // Redshift has no advisory locks; concurrent first starts are not serialised.
        self.session.create_control_tables(false)
    }

    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let handle = self.session.runtime().handle().clone();
        self.batches += 1;
        let prepared = match &self.loading {
            Some(loading) => Some((loading, handle.block_on(loading.prepare(batch, self.batches))?)),
            None => None,
        };
        let (batch, stage_from) = match &prepared {
            Some((loading, (staged, kept))) => {
                (kept.as_ref().unwrap_or(batch), StageFrom::S3(loading, staged))
            }
            None => (batch, StageFrom::Connection),
        };
        let result = self.session.with_client(|runtime, dialect, layout, client| {
            runtime.block_on(apply_batch(dialect, client, layout, batch, stage_from))
        });
        if let Some((loading, (staged, _))) = &prepared {
            handle.block_on(loading.clean_up(staged));
        }
        result
    }
}
