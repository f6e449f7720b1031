//! `dynashift bench`: the W1 workload, measured. Prints decode throughput on one core,
//! end-to-end changes per second into DuckDB, and peak memory of the replicating process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use dynashift_core::change::Position;
use dynashift_core::decode::{decode_packed, DecodeContext};

use dynashift_testkit::{generate, WorkloadSpec};

mod backfill;
mod kinesis_load;
mod mv_landing;
mod postgres_baseline;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub records: usize,
    pub keys: usize,
    pub dir: Option<PathBuf>,
    pub batch_size: usize,
    pub decode_only: bool,
    /// Replicate into this PostgreSQL database instead of DuckDB (its `dynamodb` and
    /// `_dynashift` schemas are dropped first).
    pub postgres_url: Option<String>,
    /// Read the workload from a four-shard stream at this Kinesis endpoint (kinesalite).
    pub kinesis_endpoint: Option<String>,
    /// Also replicate four times the records over four times the keys, and report how the
    /// rate and peak memory hold up as the tables grow.
    pub growth: bool,
    /// Also backfill `records` generated items from an export-format folder, and compare its
    /// rate with the stream path's.
    pub backfill: bool,
    /// Also land the workload in a PostgreSQL table with the columns of Redshift's
    /// streaming-ingestion view and replicate it with the `redshift-mv` source (needs
    /// `postgres_url`), against the file source's rate.
    pub mv: bool,
}

