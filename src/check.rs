//! `check`: what can be verified about the source before a run, one line each. Nothing is
//! written anywhere.

pub mod permissions;

use crate::aws::{sdk_config, sdk_message};
use crate::cause::{error_chain, Cause};
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

/// With `kind = "redshift-mv"`: the view reached, with the columns dynashift reads (or why
/// not, which fails the check).
pub fn view_line(config: &Config) -> Option<Result<String, String>> {
    let SourceConfig::RedshiftMv(m) = &config.source else { return None };
    Some(match crate::source::redshift_mv::MvSource::open(m, Default::default()) {
        Ok(_) => Ok(format!(
            "source: {}.{} is readable and holds {}",
            m.schema,
            m.view,
            crate::source::redshift_mv::REQUIRED_COLUMNS.join(", ")
        )),
        Err(e) => Err(format!("source: {e}")),
    })
}

/// How long the source keeps a record, in seconds: DynamoDB Streams 24 hours, a Kinesis
/// stream what `DescribeStreamSummary` says (`None` when it cannot be asked), a file for ever.
pub fn source_retention(config: &Config) -> Result<Option<u64>, Cause> {
    match &config.source {
        SourceConfig::File(_)
        | SourceConfig::Export(_)
        | SourceConfig::Scan(_)
        | SourceConfig::RedshiftMv(_) => Ok(None),
        SourceConfig::DynamodbStreams(_) => Ok(Some(crate::source::dynamodb_streams::RETENTION_SECS)),
        SourceConfig::Kinesis(k) => crate::source::kinesis::retention(&k.stream, &k.aws).map_err(|e| {
            let message = format!("DescribeStreamSummary failed, retention not checked: {}", error_chain(&e));
            Cause::with_message(message, e)
        }),
    }
}

/// The schedules against the source's retention (seconds): refusals (a schedule may hold a
/// change longer than three quarters of the retention, past which it is applied regardless),
/// and notes (paused tables, which hold changes until the stream drops them).
pub fn schedule_lines(config: &Config, retention: Option<u64>) -> (Vec<String>, Vec<String>) {
    let (mut refusals, mut notes) = (Vec::new(), Vec::new());
    let Some(retention) = retention else { return (refusals, notes) };
    let limit = retention / 4 * 3;
    let hours = |secs: u64| format!("{:.1} h", secs as f64 / 3_600.0);
    let schedules = &config.schedules;
    let named = std::iter::once(("[defaults]".to_string(), schedules.default_schedule()))
        .chain(schedules.listed().map(|(t, s)| (format!("[tables.\"{t}\"]"), s)));
    for (name, schedule) in named {
        match schedule.longest_wait() {
            None => notes.push(format!(
                "{name} is paused: its changes are held, and the stream drops those older than {}",
                hours(retention)
            )),
            Some(wait) if wait > limit => refusals.push(format!(
                "{name}: `every` and `window` may hold a change {}, longer than three quarters of the \
                 stream's retention of {} ({}), past which it is applied regardless",
                hours(wait),
                hours(retention),
                hours(limit)
            )),
            Some(_) => {}
        }
    }
    (refusals, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_that_outwait_the_retention_are_refused() {
        let text =
            "[source]\nkind = \"file\"\npath = \"x\"\n[target]\nkind = \"duckdb\"\npath = \"x.duckdb\"\n\
                    [tables.\"Orders\"]\nevery = \"20h\"\n[tables.\"Nightly\"]\nwindow = \"01:00-05:00\"\n\
                    [tables.\"Hourly\"]\nevery = \"1h\"\n[tables.\"Audit\"]\npaused = true\n";
        let config = Config::parse(text, std::path::Path::new("x.toml")).unwrap();
        let (refusals, notes) = schedule_lines(&config, Some(24 * 3_600));
        assert_eq!(refusals.len(), 2, "{refusals:?}");
        assert!(refusals[0].contains("Nightly") && refusals[0].contains("20.0 h"), "{refusals:?}");
        assert!(refusals[1].contains("Orders") && refusals[1].contains("18.0 h"), "{refusals:?}");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("Audit") && notes[0].contains("paused"), "{notes:?}");
        let (refusals, _) = schedule_lines(&config, Some(7 * 24 * 3_600));
        assert!(refusals.is_empty(), "a week's retention: {refusals:?}");
        assert_eq!(schedule_lines(&config, None), (Vec::new(), Vec::new()), "a file keeps everything");
    }

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
