//! Redshift through the Data API, for users who cannot reach the cluster's port: statements
//! go over HTTPS (`BatchExecuteStatement`, `ExecuteStatement`), rows are staged in S3 and
//! loaded by `COPY`, exactly as on the wire connection.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_redshiftdata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_redshiftdata::operation::describe_statement::DescribeStatementOutput;
use aws_sdk_redshiftdata::types::{Field as DataField, StatusString};
use aws_sdk_redshiftdata::Client;
use dynashift_core::dialect::{copy_from_manifest, Dialect, Redshift};
use dynashift_core::literal::{inline_params, redshift_literal};
use dynashift_core::schema::Catalog;
use dynashift_core::sql::{control_tables, Layout, Param};

use super::data_api_calls::{data_api_calls, inline, Call};
use super::redshift::{is_serialization_conflict, S3Loading};
use super::registry::{self, Field, Query};
use super::s3_stage::S3Stager;
use super::steps::STAGE;
use super::{Batch, Cause, Outcome, Status, Warehouse, WarehouseError};
use crate::aws::{s3_client, sdk_config, sdk_message, AwsSettings};
use crate::backoff::Backoff;

/// Looks at one statement's status before giving up on it for now.
const DESCRIBE_ATTEMPTS: u32 = 8;
/// Sends of one call before its failure stops the batch.
const CALL_ATTEMPTS: u32 = 6;
/// How long a cancelled statement may take to end.
const CANCEL_WAIT: Duration = Duration::from_secs(120);

/// Where the Data API runs statements, and as whom.
#[derive(Debug, Clone)]
pub struct DataApiTarget {
    pub database: String,
    /// A provisioned cluster, or else…
    pub cluster_identifier: Option<String>,
    /// …a Redshift Serverless workgroup.
    pub workgroup: Option<String>,
    /// Cluster only: temporary credentials for this database user.
    pub db_user: Option<String>,
    /// A Secrets Manager secret holding the login, instead of temporary credentials.
    pub secret_arn: Option<String>,
    pub schema: String,
    /// How long one call may run before it is cancelled and retried.
    pub statement_timeout: Duration,
}

/// Everything the Data API target needs.
#[derive(Debug, Clone)]
pub struct DataApiOptions {
    pub target: DataApiTarget,
    pub aws: AwsSettings,
    /// Endpoint of the Data API alone, when it is not `aws.endpoint_url`.
    pub data_api_endpoint_url: Option<String>,
    pub staging: super::s3_stage::S3Location,
    pub copy_role: String,
    pub s3_region: Option<String>,
    pub part_rows: usize,
}

pub struct DataApiWarehouse {
    runtime: tokio::runtime::Runtime,
    client: Client,
    target: DataApiTarget,
    layout: Layout,
    loading: S3Loading,
    batches: u64,
}

/// A failed Data API call: throttling, busy clusters and network trouble are worth a retry;
/// a refused request (validation, access, unknown cluster) is not.
fn api_error<E, R>(what: &str, e: SdkError<E, R>) -> WarehouseError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let context = what.to_string();
    let retry = matches!(
        e.as_service_error().and_then(|s| s.code()),
        Some("ThrottlingException" | "ActiveStatementsExceededException" | "ActiveSessionsExceededException")
            | None
    );
    let cause = Cause::with_message(sdk_message(&e), e);
    if retry {
        WarehouseError::Unavailable { context, cause }
    } else {
        WarehouseError::Query { context, cause }
    }
}

/// Whether a statement failed for a relation or schema that does not exist (and not, say, a
/// database or user that does not).
fn is_missing_relation(message: &str) -> bool {
    ["relation \"", "schema \""]
        .iter()
        .any(|what| message.find(what).is_some_and(|at| message[at..].contains("does not exist")))
}

fn field(f: &DataField) -> Field {
    match f {
        DataField::LongValue(n) => Field::Int(*n),
        DataField::BooleanValue(b) => Field::Bool(*b),
        DataField::StringValue(s) => Field::Text(s.clone()),
        DataField::DoubleValue(d) => Field::Text(d.to_string()),
        // As hex, as VARBYTE prints: bytes that are not UTF-8 (a record that is not JSON) stay
        // exact, where a lossy conversion would replace them.
        DataField::BlobValue(b) => Field::Text(dynashift_core::value::hex_encode(b.as_ref())),
        _ => Field::Null,
    }
}

