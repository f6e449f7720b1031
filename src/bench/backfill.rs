//! `bench --backfill`: a backfill of generated W1 `Orders` items from an export-format folder,
//! timed end to end with the backfilling process's peak memory.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

/// Writes (once per size) an export of `items` items and backfills it into a fresh target;
/// returns its seconds.
pub fn backfill(
    exe: &Path,
    items: usize,
    postgres_url: Option<&str>,
    dir: &Path,
    report: &mut String,
) -> anyhow::Result<f64> {
    let export = dir.join(format!("export-{items}"));
    if !export.join("manifest-summary.json").exists() {
        eprintln!("writing an export of {items} items in {} …", export.display());
        let _ = std::fs::remove_dir_all(&export);
        dynashift_testkit::export::write_export_owned(
            &export,
            "Orders",
            dynashift_testkit::export::orders_items(items, 1),
            9,
            "2026-01-01T00:00:00.000Z",
        );
    }
    let target = match postgres_url {
        Some(url) => {
            super::postgres_baseline::reset(url)?;
            format!("kind = \"postgres\"\nurl = {url:?}")
        }
        None => {
            let db = dir.join("backfill.duckdb");
            let _ = std::fs::remove_file(&db);
            let _ = std::fs::remove_file(dir.join("backfill.duckdb.wal"));
            format!("kind = \"duckdb\"\npath = {:?}", db.display().to_string())
        }
    };
    let config = dir.join("backfill.toml");
    std::fs::write(
        &config,
        format!("[source]\nkind = \"file\"\npath = \"-\"\n\n[target]\n{target}\n\n[tables.\"Orders\"]\nkeys = [\"orderId\"]\n"),
    )?;
    let started = Instant::now();
    let output = std::process::Command::new(exe)
        .args(["backfill", "--config"])
        .arg(&config)
        .arg("--from-export")
        .arg(&export)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting `dynashift backfill`")?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "`dynashift backfill` failed: {}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let peak =
        stdout.lines().find_map(|l| l.strip_prefix("peak memory ")?.strip_suffix(" MB")?.parse::<u64>().ok());
    report.push_str(&format!(
        "backfill (export → {}): {items} items in {secs:.2} s = {:.0} items/s; peak RSS {}\n",
        if postgres_url.is_some() { "PostgreSQL" } else { "DuckDB" },
        items as f64 / secs,
        peak.map_or("not reported".into(), |mb| format!("{mb} MB"))
    ));
    Ok(secs)
}
