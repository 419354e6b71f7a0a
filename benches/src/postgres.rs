//! The PostgreSQL sink against PostgreSQL's own `COPY` from a file (text, as the
//! reference, and binary): N rows (default 1 M) into an append table, an upsert table
//! with 10 k keys, one with a key per row, and a changelog over 10 k keys, committed in
//! epochs of 100 k rows through the sink's exactly-once path (progress row, COPY,
//! staging and `INSERT … ON CONFLICT` in one transaction per epoch). Each table's
//! contents are checked afterwards.

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_connectors::postgres::{PostgresSink, copy_binary_stream, copy_text};
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
    query(url, sql).map(drop)
}

/// What `sql` prints, unaligned and without headers.
pub(crate) fn query(url: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-tAc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fails unless `table` holds `want` (`count|min|max|sum` of readings, the sum of
/// avg_temperature to 2 places, and the latest window_start).
fn check(url: &str, table: &str, want: &str) -> Result<()> {
    let got = query(
        url,
        &format!(
            "SELECT count(*), min(readings), max(readings), sum(readings), \
             round(sum(avg_temperature)::numeric, 2), \
             to_char(max(window_start) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
             FROM {table}"
        ),
    )?;
    if got != want {
        bail!("{table} holds {got}, expected {want}");
    }
    Ok(())
}

/// The same rows as an updating result's changelog: a key's first row is `+I`, each
/// later one a `-U` of the row before it and a `+U` of itself (adjacent, as operators put
/// them out).
fn changelog(data: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::compute::interleave_record_batch;
    use sluice_types::RowKind;
    let all: Vec<&RecordBatch> = data.iter().collect();
    let schema = sluice_types::changelog::with_op(&schema());
    let mut out = Vec::new();
    let mut at = 0usize;
    for (bi, b) in data.iter().enumerate() {
        let mut picks = Vec::new();
        let mut kinds = Vec::new();
        for r in 0..b.num_rows() {
            let j = at + r;
            if j >= KEYS {
                // Row j - KEYS: batch and row (batches are all BATCH rows but the last).
                let p = j - KEYS;
                picks.push((p / BATCH, p % BATCH));
                kinds.push(RowKind::UpdateBefore as i8);
                kinds.push(RowKind::UpdateAfter as i8);
            } else {
                kinds.push(RowKind::Insert as i8);
            }
            picks.push((bi, r));
        }
        at += b.num_rows();
        let rows = interleave_record_batch(&all, &picks)?;
        let mut cols = rows.columns().to_vec();
        cols.push(Arc::new(datafusion::arrow::array::Int8Array::from(kinds)));
        out.push(RecordBatch::try_new(schema.clone(), cols)?);
    }
    Ok(out)
}

/// Rows per second through the sink into `table` (keyed when `key` is set).
fn through_sink(url: &str, table: &str, key: Option<&str>, data: &[RecordBatch]) -> Result<f64> {
    let mut options = ConnectorOptions::default();
    options.insert("url", url.to_string(), Position::default());
    options.insert("table", table.to_string(), Position::default());
    if let Some(k) = key {
        options.insert("primary_key", k.to_string(), Position::default());
    }
    let mut sink = CommitOnCheckpoint::new(PostgresSink::open(table, &options, data[0].schema())?);
    sink.open("bench", table)?;
    let t0 = Instant::now();
    let (mut rows, mut epoch) = (0usize, 0u64);
    for (i, b) in data.iter().enumerate() {
        sink.write_batch(b)?;
        rows += b.num_rows();
        // An epoch per EPOCH_ROWS rows of the input (each batch is BATCH of them).
        if (i + 1).is_multiple_of(EPOCH_ROWS / BATCH) || i + 1 == data.len() {
            epoch += 1;
            sink.pre_commit(Epoch(epoch))?;
            sink.commit(Epoch(epoch))?;
        }
    }
    sink.finish()?;
    Ok(rows as f64 / t0.elapsed().as_secs_f64())
}

/// A database of its own, made afresh, on the server SLUICE_BENCH_DATABASE_URL names
/// (default the local one): its URL.
pub(crate) fn fresh_database(name: &str) -> Result<String> {
    let admin = std::env::var("SLUICE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"))?;
    psql(&admin, &format!("CREATE DATABASE {name}"))?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

pub fn run_postgres(rows: usize) -> Result<()> {
    let url = fresh_database("sluice_bench")?;
    let data = batches(rows)?;

    // PostgreSQL's own COPY of the same rows, from a file the server reads: in the text
    // format (the reference) and in the binary one.
    let file = std::env::temp_dir().join("sluice-bench-rows.tsv");
    let mut text = Vec::new();
    for b in &data {
        copy_text(b, &mut text).map_err(anyhow::Error::msg)?;
    }
    std::fs::write(&file, &text)?;
    let binary_file = std::env::temp_dir().join("sluice-bench-rows.pgcopy");
    std::fs::write(
        &binary_file,
        copy_binary_stream(&data).map_err(anyhow::Error::msg)?,
    )?;
    let copy_from = |table: &str, key: &str, from: String| -> Result<f64> {
        psql(
            &url,
            &format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (window_start timestamptz NOT NULL, \
                 sensor_id text NOT NULL, readings bigint NOT NULL {key}, avg_temperature double precision)"
            ),
        )?;
        let t0 = Instant::now();
        psql(&url, &format!("COPY {table} FROM {from}"))?;
        Ok(rows as f64 / t0.elapsed().as_secs_f64())
    };
    let copy = copy_from("bench_copy", "", format!("'{}'", file.display()))?;
    let binary_from = format!("'{}' (FORMAT binary)", binary_file.display());
    let copy_binary = copy_from("bench_copy_binary", "", binary_from.clone())?;
    // Into a table keyed as the key-per-row upsert's is.
    let copy_keyed = copy_from("bench_copy_keyed", "PRIMARY KEY", binary_from)?;

    // What every table holds: row i has readings i, avg_temperature 15 + (i mod 2000) /
    // 100 and the window of row i / 10 k.
    let windows = rows.div_ceil(KEYS) as i64;
    let last_window = sluice_types::format_millis(1_714_521_600_000 + (windows - 1) * 300_000);
    let all = |from: usize| -> String {
        let (n, sum) = (rows - from, (from..rows).map(|j| j as i64).sum::<i64>());
        // In hundredths, exactly.
        let temps: i64 = (from..rows).map(|j| 1500 + (j % 2000) as i64).sum();
        format!(
            "{n}|{from}|{}|{sum}|{}.{:02}|{last_window}",
            rows - 1,
            temps / 100,
            temps % 100
        )
    };
    check(&url, "bench_copy", &all(0))?;
    check(&url, "bench_copy_binary", &all(0))?;
    check(&url, "bench_copy_keyed", &all(0))?;

    let append = through_sink(&url, "bench_append", None, &data)?;
    check(&url, "bench_append", &all(0))?;
    let upsert = through_sink(&url, "bench_upsert", Some("sensor_id"), &data)?;
    check(&url, "bench_upsert", &all(rows.saturating_sub(KEYS)))?;
    let unique = through_sink(&url, "bench_upsert_unique", Some("readings"), &data)?;
    check(&url, "bench_upsert_unique", &all(0))?;
    // A changelog: one `-U`/`+U` pair per row after a key's first, counted as one change.
    let changes = changelog(&data)?;
    let raw = through_sink(&url, "bench_changelog", Some("sensor_id"), &changes)?;
    let changelog_rate =
        raw * rows as f64 / changes.iter().map(RecordBatch::num_rows).sum::<usize>() as f64;
    // Each key's row is its last change: readings holds the row's number.
    check(&url, "bench_changelog", &all(rows.saturating_sub(KEYS)))?;
    for (name, rate) in [
        ("postgres-copy-from-file", copy),
        ("postgres-copy-binary-from-file", copy_binary),
        ("postgres-copy-binary-keyed-from-file", copy_keyed),
        ("postgres-sink-append", append),
        ("postgres-sink-upsert-10k-keys", upsert),
        ("postgres-sink-upsert-key-per-row", unique),
        ("postgres-sink-changelog-10k-keys", changelog_rate),
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
    let _ = std::fs::remove_file(&binary_file);
    Ok(())
}
