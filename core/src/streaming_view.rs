//! The one-time SQL that has Redshift read a Kinesis stream into a materialized view that the
//! `redshift-mv` source can read: an external schema naming the stream, the view's schema, and
//! the view itself, keeping the stream's own columns and each record's raw bytes.
//!
//! Unlike AWS's getting-started view, the view keeps `kinesis_data` as it came (no
//! `JSON_PARSE`, no `WHERE CAN_JSON_PARSE(…)`): a record that is not JSON must reach dynashift to
//! be recorded as a reject, not vanish in a filter.

use crate::dialect::{Dialect, Redshift};
use crate::literal::{string_literal, LiteralError};

/// The columns the view keeps, in this order: all the stream's columns ("Streaming ingestion
/// behavior and data types", Redshift Database Developer Guide).
pub const VIEW_COLUMNS: [&str; 6] = [
    "approximate_arrival_timestamp",
    "partition_key",
    "shard_id",
    "sequence_number",
    "refresh_time",
    "kinesis_data",
];

/// Roles a chain may hold ("CREATE EXTERNAL SCHEMA", IAM_ROLE: "You can chain up to 10
/// roles", with no spaces in the list).
const MAX_CHAINED_ROLES: usize = 10;

/// What the view is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingView {
    /// The external schema that names the stream (`CREATE EXTERNAL SCHEMA … FROM KINESIS`).
    pub external_schema: String,
    /// The IAM role Redshift assumes to read the stream: an ARN, a chain of up to ten ARNs
    /// separated by commas (no spaces), or `default` (the cluster's default role).
    pub iam_role: String,
    /// The Kinesis stream's name.
    pub stream: String,
    /// The view's schema, in the database.
    pub schema: String,
    /// The view's name.
    pub view: String,
    /// `AUTO REFRESH YES` (otherwise dynashift refreshes it before each pass).
    pub auto_refresh: bool,
}

/// A setting `setup_statements` cannot write into SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewSettingError {
    /// The role holds a character no literal may carry.
    #[error(transparent)]
    Literal(#[from] LiteralError),
    /// The stream's name is not one Kinesis allows.
    #[error(
        "{0:?} is not a Kinesis stream's name Redshift can name (1 to 127 letters, digits, `_`, `-` or `.`)"
    )]
    Stream(String),
    /// The role is neither `default` nor an IAM role ARN.
    #[error("{0:?} is neither an IAM role ARN (arn:aws:iam::<account>:role/<name>, chained with commas) nor `default`")]
    Role(String),
}

/// The statements, in the order they must run; each is idempotent but the last (Redshift has
/// no `CREATE MATERIALIZED VIEW IF NOT EXISTS`: setup looks for the view first).
pub fn setup_statements(view: &StreamingView) -> Result<Vec<String>, ViewSettingError> {
    let d = Redshift;
    // Kinesis allows 128 characters, a Redshift identifier 127 bytes ("Names and identifiers").
    let stream_ok = !view.stream.is_empty()
        && view.stream.len() <= 127
        && view.stream.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !stream_ok {
        return Err(ViewSettingError::Stream(view.stream.clone()));
    }
    let role = if view.iam_role.eq_ignore_ascii_case("default") {
        "default".to_string()
    } else if view.iam_role.split(',').count() <= MAX_CHAINED_ROLES
        && view.iam_role.split(',').all(is_role_arn)
    {
        string_literal("source.iam_role", &view.iam_role)?
    } else {
        return Err(ViewSettingError::Role(view.iam_role.clone()));
    };
    let columns: Vec<String> = VIEW_COLUMNS.iter().map(|c| d.quote(c)).collect();
    Ok(vec![
        format!(
            "CREATE EXTERNAL SCHEMA IF NOT EXISTS {} FROM KINESIS IAM_ROLE {role}",
            d.quote(&view.external_schema)
        ),
        format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(&view.schema)),
        format!(
            "CREATE MATERIALIZED VIEW {} AUTO REFRESH {} AS SELECT {} FROM {}",
            d.qualified(&view.schema, &view.view),
            if view.auto_refresh { "YES" } else { "NO" },
            columns.join(", "),
            d.qualified(&view.external_schema, &view.stream),
        ),
    ])
}

/// Whether the stream's name needs `enable_case_sensitive_identifier` on: without it Redshift
/// folds even a quoted name to lower case, and would read another stream, or none
/// ("enable_case_sensitive_identifier", Redshift Database Developer Guide).
pub fn needs_case_sensitive_identifiers(view: &StreamingView) -> bool {
    view.stream.bytes().any(|b| b.is_ascii_uppercase())
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StreamingView {
        StreamingView {
            external_schema: "kds".into(),
            iam_role: "arn:aws:iam::123456789012:role/my_streaming_role".into(),
            stream: "redshift_cdc".into(),
            schema: "cdc".into(),
            view: "ddb_changes".into(),
            auto_refresh: true,
        }
    }

    #[test]
    fn the_view_keeps_every_stream_column_and_the_raw_record() {
        let sql = setup_statements(&view()).unwrap();
        assert_eq!(
            sql[0],
            "CREATE EXTERNAL SCHEMA IF NOT EXISTS \"kds\" FROM KINESIS IAM_ROLE \
             'arn:aws:iam::123456789012:role/my_streaming_role'"
        );
        assert_eq!(sql[1], "CREATE SCHEMA IF NOT EXISTS \"cdc\"");
        assert!(
            sql[2].starts_with("CREATE MATERIALIZED VIEW \"cdc\".\"ddb_changes\" AUTO REFRESH YES AS SELECT")
        );
        assert!(sql[2].ends_with(", \"kinesis_data\" FROM \"kds\".\"redshift_cdc\""), "{}", sql[2]);
        let off =
            setup_statements(&StreamingView { auto_refresh: false, iam_role: "DEFAULT".into(), ..view() })
                .unwrap();
        assert!(off[0].ends_with("IAM_ROLE default"));
        assert!(off[2].contains("AUTO REFRESH NO AS"));
    }

    #[test]
    fn roles_and_streams_that_are_not_names_are_refused() {
        for role in [
            "arn:aws:iam::123456789012:role/x' OR '1",
            "arn:aws:iam::12345:role/x",
            "arn:aws:s3:::bucket",
            "my_streaming_role",
            "arn:aws:iam::123456789012:role/a, arn:aws:iam::123456789012:role/b",
            "",
        ] {
            let e = setup_statements(&StreamingView { iam_role: role.into(), ..view() }).unwrap_err();
            assert!(matches!(e, ViewSettingError::Role(_)), "{role}: {e}");
        }
        let chain = "arn:aws:iam::123456789012:role/a,arn:aws:iam::210987654321:role/b";
        assert!(setup_statements(&StreamingView { iam_role: chain.into(), ..view() }).is_ok());
        for stream in ["", "a\"b", "a b", &"s".repeat(128)] {
            let e = setup_statements(&StreamingView { stream: stream.into(), ..view() }).unwrap_err();
            assert!(matches!(e, ViewSettingError::Stream(_)), "{stream}: {e}");
        }
    }
}