/// Writes the workload file (once per size and seed) and returns its path.
fn workload_file(dir: &Path, spec: &WorkloadSpec) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("w1-{}-{}-{}.jsonl", spec.records, spec.keys, spec.seed));
    if path.exists() {
        return Ok(path);
    }
    let (lines, _) = generate(spec, true);
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    for l in &lines {
        f.write_all(l.as_bytes())?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

pub fn bench(exe: &Path, options: &BenchOptions) -> anyhow::Result<String> {
    let spec = WorkloadSpec { records: options.records, keys: options.keys, ..WorkloadSpec::w1() };
    let dir = match &options.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join("dynashift-bench"),
    };
    std::fs::create_dir_all(&dir)?;
    eprintln!("generating {} records over {} keys in {} …", spec.records, spec.keys, dir.display());
    let file = workload_file(&dir, &spec)?;
    let bytes = std::fs::read(&file)?;
    let mut report = String::new();

    // Decode: one core, every line, into the packed form batches hold. Lines and positions
    // are cut first: finding them is the source's work, not the decoder's.
    let ctx = DecodeContext::default();
    let shard: std::sync::Arc<str> = std::sync::Arc::from("bench");
    let records: Vec<(&[u8], Position)> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| (line, Position::new(shard.clone(), i.to_string())))
        .collect();
    let started = Instant::now();
    let mut decoded = 0usize;
    for (line, position) in records {
        if decode_packed(line, position, &ctx).is_ok() {
            decoded += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report.push_str(&format!(
        "decode: {} records, {:.1} MB in {:.2} s = {:.0} MB/s, {:.0} records/s (one core)\n",
        decoded,
        bytes.len() as f64 / 1e6,
        secs,
        bytes.len() as f64 / 1e6 / secs,
        decoded as f64 / secs
    ));
    // Kinesis shards take at most 2 MB/s of writes each.
    report.push_str(&format!(
        "one core decodes enough for {:.0} Kinesis shards at 2 MB/s each\n",
        bytes.len() as f64 / 1e6 / secs / 2.0
    ));
    drop(bytes);
    if options.decode_only {
        return Ok(report);
    }

    let (secs, peak_mb) = end_to_end(exe, options, &spec, &dir, &file, false, &mut report)?;
    if options.mv {
        let url = options.postgres_url.as_deref().context("--mv needs --postgres-url")?;
        let landed = mv_landing::land(url, &file)?;
        report.push_str(&format!(
            "landed in {} (4 shards, bytea): {} records in {landed:.1} s (not counted below)\n",
            mv_landing::VIEW,
            spec.records
        ));
        let (mv_secs, _) = end_to_end(exe, options, &spec, &dir, &file, true, &mut report)?;
        report.push_str(&format!(
            "the redshift-mv source at {:.0}% of the file source's changes/s\n",
            100.0 * secs / mv_secs
        ));
    }
    if options.growth {
        let grown = WorkloadSpec { records: spec.records * 4, keys: spec.keys * 4, ..spec.clone() };
        eprintln!("generating {} records over {} keys …", grown.records, grown.keys);
        let grown_file = workload_file(&dir, &grown)?;
        let (grown_secs, grown_peak) =
            end_to_end(exe, options, &grown, &dir, &grown_file, false, &mut report)?;
        let rate = |records: usize, secs: f64| records as f64 / secs;
        report.push_str(&format!(
            "growth: 4x the records and keys at {:.0}% of the rate; peak {} → {} MB\n",
            100.0 * rate(grown.records, grown_secs) / rate(spec.records, secs),
            peak_mb.map_or("?".into(), |m| m.to_string()),
            grown_peak.map_or("?".into(), |m| m.to_string()),
        ));
    }
    if let Some(url) = &options.postgres_url {
        let (rows, secs) = postgres_baseline::copy_final_rows(url)?;
        report.push_str(&format!(
            "baseline: raw binary COPY of the {rows} final rows into empty tables: {secs:.2} s = {:.0} rows/s\n",
            rows as f64 / secs
        ));
    }
    if options.backfill {
        let backfill_secs =
            backfill::backfill(exe, spec.records, options.postgres_url.as_deref(), &dir, &mut report)?;
        report.push_str(&format!(
            "backfill items/s at {:.0}% of the stream path's changes/s\n",
            100.0 * secs / backfill_secs
        ));
    }
    Ok(report)
}

/// One timed `dynashift sync --once` of `file` (or, with `from_view`, of the landing table it
/// was put in) into a fresh target; its seconds and peak MB.
fn end_to_end(
    exe: &Path,
    options: &BenchOptions,
    spec: &WorkloadSpec,
    dir: &Path,
    file: &Path,
    from_view: bool,
    report: &mut String,
) -> anyhow::Result<(f64, Option<u64>)> {
    // End to end: a separate `dynashift run` process into a fresh DuckDB file or database.
    let config = dir.join("bench.toml");
    let target = match &options.postgres_url {
        Some(url) => {
            postgres_baseline::reset(url)?;
            format!("kind = \"postgres\"\nurl = {url:?}")
        }
        None => {
            let db = dir.join("bench.duckdb");
            let _ = std::fs::remove_file(&db);
            let _ = std::fs::remove_file(dir.join("bench.duckdb.wal"));
            format!("kind = \"duckdb\"\npath = {:?}", db.display().to_string())
        }
    };
    let source = match (&options.kinesis_endpoint, &options.postgres_url) {
        (_, Some(url)) if from_view => {
            format!("kind = \"redshift-mv\"\nview = {:?}\nurl = {url:?}", mv_landing::VIEW)
        }
        (Some(endpoint), _) => {
            let stream = format!("w1-{}-{}", spec.records, std::process::id());
            let put_secs = kinesis_load::load_stream(endpoint, &stream, file)?;
            report.push_str(&format!(
                "put into a {}-shard stream: {} records in {put_secs:.1} s (not counted below)\n",
                kinesis_load::SHARDS,
                spec.records
            ));
            format!(
                "kind = \"kinesis\"\nstream = {stream:?}\nregion = \"us-east-1\"\nendpoint_url = {endpoint:?}\n\
                 flush_interval_ms = 200"
            )
        }
        _ => format!("kind = \"file\"\npath = {:?}", file.display().to_string()),
    };
    std::fs::write(
        &config,
        format!(
            "[source]\n{source}\n\n[target]\n{target}\n\n[defaults]\nbatch_size = {}\n",
            options.batch_size
        ),
    )?;
    let started = Instant::now();
    let output = std::process::Command::new(exe)
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting `dynashift run`")?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(output.status.success(), "`dynashift run` failed: {}", output.status);
    // The child's own figure, read once its warehouse is closed: sampling it from here
    // missed the final checkpoint, and getrusage's figure for children would also count
    // this process's pages, which the child shares until it execs.
    let summary = String::from_utf8_lossy(&output.stdout);
    // Absent where the system has no /proc.
    let peak_mb = summary
        .lines()
        .find_map(|l| l.strip_prefix("peak memory ")?.strip_suffix(" MB")?.parse::<u64>().ok());
    report.push_str(&format!(
        "end-to-end ({} → {}): {} changes in {:.2} s = {:.0} changes/s, batch size {}\n",
        match (from_view, &options.kinesis_endpoint) {
            (true, _) => "view (landing table)",
            (false, Some(_)) => "Kinesis",
            (false, None) => "file",
        },
        if options.postgres_url.is_some() { "PostgreSQL" } else { "DuckDB" },
        spec.records,
        secs,
        spec.records as f64 / secs,
        options.batch_size
    ));
    match peak_mb {
        Some(mb) => report.push_str(&format!("peak RSS of the replicating process: {mb} MB\n")),
        None => report.push_str("peak RSS of the replicating process: not reported (no /proc)\n"),
    }
    Ok((secs, peak_mb))
}