impl DataApiWarehouse {
    pub fn open(options: DataApiOptions) -> Result<DataApiWarehouse, WarehouseError> {
        let runtime = crate::runtime::background("dynashift-data-api")
            .map_err(|e| WarehouseError::Open { what: "the Data API runtime".into(), cause: Cause::of(e) })?;
        let sdk = runtime.block_on(sdk_config(&options.aws));
        let mut config = aws_sdk_redshiftdata::config::Builder::from(&sdk);
        if let Some(url) = &options.data_api_endpoint_url {
            config = config.endpoint_url(url);
        }
        let client = Client::from_conf(config.build());
        let loading = S3Loading {
            stager: S3Stager::new(s3_client(&sdk, &options.aws), options.staging),
            copy_role: options.copy_role,
            s3_region: options.s3_region,
            part_rows: options.part_rows,
        };
        let layout = Layout { target_schema: options.target.schema.clone(), ..Layout::default() };
        Ok(DataApiWarehouse { runtime, client, target: options.target, layout, loading, batches: 0 })
    }

    fn what(&self) -> String {
        match (&self.target.cluster_identifier, &self.target.workgroup) {
            (Some(c), _) => format!("Redshift cluster {c} (Data API)"),
            (None, Some(w)) => format!("Redshift Serverless workgroup {w} (Data API)"),
            (None, None) => "Redshift (Data API)".into(),
        }
    }

    /// Runs `sqls` as one transaction; the rows of the statements at `reads`.
    fn run_call(&self, sqls: &[String], reads: &[usize]) -> Result<Vec<Vec<Vec<Field>>>, WarehouseError> {
        let t = &self.target;
        let what = self.what();
        self.runtime.block_on(async {
            let id = if sqls.len() == 1 {
                Some(self.execute_statement(&sqls[0]).await?)
            } else {
                let out = self
                    .client
                    .batch_execute_statement()
                    .set_sqls(Some(sqls.to_vec()))
                    .database(&t.database)
                    .set_cluster_identifier(t.cluster_identifier.clone())
                    .set_workgroup_name(t.workgroup.clone())
                    .set_db_user(t.db_user.clone())
                    .set_secret_arn(t.secret_arn.clone())
                    .send()
                    .await
                    .map_err(|e| api_error(&format!("BatchExecuteStatement on {what}"), e))?;
                out.id().map(str::to_string)
            };
            let id = id.ok_or_else(|| WarehouseError::Corrupt(format!("{what} returned no statement id")))?;
            let sub_ids = self.wait(&id, sqls).await?;
            let mut results = Vec::new();
            for &i in reads {
                // A lone statement's result is under its own id; a batch's under `id:n`.
                let result_id = if sqls.len() == 1 {
                    id.clone()
                } else {
                    sub_ids.get(i).cloned().ok_or_else(|| {
                        WarehouseError::Corrupt(format!("{what} reported no sub-statement {} of {id}", i + 1))
                    })?
                };
                results.push(self.result(&result_id).await?);
            }
            Ok(results)
        })
    }

    /// Sends `sql` as one `ExecuteStatement`; its statement id.
    async fn execute_statement(&self, sql: &str) -> Result<String, WarehouseError> {
        let t = &self.target;
        let what = self.what();
        let out = self
            .client
            .execute_statement()
            .sql(sql)
            .database(&t.database)
            .set_cluster_identifier(t.cluster_identifier.clone())
            .set_workgroup_name(t.workgroup.clone())
            .set_db_user(t.db_user.clone())
            .set_secret_arn(t.secret_arn.clone())
            .send()
            .await
            .map_err(|e| api_error(&format!("ExecuteStatement on {what}"), e))?;
        out.id()
            .map(str::to_string)
            .ok_or_else(|| WarehouseError::Corrupt(format!("{what} returned no statement id")))
    }

