//! `check`'s permission probes: every AWS call a configuration needs, tried once with the
//! run's own credentials, one line each. Reads change nothing (a shard is read from its tip,
//! one record at most); the S3 staging probe writes one empty object and removes it again,
//! because S3 has no way to ask whether a write would be allowed.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{s3_client, sdk_config, sdk_message, AwsSettings};
use crate::config::{
    Config, KinesisSourceConfig, RedshiftTargetConfig, SourceConfig, StreamsSourceConfig, TargetConfig,
};
use crate::warehouse::s3_stage::S3Location;

/// What trying one call showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call was answered; a note says what it touched, when it wrote anything.
    Allowed(Option<String>),
    /// The service refused the caller: the policy lacks the action (or denies it).
    Denied(String),
    /// The call failed for another reason (missing resource, network, credentials).
    Failed(String),
    /// Not tried: an earlier call it depends on gave nothing to try it with.
    NotTried(String),
}

/// One permission and what trying it showed.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The IAM action, `service:Action`.
    pub action: String,
    /// The resource it was tried on (a table, a stream, a bucket prefix).
    pub on: String,
    /// Why dynashift needs it.
    pub purpose: &'static str,
    pub outcome: Outcome,
}

impl Probe {
    fn new(action: &str, on: &str, purpose: &'static str, outcome: Outcome) -> Probe {
        Probe { action: action.to_string(), on: on.to_string(), purpose, outcome }
    }

    /// Whether a run would fail on this call.
    pub fn is_problem(&self) -> bool {
        matches!(self.outcome, Outcome::Denied(_) | Outcome::Failed(_))
    }

    /// The probe as one line of `check`'s output.
    pub fn line(&self) -> String {
        let head = format!("permission {} on {}", self.action, self.on);
        match &self.outcome {
            Outcome::Allowed(None) => format!("{head}: allowed"),
            Outcome::Allowed(Some(note)) => format!("{head}: allowed ({note})"),
            Outcome::Denied(why) => {
                let kms = if self.action.starts_with("s3:") {
                    " (with SSE-KMS on the bucket, also kms:GenerateDataKey and kms:Decrypt on its key)"
                } else {
                    ""
                };
                format!(
                    "{head}: DENIED ({why}); dynashift needs it {}: grant `{}`{kms}",
                    self.purpose, self.action
                )
            }
            Outcome::Failed(why) => format!("{head}: failed ({why}); needed {}", self.purpose),
            Outcome::NotTried(why) => format!("{head}: not tried ({why})"),
        }
    }
}

/// Error codes of a call refused for its rate: it was authorized.
const THROTTLE_CODES: [&str; 6] = [
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "SlowDown",
];

/// Error codes by which AWS services refuse a caller's permissions.
const DENIAL_CODES: [&str; 4] =
    ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "NotAuthorized"];

/// A call's result as an outcome: a refusal for want of permission is told apart from every
/// other failure (some services answer a refusal with a bare 403 and no error code the SDK
/// can read).
fn outcome_of<T, E>(result: &Result<T, SdkError<E, HttpResponse>>) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let Err(e) = result else { return Outcome::Allowed(None) };
    let code = e.code();
    if code.is_some_and(|c| THROTTLE_CODES.contains(&c)) {
        return Outcome::Allowed(Some(format!("throttled ({}), so authorized", code.unwrap_or_default())));
    }
    let status = e.raw_response().map(|r| r.status().as_u16());
    let denied = code.is_some_and(|c| DENIAL_CODES.contains(&c)) || (code.is_none() && status == Some(403));
    if denied {
        match code {
            Some(_) => Outcome::Denied(sdk_message(e)),
            None => Outcome::Denied("HTTP 403".into()),
        }
    } else {
        Outcome::Failed(sdk_message(e))
    }
}

/// Every permission the configuration's source and target need, tried in the order a run
/// uses them. A file source and the embedded or PostgreSQL targets need none.
pub fn probes(config: &Config) -> Vec<Probe> {
    let runtime = match crate::runtime::background("dynashift-check") {
        Ok(r) => r,
        Err(e) => {
            return vec![Probe::new(
                "AWS",
                "-",
                "to call AWS",
                Outcome::Failed(format!("cannot start a runtime: {e}")),
            )]
        }
    };
    let mut probes = Vec::new();
    match &config.source {
        SourceConfig::File(_)
        | SourceConfig::Export(_)
        | SourceConfig::Scan(_)
        | SourceConfig::RedshiftMv(_) => {}
        SourceConfig::Kinesis(k) => probes.extend(runtime.block_on(kinesis(k))),
        SourceConfig::DynamodbStreams(s) => probes.extend(runtime.block_on(streams(s))),
    }
    if let Some((location, aws)) = staging(&config.target) {
        probes.extend(runtime.block_on(s3_staging(location, aws)));
    }
    probes
}

