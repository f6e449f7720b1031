//! `dynashift setup`: the one-time SQL, printed (`--print`, which connects to nothing) or run,
//! idempotently. For a `redshift-mv` source, the streaming view first: created with its external
//! schema when the configuration names the stream and the IAM role, or, when a relation of that
//! name exists, adopted once its columns are checked. Then the control tables in the target.

use dynashift_core::sql::{control_tables, Layout};
use dynashift_core::streaming_view::{needs_case_sensitive_identifiers, setup_statements};

use crate::config::{Config, MvSourceConfig, SourceConfig};
use crate::source::redshift_mv::{MvError, MvSource, REQUIRED_COLUMNS};

/// The SQL `setup` runs, with comments saying where each part runs and when it is skipped.
pub fn script(config: &Config) -> anyhow::Result<String> {
    let mut out = String::from("-- The one-time SQL of `dynashift setup`; printing it ran nothing.\n");
    if let SourceConfig::RedshiftMv(mv) = &config.source {
        let name = format!("{}.{}", mv.schema, mv.view);
        match &mv.streaming {
            Some(view) => {
                out.push_str(&format!(
                    "\n-- On the view's server: Redshift reads the Kinesis stream {} into {name}.\n\
                     -- (When {name} exists, setup skips this part and adopts it once it has the columns {}.)\n",
                    view.stream,
                    REQUIRED_COLUMNS.join(", ")
                ));
                if needs_case_sensitive_identifiers(view) {
                    out.push_str(
                        "-- The stream's name has capitals: turn enable_case_sensitive_identifier on for the\n\
                         -- database (the cluster's parameter group, or a Serverless workgroup's configuration)\n\
                         -- first, or Redshift reads it lower-cased.\n",
                    );
                }
                for sql in setup_statements(view)? {
                    out.push_str(&sql);
                    out.push_str(";\n");
                }
            }
            None => out.push_str(&format!(
                "\n-- {name} is adopted as it is, once it has the columns {} (set source.stream and\n\
                 -- source.iam_role to have setup create it).\n",
                REQUIRED_COLUMNS.join(", ")
            )),
        }
    }
    let dialect = config.target.dialect();
    out.push_str(&format!(
        "\n-- In the target ({}): dynashift's control tables (tables are made as changes arrive).\n",
        dialect.name()
    ));
    let layout = Layout { target_schema: config.target.schema().to_string(), ..Layout::default() };
    for statement in control_tables(dialect, &layout) {
        out.push_str(&statement.sql);
        out.push_str(";\n");
    }
    Ok(out)
}

/// Runs setup: the view (created or adopted), then the control tables. Returns one line per
/// part saying what was done.
pub fn run(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    if let SourceConfig::RedshiftMv(mv) = &config.source {
        done.push(prepare_view(mv)?);
    }
    let mut warehouse = crate::run::open_warehouse(config)?;
    warehouse.setup()?;
    done.push(format!(
        "target: the control tables are ready in {} ({}); tables are made in {} as changes arrive",
        Layout::default().control_schema,
        warehouse.dialect().name(),
        config.target.schema(),
    ));
    Ok(done)
}

/// Adopts the view if a relation of its name exists (refusing one without the columns the
/// source reads), or creates it.
fn prepare_view(mv: &MvSourceConfig) -> anyhow::Result<String> {
    let name = format!("{}.{}", mv.schema, mv.view);
    let mut source = MvSource::connect(mv)?;
    if source.columns()?.is_some() {
        source.check_columns()?;
        return Ok(format!("source: adopted {name}, which has the columns {}", REQUIRED_COLUMNS.join(", ")));
    }
    let Some(view) = &mv.streaming else {
        return Err(MvError::Absent { view: name }.into());
    };
    if needs_case_sensitive_identifiers(view) {
        let setting = source.setting("enable_case_sensitive_identifier")?;
        if !matches!(setting.as_deref(), Some("on" | "true")) {
            anyhow::bail!(
                "source.stream = {:?} has capitals, and enable_case_sensitive_identifier is {} on the view's server: \
                 Redshift would fold the name to lower case and read another stream, or none; turn it on for the \
                 database in the cluster's parameter group, or in a Serverless workgroup's configuration \
                 (auto refresh does not see a session's setting)",
                view.stream,
                setting.as_deref().unwrap_or("not set")
            );
        }
    }
    for sql in setup_statements(view)? {
        source.execute(&sql)?;
    }
    Ok(format!(
        "source: created {name} over the Kinesis stream {} (external schema {}, AUTO REFRESH {})",
        view.stream,
        view.external_schema,
        if view.auto_refresh { "YES" } else { "NO" }
    ))
}
