//! The PostgreSQL sink against PostgreSQL's own `COPY` from a file: N rows (default
//! 1 M) into an append table and into an upsert table with 10 k keys, committed in
//! epochs of 100 k rows through the sink's exactly-once path (progress row, COPY,
//! staging and `INSERT … ON CONFLICT` in one transaction per epoch).

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_connectors::postgres::{PostgresSink, copy_text};
use sluice_runtime::{CommitOnCheckpoint, Sink};
use sluice_types::{ConnectorOptions, Epoch, Position};

const KEYS: usize = 10_000;
const EPOCH_ROWS: usize = 100_000;
/// Divides EPOCH_ROWS, so epochs end on batch boundaries.
const BATCH: usize = 2_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "window_start",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("readings", DataType::Int64, false),
        Field::new("avg_temperature", DataType::Float64, true),
    ]))
}

/// Row i: key i mod 10 k, one 5-minute window per 10 k rows.
fn batches(rows: usize) -> Result<Vec<RecordBatch>> {
    let schema = schema();
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows {
        let n = BATCH.min(rows - i);
        let r = i..i + n;
        out.push(RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    r.clone()
                        .map(|j| 1_714_521_600_000 + (j / KEYS) as i64 * 300_000),
                )),
                Arc::new(StringArray::from_iter_values(
                    r.clone().map(|j| format!("sensor-{:05}", j % KEYS)),
                )),
                Arc::new(Int64Array::from_iter_values(r.clone().map(|j| j as i64))),
                Arc::new(Float64Array::from_iter_values(
                    r.map(|j| 15.0 + (j % 2000) as f64 / 100.0),
                )),
            ],
        )?);
        i += n;
    }
    Ok(out)
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Rows per second through the sink into `table` (keyed when `key` is set).
fn through_sink(url: &str, table: &str, key: Option<&str>, data: &[RecordBatch]) -> Result<f64> {
    let mut options = ConnectorOptions::default();
    options.insert("url", url.to_string(), Position::default());
    options.insert("table", table.to_string(), Position::default());
    if let Some(k) = key {
        options.insert("primary_key", k.to_string(), Position::default());
    }
    let mut sink = CommitOnCheckpoint::new(PostgresSink::open(table, &options, schema())?);
    sink.open("bench", table)?;
    let total: usize = data.iter().map(RecordBatch::num_rows).sum();
    let t0 = Instant::now();
    let (mut rows, mut epoch) = (0usize, 0u64);
    for b in data {
        sink.write_batch(b)?;
        rows += b.num_rows();
        if rows.is_multiple_of(EPOCH_ROWS) || rows == total {
            epoch += 1;
            sink.pre_commit(Epoch(epoch))?;
            sink.commit(Epoch(epoch))?;
        }
    }
    sink.finish()?;
    Ok(rows as f64 / t0.elapsed().as_secs_f64())
}

pub fn run_postgres(rows: usize) -> Result<()> {
    // A database of its own, made afresh: SLUICE_BENCH_DATABASE_URL names the server.
    let admin = std::env::var("SLUICE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    psql(&admin, "DROP DATABASE IF EXISTS sluice_bench")?;
    psql(&admin, "CREATE DATABASE sluice_bench")?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/sluice_bench");
    let data = batches(rows)?;

    // PostgreSQL's own COPY of the same rows, from a file the server reads.
    let file = std::env::temp_dir().join("sluice-bench-rows.tsv");
    let mut text = Vec::new();
    for b in &data {
        copy_text(b, &mut text).map_err(anyhow::Error::msg)?;
    }
    std::fs::write(&file, &text)?;
    psql(
        &url,
        "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (window_start timestamptz NOT NULL, \
         sensor_id text NOT NULL, readings bigint NOT NULL, avg_temperature double precision)",
    )?;
    let t0 = Instant::now();
    psql(&url, &format!("COPY bench_copy FROM '{}'", file.display()))?;
    let copy = rows as f64 / t0.elapsed().as_secs_f64();

    let append = through_sink(&url, "bench_append", None, &data)?;
    let upsert = through_sink(&url, "bench_upsert", Some("sensor_id"), &data)?;
    for (name, rate) in [
        ("postgres-copy-from-file", copy),
        ("postgres-sink-append", append),
        ("postgres-sink-upsert-10k-keys", upsert),
    ] {
        println!(
            "{}",
            serde_json::json!({
                "scenario": name,
                "rows": rows,
                "rows_per_s": rate.round(),
                "vs_copy": ((rate / copy) * 100.0).round() / 100.0,
            })
        );
    }
    let _ = std::fs::remove_file(&file);
    Ok(())
}
