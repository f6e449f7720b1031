//! What Redshift adds to the PostgreSQL-wire driver: temporary IAM credentials for each
//! connection, and bulk loading through S3 (stage, `COPY … MANIFEST`, clean up).

use std::collections::HashMap;

use aws_config::SdkConfig;
use dynashift_core::dialect::copy_from_manifest;
use dynashift_core::Position;

use super::s3_stage::{encode, Oversize, S3Location, S3Stager, Staged, StagedFix};
use super::{Batch, Cause, Reject, WarehouseError};
use crate::aws::AwsSettings;

/// Redshift's serialization conflicts, which a new attempt of the transaction may pass:
/// "ERROR: 1023 … Serializable isolation violation on table" (SQLSTATE XX000), and, under
/// snapshot isolation, "could not complete because of conflict with concurrent transaction".
/// The Data API reports the message alone, so the message decides; `1023` counts only as the
/// message's code, never inside other text.
/// <https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html>
pub fn is_serialization_conflict(message: &str) -> bool {
    let text = message.trim_start();
    let text = text.strip_prefix("ERROR:").unwrap_or(text).trim_start();
    text.starts_with("1023")
        || message.contains("Serializable isolation violation")
        || message.contains("could not complete because of conflict with concurrent transaction")
}

/// How dynashift logs in to Redshift.
#[derive(Debug, Clone)]
pub enum RedshiftAuth {
    /// The user and password of the connection string (password from the environment).
    Password,
    /// A provisioned cluster: `GetClusterCredentials` for `db_user`.
    Cluster { cluster_identifier: String, db_user: String, auto_create: bool },
    /// Redshift Serverless: `GetCredentials` for the workgroup (the user follows the IAM identity).
    Serverless { workgroup: String },
}

