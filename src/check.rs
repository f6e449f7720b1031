//! `check`: what can be verified about the source before a run, one line each. Nothing is
//! written anywhere.

use crate::aws::{sdk_config, sdk_message};
use crate::config::{Config, SourceConfig};

/// One line of advice about a table's Kinesis streaming destination into `stream`: its
/// `ApproximateCreationDateTimePrecision`, given as (destination stream ARN, precision).
pub fn precision_advice(table: &str, stream: &str, destinations: &[(String, Option<String>)]) -> String {
    let matches = |arn: &str| arn == stream || arn.ends_with(&format!(":stream/{stream}"));
    match destinations.iter().find(|(arn, _)| matches(arn)) {
        None => format!("table `{table}`: no Kinesis streaming destination into `{stream}`"),
        Some((_, Some(p))) if p == "MICROSECOND" => {
            format!("table `{table}`: creation times in microseconds: ties between changes are unlikely")
        }
        Some((arn, precision)) => format!(
            "table `{table}`: creation times in {} precision: changes of one item in the same millisecond \
             are ordered by their place in the shard; recommended: aws dynamodb update-kinesis-streaming-destination \
             --table-name {table} --stream-arn {arn} --update-kinesis-streaming-configuration \
             ApproximateCreationDateTimePrecision=MICROSECOND",
            precision.as_deref().unwrap_or("MILLISECOND").to_lowercase()
        ),
    }
}

/// The source's lines for `check`.
pub fn source_lines(config: &Config) -> Vec<String> {
    let SourceConfig::Kinesis(k) = &config.source else { return Vec::new() };
    if k.tables.is_empty() {
        return vec![
            "source: list the DynamoDB tables feeding the stream in `tables` to have their timestamp precision checked"
                .into(),
        ];
    }
    let runtime = match crate::runtime::background("dynashift-check") {
        Ok(r) => r,
        Err(e) => return vec![format!("source: cannot start the AWS client: {e}")],
    };
    let client = aws_sdk_dynamodb::Client::new(&runtime.block_on(sdk_config(&k.dynamodb_aws)));
    k.tables
        .iter()
        .map(|table| {
            match runtime.block_on(client.describe_kinesis_streaming_destination().table_name(table).send()) {
                Ok(out) => {
                    let destinations: Vec<(String, Option<String>)> = out
                        .kinesis_data_stream_destinations()
                        .iter()
                        .map(|d| {
                            let precision =
                                d.approximate_creation_date_time_precision().map(|p| p.as_str().to_string());
                            (d.stream_arn().unwrap_or_default().to_string(), precision)
                        })
                        .collect();
                    precision_advice(table, k.stream_name(), &destinations)
                }
                Err(e) => format!(
                    "table `{table}`: DescribeKinesisStreamingDestination failed, precision not checked: {}",
                    sdk_message(&e)
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kinesis:eu-west-1:123456789012:stream/ddb-changes";

    #[test]
    fn millisecond_precision_is_advised_against() {
        let ms = precision_advice("Orders", "ddb-changes", &[(ARN.into(), Some("MILLISECOND".into()))]);
        assert!(ms.contains("ApproximateCreationDateTimePrecision=MICROSECOND"), "{ms}");
        assert!(ms.contains(ARN), "{ms}");
        // Absent means the default, milliseconds.
        assert!(precision_advice("Orders", ARN, &[(ARN.into(), None)]).contains("millisecond precision"));
        let us = precision_advice("Orders", "ddb-changes", &[(ARN.into(), Some("MICROSECOND".into()))]);
        assert!(us.contains("unlikely") && !us.contains("recommended"), "{us}");
        let other =
            precision_advice("Orders", "ddb-changes", &[("arn:aws:kinesis:x:1:stream/other".into(), None)]);
        assert!(other.contains("no Kinesis streaming destination"), "{other}");
    }
}