/// The S3 staging a Redshift target loads through, with the AWS settings it uses.
fn staging(target: &TargetConfig) -> Option<(&S3Location, &AwsSettings)> {
    let TargetConfig::Redshift(redshift) = target else { return None };
    Some(match redshift.as_ref() {
        RedshiftTargetConfig::Wire { options, .. } => (&options.staging, &options.aws),
        RedshiftTargetConfig::DataApi(options) => (&options.staging, &options.aws),
    })
}

const NO_SHARD: &str = "the stream has no shard to try it on";

async fn kinesis(k: &KinesisSourceConfig) -> Vec<Probe> {
    let client = aws_sdk_kinesis::Client::new(&sdk_config(&k.aws).await);
    let stream = k.stream_name();
    let on = format!("stream `{stream}`");
    let mut probes = Vec::new();
    let summary = client.describe_stream_summary().stream_name(stream).send().await;
    probes.push(Probe::new(
        "kinesis:DescribeStreamSummary",
        &on,
        "to read the stream's retention",
        outcome_of(&summary),
    ));
    let shards = client.list_shards().stream_name(stream).max_results(1).send().await;
    probes.push(Probe::new("kinesis:ListShards", &on, "to find the stream's shards", outcome_of(&shards)));
    let shard = shards.ok().and_then(|o| o.shards().first().map(|s| s.shard_id().to_string()));
    let iterator = match shard {
        None => {
            probes.push(Probe::new(
                "kinesis:GetShardIterator",
                &on,
                "to start reading a shard",
                Outcome::NotTried(NO_SHARD.into()),
            ));
            None
        }
        Some(shard) => {
            let out = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(&shard)
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::Latest)
                .send()
                .await;
            probes.push(Probe::new(
                "kinesis:GetShardIterator",
                &on,
                "to start reading a shard",
                outcome_of(&out),
            ));
            out.ok().and_then(|o| o.shard_iterator().map(str::to_string))
        }
    };
    let records = match iterator {
        None => Outcome::NotTried("no shard iterator to read with".into()),
        Some(iterator) => outcome_of(&client.get_records().shard_iterator(iterator).limit(1).send().await),
    };
    probes.push(Probe::new("kinesis:GetRecords", &on, "to read the stream's records", records));
    probes
}

async fn streams(s: &StreamsSourceConfig) -> Vec<Probe> {
    let sdk = sdk_config(&s.aws).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let client = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let mut probes = Vec::new();
    let mut arns = s.stream_arns.clone();
    for table in &s.tables {
        let on = format!("table `{table}`");
        let described = dynamodb.describe_table().table_name(table).send().await;
        probes.push(Probe::new(
            "dynamodb:DescribeTable",
            &on,
            "to find the table's stream",
            outcome_of(&described),
        ));
        let listed = client.list_streams().table_name(table).send().await;
        probes.push(Probe::new(
            "dynamodb:ListStreams",
            &on,
            "to find the table's streams",
            outcome_of(&listed),
        ));
        let latest =
            described.ok().and_then(|o| o.table().and_then(|t| t.latest_stream_arn().map(str::to_string)));
        let listed =
            listed.ok().and_then(|o| o.streams().first().and_then(|s| s.stream_arn().map(str::to_string)));
        arns.extend(latest.or(listed));
    }
    arns.sort();
    arns.dedup();
    if arns.is_empty() {
        for action in ["dynamodb:DescribeStream", "dynamodb:GetShardIterator", "dynamodb:GetRecords"] {
            let why = "no stream was found to try it on".to_string();
            probes.push(Probe::new(action, "-", "to read the stream", Outcome::NotTried(why)));
        }
    }
    // Policies are often scoped per stream ARN: each stream a run reads is tried.
    for arn in &arns {
        probes.extend(stream_probes(&client, arn).await);
    }
    probes
}

