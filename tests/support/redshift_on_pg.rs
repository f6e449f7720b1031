//! Redshift's plan, run by PostgreSQL made to behave like Redshift where it can, and checked
//! against Redshift's documented rules where it cannot.
//!
//! `RedshiftOnPostgres` plans exactly as the Redshift dialect does — its types, casts,
//! functions (`GETDATE()`, `TO_VARBYTE`, `JSON_PARSE`, `FROM_VARBYTE`), collations and
//! limits — and differs only where PostgreSQL has no equivalent: no DISTKEY/SORTKEY, an index
//! on `_ddb_key`, 63-byte names, and `VARBYTE`/`SUPER` as domains without a size. The login
//! used for it cannot read `pg_range`, a catalog table Redshift lacks, so a driver that would
//! look up an unknown type (as it would for Redshift's VARBYTE) fails here as it would there.
//! `CheckedRedshift` runs every batch's real Redshift statements — over the wire and as
//! Data API calls — through `RedshiftRules` before applying it.
#![allow(dead_code)]

use dynashift::warehouse::data_api_calls::data_api_calls;
use dynashift::warehouse::steps::{batch_steps, Step, STAGE};
use dynashift::warehouse::{Batch, Outcome, Status, Warehouse, WarehouseError};
use dynashift_core::dialect::{copy_from_manifest, Dialect, Postgres, Redshift};
use dynashift_core::limits::Limits;
use dynashift_core::schema::{Catalog, SystemType};
use dynashift_core::sql::{
    applied_counts_query, control_tables, counters_update, AppliedCounts, Layout, Param,
};
use dynashift_core::types::ColumnType;

use super::redshift_rules::{assert_conforms, Bind, RedshiftRules, Violation};

pub struct RedshiftOnPostgres;

impl Dialect for RedshiftOnPostgres {
    fn name(&self) -> &'static str {
        "redshift-on-postgres"
    }
    fn limits(&self) -> Limits {
        Limits { max_identifier: Postgres.max_identifier(), ..Redshift.limits() }
    }
    fn column_type(&self, ty: ColumnType) -> String {
        match ty {
            ColumnType::Json => "super".into(),
            ColumnType::Blob => "varbyte".into(),
            other => Redshift.column_type(other),
        }
    }
    fn system_type(&self, ty: SystemType) -> &'static str {
        Redshift.system_type(ty)
    }
    fn text_cast(&self) -> &'static str {
        Redshift.text_cast()
    }
    fn max_text_bytes(&self) -> Option<usize> {
        Redshift.max_text_bytes()
    }
    fn stage_type(&self, ty: ColumnType) -> &'static str {
        Redshift.stage_type(ty)
    }
    fn cast_from_stage(&self, expr: &str, ty: ColumnType) -> String {
        Redshift.cast_from_stage(expr, ty)
    }
    fn json_from_text(&self, expr: &str) -> String {
        Redshift.json_from_text(expr)
    }
    fn bytes_from_hex_param(&self, placeholder: &str) -> Option<String> {
        Redshift.bytes_from_hex_param(placeholder)
    }
    fn now(&self) -> &'static str {
        Redshift.now()
    }
    fn separate_guards(&self) -> bool {
        Redshift.separate_guards()
    }
    fn key_index(&self, schema: &str, table: &str) -> Option<String> {
        Postgres.key_index(schema, table)
    }
}

/// Redshift's types, as PostgreSQL domains (sizes dropped: a domain takes no modifier).
const REDSHIFT_TYPES: &str = "\
    DO $$ BEGIN CREATE DOMAIN varbyte AS bytea; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\
    DO $$ BEGIN CREATE DOMAIN super AS jsonb; EXCEPTION WHEN duplicate_object THEN NULL; END $$;";

/// The login Redshift's plan runs as: no superuser, and no access to `pg_range`.
pub const REDSHIFT_LOGIN: &str = "redshift_like";

/// Prepares database `db` of `server` for `RedshiftOnPostgres`; returns the connection
/// string of the restricted login.
pub fn prepare(server: &super::pg::PgServer, db: &str) -> String {
    server.exec(db, super::data_api::REDSHIFT_ON_POSTGRES);
    server.exec(db, REDSHIFT_TYPES);
    server.exec(
        db,
        &format!(
            "DO $$ BEGIN CREATE ROLE {REDSHIFT_LOGIN} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;\
             GRANT CREATE ON DATABASE \"{db}\" TO {REDSHIFT_LOGIN};\
             REVOKE SELECT ON pg_catalog.pg_range FROM PUBLIC;"
        ),
    );
    server.url(db).replace("user=postgres", &format!("user={REDSHIFT_LOGIN}"))
}

/// A test-only trigger raising Redshift's serialization error (`ERROR: 1023`, SQLSTATE
/// XX000) at the commit of the first two batches (the insert into `_dynashift.runs`); run it
/// after the control tables exist. `public.conflicts` counts the commits tried.
pub const CONFLICTS_AT_COMMIT: &str = "CREATE SEQUENCE public.conflicts; \
         GRANT USAGE ON SEQUENCE public.conflicts TO PUBLIC; \
         CREATE FUNCTION public.raise_conflict() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ \
         BEGIN \
           IF nextval('public.conflicts') <= 2 THEN \
             RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = '1023', \
               DETAIL = 'Serializable isolation violation on table - 100184, transactions forming the cycle are: 1, 2'; \
           END IF; \
           RETURN NULL; \
         END $$; \
         CREATE CONSTRAINT TRIGGER conflict AFTER INSERT ON _dynashift.runs DEFERRABLE INITIALLY DEFERRED \
           FOR EACH ROW EXECUTE FUNCTION public.raise_conflict();";

