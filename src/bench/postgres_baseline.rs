//! The PostgreSQL side of `dynashift bench`: a clean database before the run, and the
//! baseline after it — raw binary `COPY` of the replicated tables' final rows into empty
//! copies of those tables, the fastest any loader could write the same data.

use std::time::Instant;

use anyhow::Context;
use futures_util::{SinkExt, TryStreamExt};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Drops what an earlier run replicated, then checkpoints so the server does not write out
/// the earlier run's pages while this one is timed (that cost W1 a quarter of its speed).
pub fn reset(url: &str) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(url).await?;
        client
            .batch_execute(
                "DROP SCHEMA IF EXISTS dynamodb CASCADE; DROP SCHEMA IF EXISTS _dynashift CASCADE; \
                 DROP SCHEMA IF EXISTS dynashift_baseline CASCADE",
            )
            .await
            .context("dropping the previous run's schemas")?;
        if let Err(e) = client.batch_execute("CHECKPOINT").await {
            eprintln!("note: CHECKPOINT refused ({e}); the earlier run's writes may slow this one");
        }
        Ok(())
    })
}

/// Copies every replicated table out (binary), then times loading those bytes into empty
/// tables of the same shape. Returns (rows, seconds).
pub fn copy_final_rows(url: &str) -> anyhow::Result<(u64, f64)> {
    runtime()?.block_on(async {
        let client = connect(url).await?;
        client.batch_execute("CREATE SCHEMA dynashift_baseline").await?;
        let tables: Vec<String> = client
            .query("SELECT tablename FROM pg_tables WHERE schemaname = 'dynamodb' ORDER BY 1", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut dumps = Vec::new();
        for t in &tables {
            let quoted = format!("\"{}\"", t.replace('"', "\"\""));
            client
                .batch_execute(&format!("CREATE TABLE dynashift_baseline.{quoted} (LIKE dynamodb.{quoted})"))
                .await?;
            let out = client.copy_out(&format!("COPY dynamodb.{quoted} TO STDOUT (FORMAT binary)")).await?;
            let chunks: Vec<bytes::Bytes> = out.try_collect().await?;
            dumps.push((quoted, chunks));
        }
        let started = Instant::now();
        let mut copied = 0u64;
        for (quoted, chunks) in dumps {
            let sink = client
                .copy_in(&format!("COPY dynashift_baseline.{quoted} FROM STDIN (FORMAT binary)"))
                .await?;
            futures_util::pin_mut!(sink);
            for chunk in chunks {
                sink.send(chunk).await?;
            }
            copied += sink.finish().await?;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok((copied, secs))
    })
}