/// DescribeStream, GetShardIterator and GetRecords on one DynamoDB stream.
async fn stream_probes(client: &aws_sdk_dynamodbstreams::Client, arn: &str) -> Vec<Probe> {
    let mut probes = Vec::new();
    let on = format!("stream `{arn}`");
    let described = client.describe_stream().stream_arn(arn).limit(1).send().await;
    probes.push(Probe::new(
        "dynamodb:DescribeStream",
        &on,
        "to find the stream's shards",
        outcome_of(&described),
    ));
    let shard = described.ok().and_then(|o| {
        o.stream_description().and_then(|d| d.shards().first().and_then(|s| s.shard_id().map(str::to_string)))
    });
    let iterator = match shard {
        None => {
            let why = Outcome::NotTried(NO_SHARD.into());
            probes.push(Probe::new("dynamodb:GetShardIterator", &on, "to start reading a shard", why));
            None
        }
        Some(shard) => {
            let out = client
                .get_shard_iterator()
                .stream_arn(arn)
                .shard_id(shard)
                .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::Latest)
                .send()
                .await;
            probes.push(Probe::new(
                "dynamodb:GetShardIterator",
                &on,
                "to start reading a shard",
                outcome_of(&out),
            ));
            out.ok().and_then(|o| o.shard_iterator().map(str::to_string))
        }
    };
    let records = match iterator {
        None => Outcome::NotTried("no shard iterator to read with".into()),
        Some(iterator) => outcome_of(&client.get_records().shard_iterator(iterator).limit(1).send().await),
    };
    probes.push(Probe::new("dynamodb:GetRecords", &on, "to read the stream's records", records));
    probes
}

/// Writes one empty object under the staging prefix and removes it (with the call that
/// removes staged batches, which needs `s3:DeleteObject`).
async fn s3_staging(location: &S3Location, aws: &AwsSettings) -> Vec<Probe> {
    let client = s3_client(&sdk_config(aws).await, aws);
    let stamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let key = format!("{}dynashift-check-{}-{stamp}", location.prefix, std::process::id());
    let url = location.url(&key);
    let on = location.url(&location.prefix);
    let put = client
        .put_object()
        .bucket(&location.bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
        .send()
        .await;
    let put_outcome = match outcome_of(&put) {
        Outcome::Allowed(_) => Outcome::Allowed(Some(format!("wrote the empty object {url}"))),
        other => other,
    };
    let object = aws_sdk_s3::types::ObjectIdentifier::builder().key(&key).build();
    let delete = match object
        .and_then(|o| aws_sdk_s3::types::Delete::builder().objects(o).quiet(true).build())
    {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(delete) => {
            let out = client.delete_objects().bucket(&location.bucket).delete(delete).send().await;
            // DeleteObjects answers 200 and lists refusals per key.
            match (outcome_of(&out), out.as_ref().ok().and_then(|o| o.errors().first())) {
                (Outcome::Allowed(_), Some(refused)) => {
                    let why =
                        format!("{}: {}", refused.code().unwrap_or("error"), refused.message().unwrap_or(""));
                    if refused.code().is_some_and(|c| DENIAL_CODES.contains(&c)) {
                        Outcome::Denied(why)
                    } else {
                        Outcome::Failed(why)
                    }
                }
                (Outcome::Allowed(_), None) if put.is_ok() => {
                    Outcome::Allowed(Some(format!("removed {url}")))
                }
                (outcome, _) => outcome,
            }
        }
    };
    vec![
        Probe::new("s3:PutObject", &on, "to stage batches for Redshift's COPY", put_outcome),
        Probe::new("s3:DeleteObject", &on, "to remove staged batches once loaded", delete),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_action_and_what_to_grant() {
        let denied = Probe::new(
            "dynamodb:GetRecords",
            "stream `arn`",
            "to read the stream's records",
            Outcome::Denied("HTTP 403".into()),
        );
        assert!(denied.is_problem());
        assert_eq!(
            denied.line(),
            "permission dynamodb:GetRecords on stream `arn`: DENIED (HTTP 403); dynashift needs it to read \
             the stream's records: grant `dynamodb:GetRecords`"
        );
        let allowed = Probe::new("s3:PutObject", "s3://b/p/", "to stage", Outcome::Allowed(None));
        assert!(!allowed.is_problem());
        assert_eq!(allowed.line(), "permission s3:PutObject on s3://b/p/: allowed");
        let skipped = Probe::new("x:Y", "-", "to", Outcome::NotTried("no shard".into()));
        assert!(!skipped.is_problem());
    }
}