fn bind(p: &Param) -> Bind {
    match p {
        Param::Null => Bind::Null,
        Param::Text(s) => Bind::Text(s.len()),
        Param::Int(_) => Bind::Int,
        Param::Bytes(_) => Bind::Bytes,
    }
}

const MANIFEST: &str = "s3://stage-bucket/dynashift/run/00000001/0000/manifest.json";
const COPY_ROLE: &str = "arn:aws:iam::123456789012:role/dynashift-copy";

/// The statements Redshift runs for `batch` over the wire, with what they bind.
pub fn wire_statements(layout: &Layout, batch: &Batch) -> Vec<(String, Vec<Bind>)> {
    let d = &Redshift;
    let mut out = Vec::new();
    for step in batch_steps(d, layout, batch) {
        match step {
            Step::Sql(s) | Step::Schema(s) => out.push((s.sql.clone(), s.params.iter().map(bind).collect())),
            Step::Together(statements) => {
                out.extend(statements.iter().map(|s| (s.sql.clone(), s.params.iter().map(bind).collect())))
            }
            Step::LoadStage { columns, .. } => {
                out.push((d.create_stage(STAGE, &columns), Vec::new()));
                let copy = copy_from_manifest(STAGE, &columns, MANIFEST, COPY_ROLE, None).expect("COPY text");
                out.push((copy, Vec::new()));
            }
            Step::CountApplied { index } => {
                out.push((applied_counts_query(d, STAGE), Vec::new()));
                let plan = &batch.tables[index];
                let s = counters_update(
                    d,
                    layout,
                    &plan.source_table,
                    AppliedCounts::default(),
                    plan.expired_kept,
                );
                out.push((s.sql, s.params.iter().map(bind).collect()));
            }
            Step::AppendRows { .. } | Step::AppendStaged { .. } => panic!("Redshift never appends unguarded"),
        }
    }
    out
}

/// A warehouse whose every batch is first written as Redshift SQL — wire statements and Data
/// API calls — and checked against Redshift's rules; a violation fails the test at once.
pub struct CheckedRedshift<W> {
    pub inner: W,
    layout: Layout,
    wire: RedshiftRules,
    calls: RedshiftRules,
}

impl<W: Warehouse> CheckedRedshift<W> {
    pub fn new(inner: W, target_schema: &str) -> CheckedRedshift<W> {
        let layout = Layout { target_schema: target_schema.to_string(), ..Layout::default() };
        CheckedRedshift { inner, layout, wire: RedshiftRules::new(), calls: RedshiftRules::new() }
    }

    /// Statements checked so far.
    pub fn checked(&self) -> usize {
        self.wire.checked + self.calls.checked
    }

    fn check_batch(&mut self, batch: &Batch) -> Vec<Violation> {
        let mut violations = Vec::new();
        for (sql, binds) in wire_statements(&self.layout, batch) {
            violations.extend(self.wire.check(&sql, &binds));
        }
        let calls = data_api_calls(&Redshift, &self.layout, batch, &[], |_, columns| {
            Ok(copy_from_manifest(STAGE, columns, MANIFEST, COPY_ROLE, None).expect("COPY text"))
        });
        // A batch too large for the Data API is refused with a message, not sent.
        for call in calls.unwrap_or_default() {
            violations.extend(self.calls.check_call(&call.sqls));
        }
        violations
    }
}

impl<W: Warehouse> Warehouse for CheckedRedshift<W> {
    fn dialect(&self) -> &dyn Dialect {
        self.inner.dialect()
    }
    fn is_set_up(&mut self) -> Result<bool, WarehouseError> {
        self.inner.is_set_up()
    }

    fn setup(&mut self) -> Result<(), WarehouseError> {
        let mut violations = Vec::new();
        for s in control_tables(&Redshift, &self.layout) {
            let binds: Vec<Bind> = s.params.iter().map(bind).collect();
            violations.extend(self.wire.check(&s.sql, &binds));
            violations.extend(self.calls.check(&s.sql, &binds));
        }
        assert_conforms(&violations);
        self.inner.setup()
    }
    fn load_catalog(&mut self) -> Result<Catalog, WarehouseError> {
        self.inner.load_catalog()
    }
    fn load_checkpoints(
        &mut self,
        source: &str,
    ) -> Result<std::collections::HashMap<String, String>, WarehouseError> {
        self.inner.load_checkpoints(source)
    }
    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        let violations = self.check_batch(batch);
        assert_conforms(&violations);
        self.inner.apply(batch)
    }
    fn describe(&self, batch: &Batch) -> Vec<String> {
        self.inner.describe(batch)
    }
    fn status(&mut self) -> Result<Status, WarehouseError> {
        self.inner.status()
    }
    fn reconnect(&mut self) -> Result<(), WarehouseError> {
        self.inner.reconnect()
    }
}
