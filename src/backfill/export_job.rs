//! `backfill --export s3://bucket/prefix/`: starts a table's export (ExportTableToPointInTime,
//! DYNAMODB_JSON, the table as it is now), waits for it while logging its status, and gives
//! the folder it wrote, to be loaded as `--from-export` loads one.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_dynamodb::types::{ExportFormat, ExportStatus};

use crate::aws::{sdk_message, AwsSettings};
use crate::warehouse::s3_stage::S3Location;

/// The longest wait between two status calls.
const POLL_MAX: Duration = Duration::from_secs(15);

/// Exports `table` into `to` and returns the export's folder (`s3://bucket/…/AWSDynamoDB/<id>/`).
pub fn export_table(table: &str, to: &str, aws: &AwsSettings) -> anyhow::Result<String> {
    let location = S3Location::parse(to).map_err(|e| anyhow::anyhow!("--export {to}: {e}"))?;
    let (runtime, client, described) = super::describe_table(table, aws)?;
    let arn = described.table_arn().context("DescribeTable gave no table ARN")?.to_string();
    let prefix = location.prefix.trim_end_matches('/');
    let request = client
        .export_table_to_point_in_time()
        .table_arn(&arn)
        .s3_bucket(&location.bucket)
        .set_s3_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
        .export_format(ExportFormat::DynamodbJson);
    let started = runtime.block_on(request.send()).map_err(|e| {
        let off = e.as_service_error().is_some_and(|s| s.is_point_in_time_recovery_unavailable_exception());
        if off {
            anyhow::anyhow!(
                "point-in-time recovery is off for `{table}`, so it cannot be exported: turn it on (aws dynamodb \
                 update-continuous-backups --table-name {table} --point-in-time-recovery-specification \
                 PointInTimeRecoveryEnabled=true) and export again, or load it with --scan"
            )
        } else {
            anyhow::anyhow!("ExportTableToPointInTime of `{table}` failed: {}", sdk_message(&e))
        }
    })?;
    let export_arn = started
        .export_description()
        .and_then(|d| d.export_arn())
        .context("ExportTableToPointInTime gave no export ARN")?
        .to_string();
    tracing::info!(table, export = export_arn, "export started");
    let since = Instant::now();
    let mut wait = Duration::from_secs(2);
    loop {
        std::thread::sleep(wait);
        wait = (wait * 2).min(POLL_MAX);
        let out = runtime
            .block_on(client.describe_export().export_arn(&export_arn).send())
            .map_err(|e| anyhow::anyhow!("DescribeExport of {export_arn} failed: {}", sdk_message(&e)))?;
        let description = out.export_description().context("DescribeExport gave no description")?;
        match description.export_status() {
            Some(ExportStatus::Completed) => {
                let manifest = description.export_manifest().with_context(|| {
                    format!(
                        "export {export_arn} completed, but DescribeExport names no manifest: load its folder with \
                         --from-export s3://{}/…/AWSDynamoDB/<export id>/",
                        location.bucket
                    )
                })?;
                let folder = manifest.rsplit_once('/').map_or("", |(folder, _)| folder);
                return Ok(format!("s3://{}/{folder}/", location.bucket));
            }
            Some(ExportStatus::Failed) => anyhow::bail!(
                "export {export_arn} failed: {}",
                description.failure_message().unwrap_or("DescribeExport gives no reason")
            ),
            status => tracing::info!(
                export = export_arn,
                status = status.map_or("unknown", |s| s.as_str()),
                minutes = format!("{:.1}", since.elapsed().as_secs_f64() / 60.0),
                "waiting for the export"
            ),
        }
    }
}