fn aws_error(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> WarehouseError {
    WarehouseError::Unavailable { context: what.to_string(), cause: Cause::chained(e) }
}

/// Temporary `(user, password)` for `auth`, or `None` for password logins. The password is
/// handed to the connection only; it is never logged.
pub async fn temporary_credentials(
    auth: &RedshiftAuth,
    sdk: &SdkConfig,
    db_name: Option<&str>,
) -> Result<Option<(String, String)>, WarehouseError> {
    match auth {
        RedshiftAuth::Password => Ok(None),
        RedshiftAuth::Cluster { cluster_identifier, db_user, auto_create } => {
            let out = aws_sdk_redshift::Client::new(sdk)
                .get_cluster_credentials()
                .cluster_identifier(cluster_identifier)
                .db_user(db_user)
                .set_db_name(db_name.map(str::to_string))
                .auto_create(*auto_create)
                .duration_seconds(900)
                .send()
                .await
                .map_err(|e| {
                    aws_error(&format!("GetClusterCredentials for cluster {cluster_identifier}"), e)
                })?;
            match (out.db_user(), out.db_password()) {
                (Some(u), Some(p)) => Ok(Some((u.to_string(), p.to_string()))),
                _ => Err(WarehouseError::Open {
                    what: format!("Redshift cluster {cluster_identifier}"),
                    cause: "GetClusterCredentials returned no user or password".into(),
                }),
            }
        }
        RedshiftAuth::Serverless { workgroup } => {
            let out = aws_sdk_redshiftserverless::Client::new(sdk)
                .get_credentials()
                .workgroup_name(workgroup)
                .set_db_name(db_name.map(str::to_string))
                .duration_seconds(900)
                .send()
                .await
                .map_err(|e| aws_error(&format!("GetCredentials for workgroup {workgroup}"), e))?;
            match (out.db_user(), out.db_password()) {
                (Some(u), Some(p)) => Ok(Some((u.to_string(), p.to_string()))),
                _ => Err(WarehouseError::Open {
                    what: format!("Redshift Serverless workgroup {workgroup}"),
                    cause: "GetCredentials returned no user or password".into(),
                }),
            }
        }
    }
}

/// Everything a Redshift target needs beyond the connection string.
#[derive(Debug, Clone)]
pub struct RedshiftOptions {
    pub auth: RedshiftAuth,
    pub aws: AwsSettings,
    pub staging: S3Location,
    pub copy_role: String,
    pub s3_region: Option<String>,
    pub part_rows: usize,
}

/// Raw bytes of a reject that travel in a statement (as text, and as hex bytes when they are
/// not UTF-8: up to three and two times as long). Larger records are kept whole in S3 and
/// their reject row names the object: a Redshift VARCHAR holds 65,535 bytes, and a Data API
/// statement 100 KB.
pub const MAX_REJECT_RAW: usize = 20_000;

/// Bulk loading through S3.
pub struct S3Loading {
    pub stager: S3Stager,
    /// Role Redshift assumes to read the staged objects.
    pub copy_role: String,
    /// Region of the staging bucket, when it is not the cluster's.
    pub s3_region: Option<String>,
    /// Rows per staged part (Redshift loads parts in parallel, one per slice).
    pub part_rows: usize,
}

/// One batch's staged tables (by plan index) and the values that had to be cut.
#[derive(Default)]
pub struct StagedBatch {
    pub tables: HashMap<usize, Staged>,
    pub rejects: Vec<Reject>,
}

impl StagedBatch {
    pub fn keys(&self) -> Vec<String> {
        self.tables.values().flat_map(|s| s.keys.iter().cloned()).collect()
    }
}

fn oversize_reject(table: &str, column: &str, o: Oversize) -> Reject {
    let reason = match o.fix {
        StagedFix::Cut | StagedFix::Null => format!(
            "value of column `{column}` of key {} is {} bytes, over Redshift's 65,535-byte limit: {}; \
             the full value is kept here",
            o.key_text,
            o.bytes,
            if o.fix == StagedFix::Cut {
                "cut at a character boundary to 65,535 bytes"
            } else {
                "stored as NULL"
            }
        ),
        StagedFix::NulReplaced => format!(
            "value of column `{column}` of key {} contains U+0000, which is stored as U+FFFD; \
             the original value is kept here",
            o.key_text
        ),
    };
    let shard = if o.fix == StagedFix::NulReplaced { "(unstorable value)" } else { "(oversize value)" };
    Reject {
        position: Position::new(shard, "0"),
        table: Some(table.to_string()),
        reason,
        raw: o.original.into_bytes(),
    }
}

impl S3Loading {
    /// Stages every table of `batch` that has rows; `sequence` numbers the batch.
    pub async fn stage(&self, batch: &Batch, sequence: u64) -> Result<StagedBatch, WarehouseError> {
        let mut out = StagedBatch::default();
        for (index, plan) in batch.tables.iter().enumerate() {
            if plan.rows.is_empty() {
                continue;
            }
            let Some(schema) = batch.catalog.tables.get(&plan.source_table) else { continue };
            let types: Vec<_> = plan.staged.iter().map(|&i| schema.columns[i].ty).collect();
            let encoded = encode(plan, &types, self.part_rows).map_err(|e| WarehouseError::Query {
                context: "encoding the S3 stage".into(),
                cause: Cause::of(e),
            })?;
            let staged = self.stager.upload(sequence, index, &encoded).await;
            let staged = match staged {
                Ok(s) => s,
                Err(e) => {
                    // Do not leave the parts of earlier tables behind.
                    let _ = self.stager.remove(&out.keys()).await;
                    return Err(WarehouseError::Unavailable {
                        context: "staging in S3".into(),
                        cause: Cause::of(e),
                    });
                }
            };
            for o in encoded.oversize {
                let column = &schema.columns[plan.staged[o.staged_column]].name;
                out.rejects.push(oversize_reject(&plan.source_table, column, o));
            }
            out.tables.insert(index, staged);
        }
        Ok(out)
    }

    /// The COPY loading the stage of plan `index` from its manifest.
    pub fn copy_statement(
        &self,
        staged: &StagedBatch,
        index: usize,
        stage: &str,
        columns: &[(String, &'static str)],
    ) -> Result<String, WarehouseError> {
        let table = staged.tables.get(&index).ok_or_else(|| {
            WarehouseError::Corrupt(format!("table plan {index} has rows but nothing was staged in S3"))
        })?;
        copy_from_manifest(stage, columns, &table.manifest_url, &self.copy_role, self.s3_region.as_deref())
            .map_err(|e| WarehouseError::Open { what: "the Redshift COPY".into(), cause: Cause::of(e) })
    }

    /// Stages batch number `n` and keeps in S3 the records too large for a reject row, both
    /// the values cut while staging and the batch's own rejects; the batch is copied only when
    /// it has such a reject (rare: a record over 20 KB that did not decode). On failure, what
    /// was staged is removed.
    pub async fn prepare(
        &self,
        batch: &Batch,
        n: u64,
    ) -> Result<(StagedBatch, Option<Batch>), WarehouseError> {
        let mut staged = self.stage(batch, n).await?;
        let kept = async {
            staged.rejects = self.keep_large_rejects(&format!("{n:08}-cut"), &staged.rejects).await?;
            if !batch.rejects.iter().any(|r| r.raw.len() > MAX_REJECT_RAW) {
                return Ok(None);
            }
            let rejects = self.keep_large_rejects(&format!("{n:08}-rejected"), &batch.rejects).await?;
            Ok(Some(Batch { rejects, ..batch.clone() }))
        }
        .await;
        match kept {
            Ok(kept) => Ok((staged, kept)),
            Err(e) => {
                self.clean_up(&staged).await;
                Err(e)
            }
        }
    }

    /// `rejects`, with every record over `MAX_REJECT_RAW` bytes kept in S3 under a name
    /// starting with `name`, and a note naming the object in its place.
    async fn keep_large_rejects(
        &self,
        name: &str,
        rejects: &[Reject],
    ) -> Result<Vec<Reject>, WarehouseError> {
        let mut out = Vec::with_capacity(rejects.len());
        for (i, r) in rejects.iter().enumerate() {
            if r.raw.len() <= MAX_REJECT_RAW {
                out.push(r.clone());
                continue;
            }
            let url = self.stager.keep(&format!("{name}-{i:05}.raw"), r.raw.clone()).await.map_err(|e| {
                WarehouseError::Unavailable {
                    context: "keeping a large rejected record in S3".into(),
                    cause: Cause::of(e),
                }
            })?;
            let note = format!("(the {} bytes of this record are kept at {url})", r.raw.len());
            out.push(Reject { raw: note.into_bytes(), ..r.clone() });
        }
        Ok(out)
    }

    /// Deletes a batch's staged objects; a failure is logged, not fatal (the objects are
    /// inert, and a bucket lifecycle rule can sweep them).
    pub async fn clean_up(&self, staged: &StagedBatch) {
        if let Err(e) = self.stager.remove(&staged.keys()).await {
            tracing::warn!("could not delete staged objects: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_serialization_conflict;

    #[test]
    fn conflicts_are_told_from_other_errors() {
        assert!(is_serialization_conflict("1023"));
        assert!(is_serialization_conflict(
            "ERROR: 1023 DETAIL: Serializable isolation violation on table - 1"
        ));
        assert!(is_serialization_conflict(
            "could not complete because of conflict with concurrent transaction"
        ));
        assert!(!is_serialization_conflict("duplicate key value 1023 violates a constraint"));
        assert!(!is_serialization_conflict("ERROR: relation \"t\" does not exist"));
    }
}