    /// The column names of `sql`'s result (run as a call of its own); `None` when a relation
    /// it reads does not exist.
    pub fn result_columns(&self, sql: &str) -> Result<Option<Vec<String>>, WarehouseError> {
        let outcome = self.runtime.block_on(async {
            let id = self.execute_statement(sql).await?;
            self.wait(&id, &[sql.to_string()]).await?;
            let page = self
                .client
                .get_statement_result()
                .id(&id)
                .send()
                .await
                .map_err(|e| api_error("GetStatementResult", e))?;
            Ok(page.column_metadata().iter().map(|c| c.name().unwrap_or_default().to_lowercase()).collect())
        });
        match outcome {
            Err(WarehouseError::Query { cause, .. }) if is_missing_relation(&cause.to_string()) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Describes statement `id`, riding out throttling and network trouble for a while: the
    /// statement runs on regardless, and its outcome must not be lost to a busy API.
    async fn describe(&self, id: &str) -> Result<DescribeStatementOutput, WarehouseError> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut attempts = 0;
        loop {
            match self.client.describe_statement().id(id).send().await {
                Ok(d) => return Ok(d),
                Err(e) => {
                    let e = api_error("DescribeStatement", e);
                    attempts += 1;
                    if !e.is_transient() || attempts >= DESCRIBE_ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// After `statement_timeout`: cancels the statement and waits until it has ended. One that
    /// finished meanwhile counts as finished; one that was aborted may be sent again.
    async fn cancel(&self, id: &str) -> Result<Vec<String>, WarehouseError> {
        tracing::warn!(
            "Data API statement {id} still running after {} s (statement_timeout_secs); cancelling it",
            self.target.statement_timeout.as_secs()
        );
        // It may end between the last look and the cancel: the status below tells.
        let _ = self.client.cancel_statement().id(id).send().await;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let deadline = std::time::Instant::now() + CANCEL_WAIT;
        loop {
            let d = self.describe(id).await?;
            match d.status() {
                Some(StatusString::Finished) => {
                    return Ok(d.sub_statements().iter().map(|s| s.id().to_string()).collect());
                }
                Some(StatusString::Aborted | StatusString::Failed) => {
                    return Err(WarehouseError::Unavailable {
                        context: format!("Data API statement {id}"),
                        cause: format!(
                            "not finished after {} s (statement_timeout_secs); cancelled",
                            self.target.statement_timeout.as_secs()
                        )
                        .into(),
                    });
                }
                _ if std::time::Instant::now() > deadline => {
                    return Err(WarehouseError::Query {
                        context: format!("Data API statement {id}"),
                        cause: format!(
                            "still running {} s after it was cancelled; it may yet commit, so the batch \
                             is not sent again: restart dynashift once it has ended",
                            CANCEL_WAIT.as_secs()
                        )
                        .into(),
                    });
                }
                _ => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
    }

    /// Polls until the statement ends; the ids of its sub-statements.
    async fn wait(&self, id: &str, sqls: &[String]) -> Result<Vec<String>, WarehouseError> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let started = std::time::Instant::now();
        loop {
            if started.elapsed() > self.target.statement_timeout {
                return self.cancel(id).await;
            }
            let d = self.describe(id).await?;
            match d.status() {
                Some(StatusString::Finished) => {
                    return Ok(d.sub_statements().iter().map(|s| s.id().to_string()).collect());
                }
                Some(StatusString::Failed) | Some(StatusString::Aborted) => {
                    // Name the statement that failed, when the batch says which.
                    let failed = d.sub_statements().iter().position(|s| s.error().is_some());
                    let context = match failed {
                        Some(i) => sqls.get(i).map_or_else(String::new, |s| s.chars().take(120).collect()),
                        None => sqls.first().map_or_else(String::new, |s| s.chars().take(120).collect()),
                    };
                    let message = failed
                        .and_then(|i| d.sub_statements()[i].error())
                        .or(d.error())
                        .unwrap_or("the statement failed without a message")
                        .to_string();
                    // The call was one transaction, rolled back whole: a conflict may pass
                    // when it is sent again.
                    let conflict = is_serialization_conflict(&message);
                    let cause = Cause::from(message);
                    if conflict {
                        return Err(WarehouseError::Unavailable { context, cause });
                    }
                    return Err(WarehouseError::Query { context, cause });
                }
                _ => tokio::time::sleep(backoff.next_delay()).await,
            }
        }
    }

    /// The rows of a finished statement. Its call has committed, so a failure here must not
    /// send the call again: passing errors are retried for a while, and then reported as final.
    async fn result(&self, id: &str) -> Result<Vec<Vec<Field>>, WarehouseError> {
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut attempts = 0;
        loop {
            let sent = self.client.get_statement_result().id(id).set_next_token(token.clone()).send().await;
            let page = match sent.map_err(|e| api_error("GetStatementResult", e)) {
                Ok(page) => page,
                Err(e) if e.is_transient() && attempts + 1 < DESCRIBE_ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(backoff.next_delay()).await;
                    continue;
                }
                Err(e) => {
                    return Err(WarehouseError::Query {
                        context: format!("reading the result of Data API statement {id}"),
                        cause: format!("{e}; its call committed").into(),
                    })
                }
            };
            rows.extend(page.records().iter().map(|r| r.iter().map(field).collect::<Vec<_>>()));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(rows),
            }
        }
    }

    /// Runs one call, sending it again while it fails for a passing reason (throttling, a
    /// serialization conflict, a cancelled overrun): a failed call rolled back whole.
    fn run_call_retrying(
        &self,
        sqls: &[String],
        reads: &[usize],
    ) -> Result<Vec<Vec<Vec<Field>>>, WarehouseError> {
        let mut backoff = Backoff::default();
        let mut attempt = 1;
        loop {
            match self.run_call(sqls, reads) {
                Err(e) if e.is_transient() && attempt < CALL_ATTEMPTS => {
                    let delay = backoff.next_delay();
                    tracing::warn!("{e}; sending the call again in {:.1}s", delay.as_secs_f64());
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn apply_calls(&self, calls: &[Call]) -> Result<Outcome, WarehouseError> {
        let mut outcome = Outcome::default();
        for (n, call) in calls.iter().enumerate() {
            let reads: Vec<usize> = call.counts.iter().map(|(i, _)| *i).collect();
            let results = match self.run_call_retrying(&call.sqls, &reads) {
                Ok(r) => r,
                // Nothing of the batch committed yet: retrying it whole is safe.
                Err(e) if n == 0 => return Err(e),
                // Earlier calls committed. A restart reads the batch again from the unmoved
                // positions and the version guards skip what landed, but this process's
                // plan is now behind the warehouse's schema: stop rather than retry.
                Err(e) => {
                    return Err(WarehouseError::Query {
                        context: format!("call {} of {} of a Data API batch", n + 1, calls.len()),
                        cause: format!(
                            "{e}; the earlier calls committed and the positions did not move: \
                             restart dynashift to resume (nothing is applied twice)"
                        )
                        .into(),
                    })
                }
            };
            for ((_, table), rows) in call.counts.iter().zip(results) {
                let changes = match rows.first().and_then(|r| r.first()) {
                    Some(Field::Int(n)) => *n,
                    _ => 0,
                };
                *outcome.applied.entry(table.clone()).or_default() += changes.max(0) as u64;
            }
        }
        Ok(outcome)
    }
}

impl Warehouse for DataApiWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        &Redshift
    }

    fn is_set_up(&mut self) -> Result<bool, WarehouseError> {
        super::registry::control_tables_exist(self)
    }

    fn setup(&mut self) -> Result<(), WarehouseError> {
        let sqls =
            control_tables(&Redshift, &self.layout).iter().map(inline).collect::<Result<Vec<_>, _>>()?;
        for chunk in sqls.chunks(super::data_api_calls::MAX_STATEMENTS) {
            self.run_call(chunk, &[])?;
        }
        super::upgrade::upgrade_layout(self)
    }

    fn load_catalog(&mut self) -> Result<Catalog, WarehouseError> {
        registry::load_catalog(self)
    }

    fn load_checkpoints(&mut self, source: &str) -> Result<HashMap<String, String>, WarehouseError> {
        registry::load_checkpoints(self, source)
    }

    fn apply(&mut self, batch: &Batch) -> Result<Outcome, WarehouseError> {
        self.batches += 1;
        let handle = self.runtime.handle().clone();
        let (staged, kept) = handle.block_on(self.loading.prepare(batch, self.batches))?;
        let batch = kept.as_ref().unwrap_or(batch);
        let calls = data_api_calls(&Redshift, &self.layout, batch, &staged.rejects, |index, columns| {
            self.loading.copy_statement(&staged, index, STAGE, columns)
        });
        let result = calls.and_then(|calls| self.apply_calls(&calls));
        handle.block_on(self.loading.clean_up(&staged));
        result
    }

    /// The calls as they would be sent, each its own transaction; the COPY names the manifest
    /// the batch's rows would be staged under.
    fn describe(&self, batch: &Batch) -> Vec<String> {
        let location = self.loading.stager.location();
        let calls = data_api_calls(&Redshift, &self.layout, batch, &[], |index, columns| {
            let manifest =
                location.url(&format!("{}<run>/<batch>/{index:04}/manifest.json", location.prefix));
            Ok(copy_from_manifest(
                STAGE,
                columns,
                &manifest,
                &self.loading.copy_role,
                self.loading.s3_region.as_deref(),
            )
            .unwrap_or_else(|e| format!("-- {e}")))
        });
        match calls {
            Ok(calls) => {
                let n = calls.len();
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let body: Vec<String> = c.sqls.into_iter().map(|s| format!("{s};")).collect();
                        format!(
                            "-- Data API call {} of {n} (BatchExecuteStatement, one transaction)\n{}",
                            i + 1,
                            body.join("\n")
                        )
                    })
                    .collect()
            }
            Err(e) => vec![format!("-- this batch cannot be sent through the Data API: {e}")],
        }
    }

    fn status(&mut self) -> Result<Status, WarehouseError> {
        registry::status(self)
    }
}

impl Query for DataApiWarehouse {
    fn dialect(&self) -> &dyn Dialect {
        &Redshift
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn rows(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Field>>, WarehouseError> {
        let sql = inline_params(sql, params, redshift_literal)
            .map_err(|e| WarehouseError::Corrupt(format!("{e}: {sql}")))?;
        let mut results = self.run_call(&[sql], &[0])?;
        Ok(results.pop().unwrap_or_default())
    }

    fn execute(&mut self, sql: &str) -> Result<(), WarehouseError> {
        self.run_call(&[sql.to_string()], &[])?;
        Ok(())
    }
}
