//! Nexmark: each query of `benches/nexmark/` at parallelism 1 and 2 over N events (all
//! three tables together) into a sink that only counts, in a process of its own so that
//! its peak memory is its own. The events come from the Nexmark source (split by event
//! number over the tasks), or with `--input json` from JSON-lines files of the same
//! events, one per table (split by byte range), as other engines are measured from. Its final row count (an updating query's changelog
//! counted as inserts minus retractions) is checked against the oracle of
//! `benches/nexmark/oracle/` (DataFusion over the same events as a batch), so a fast
//! wrong answer cannot pass. Prints a table like nexmark/nexmark's README, then one JSON
//! object per query.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sluice::engine::{JobRun, RunOptions};
use sluice_connectors::nexmark::{NexmarkOptions, NexmarkSource};
use sluice_runtime::Source;
use sluice_types::{ConnectorOptions, Position};

use crate::{peak_rss_mib, timed_run};

pub const QUERIES: &[&str] = &[
    "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q9", "q11", "q13", "q14", "q15", "q16", "q17",
    "q18", "q19", "q20", "q21", "q22",
];

/// Counts rows: those put in less those taken back (a changelog's final table size).
struct CountingSink(Arc<std::sync::atomic::AtomicI64>);

impl sluice_runtime::Sink for CountingSink {
    fn write_batch(
        &mut self,
        batch: &datafusion::arrow::record_batch::RecordBatch,
    ) -> sluice_runtime::Result<()> {
        let net: i64 = sluice_types::changelog::kinds_of(batch)
            .iter()
            .map(|k| if k.is_retraction() { -1 } else { 1 })
            .sum();
        self.0.fetch_add(net, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// As the blackhole sink it stands for.
    fn ordered(&self) -> bool {
        false
    }

    fn finish(&mut self) -> sluice_runtime::Result<()> {
        Ok(())
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nexmark")
}

fn side_input() -> Result<PathBuf> {
    let path = std::env::temp_dir().join("sluice-bench-side_input.jsonl");
    let mut text = String::new();
    for k in (0..10_000).step_by(7) {
        text.push_str(&format!("{{\"key\":{k},\"value\":\"v{k}\"}}\n"));
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Where the events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The Nexmark source.
    Generated,
    /// JSON-lines files of the same events, one per table.
    Json,
}

impl Input {
    pub fn parse(s: &str) -> Result<Input> {
        match s {
            "generated" => Ok(Input::Generated),
            "json" => Ok(Input::Json),
            _ => bail!("--input generated|json, not {s}"),
        }
    }
}

/// The directory the JSON files of `events` events are written to.
fn json_dir(events: usize) -> PathBuf {
    std::env::temp_dir().join(format!("sluice-bench-nexmark-{events}"))
}

/// `tables.sql` with each Nexmark table read from `<dir>/<table>.jsonl` instead.
fn json_tables(tables: &str, dir: &std::path::Path) -> Result<String> {
    let mut out = tables.to_string();
    for t in ["person", "auction", "bid"] {
        let from = format!("WITH (connector = 'nexmark', table = '{t}'");
        let start = out
            .find(&from)
            .with_context(|| format!("tables.sql: {from}"))?;
        let end = start
            + out[start..]
                .find(");")
                .with_context(|| format!("tables.sql: the end of {t}"))?;
        let path = dir.join(format!("{t}.jsonl"));
        out.replace_range(
            start..end,
            &format!("WITH (connector = 'file', path = '{}'", path.display()),
        );
    }
    Ok(out)
}

/// Runs one query's stream and prints its figures as JSON.
pub fn run_one(q: &str, events: usize, parallelism: usize, input: Input) -> Result<()> {
    let tables = std::fs::read_to_string(dir().join("tables.sql"))?;
    let tables = match input {
        Input::Generated => tables,
        Input::Json => json_tables(&tables, &json_dir(events))?,
    };
    let sql = format!(
        "{tables}\nCREATE TABLE nexmark_out WITH (connector = 'blackhole');\n{}",
        std::fs::read_to_string(dir().join(format!("{q}.sql")))?
    );
    let side = side_input()?.display().to_string();
    let n = events.to_string();
    let graph = sluice::plan_with_env(&sql, &|k| match k {
        "EVENTS" => Some(n.clone()),
        "SIDE_INPUT" => Some(side.clone()),
        _ => None,
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let net = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let counter = net.clone();
    let job = JobRun::build_with_sinks(
        &graph,
        &RunOptions {
            parallelism,
            ..RunOptions::default()
        },
        &|_| Some(Box::new(CountingSink(counter.clone())) as Box<dyn sluice_runtime::Sink>),
    )
    .context("building the job")?;
    let (snap, wall, cpu) = timed_run(job)?;
    println!(
        "{}",
        serde_json::json!({
            "query": q,
            "parallelism": parallelism,
            "events": events,
            "rows_out": snap.rows_out,
            "rows_final": net.load(std::sync::atomic::Ordering::Relaxed),
            "wall_s": (wall * 1000.0).round() / 1000.0,
            "cpu_s": (cpu * 100.0).round() / 100.0,
            "events_per_s": (events as f64 / wall).round(),
            "events_per_cpu_s": (events as f64 / cpu).round(),
            "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

/// A table's batches as JSON lines in `json_dir(events)`, as a source would read them.
fn write_json(name: &str, batches: &[RecordBatch], events: usize) -> Result<()> {
    let dir = json_dir(events);
    std::fs::create_dir_all(&dir)?;
    let mut bytes = Vec::new();
    sluice_runtime::output::json_lines(batches, &mut bytes)?;
    std::fs::write(dir.join(format!("{name}.jsonl")), &bytes)?;
    let lines: usize = batches.iter().map(|b| b.num_rows()).sum();
    eprintln!(
        "{name}.jsonl: {lines} lines, {} bytes a line",
        bytes.len() / lines.max(1)
    );
    Ok(())
}

fn table(name: &str, events: usize) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut o = ConnectorOptions::default();
    for (k, v) in [
        ("connector", "nexmark".to_string()),
        ("table", name.to_string()),
        ("events", events.to_string()),
        ("disorder", "2s".to_string()),
    ] {
        o.insert(k, v, Position::default());
    }
    let opts = NexmarkOptions::parse(&o).map_err(|p| anyhow::anyhow!(p.message))?;
    let schema = opts.table.schema();
    let mut s = NexmarkSource::new(name, opts, schema.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let mut batches = Vec::new();
    while let Some(b) = s.next_batch()? {
        batches.push(b);
    }
    Ok((schema, batches))
}

/// How many rows the oracle gives for `q` over the same events.
fn oracle_rows(ctx: &SessionContext, q: &str) -> Result<u64> {
    let sql = std::fs::read_to_string(dir().join(format!("oracle/{q}.sql")))?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let batches = rt.block_on(async { ctx.sql(&sql).await?.collect().await })?;
    Ok(batches.iter().map(|b| b.num_rows() as u64).sum())
}

/// Every query (or those named), each in its own process at each parallelism, checked
/// against the oracle.
pub fn run_all(
    events: usize,
    only: Option<&str>,
    parallelisms: &[usize],
    input: Input,
) -> Result<()> {
    let queries: Vec<&str> = match only {
        Some(list) => list.split(',').collect(),
        None => QUERIES.to_vec(),
    };
    eprintln!("building the oracle's tables ({events} events)…");
    let ctx = SessionContext::new();
    for name in ["person", "auction", "bid"] {
        let (schema, batches) = table(name, events)?;
        if input == Input::Json {
            write_json(name, &batches, events)?;
        }
        ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    rt.block_on(ctx.register_json(
        "side_input",
        side_input()?.to_str().unwrap_or_default(),
        datafusion::prelude::JsonReadOptions::default().file_extension(".jsonl"),
    ))?;
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let input_name = match input {
        Input::Generated => "generated",
        Input::Json => "json",
    };
    for q in queries {
        eprintln!("{q}: the oracle…");
        let want = oracle_rows(&ctx, q)?;
        for &p in parallelisms {
            eprintln!("{q}: streaming at parallelism {p}…");
            let out = Command::new(&exe)
                .args(["nexmark-one", q, "--events", &events.to_string()])
                .args(["--parallelism", &p.to_string(), "--input", input_name])
                .output()?;
            if !out.status.success() {
                bail!("{q} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let line = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value =
                serde_json::from_str(line.trim()).with_context(|| format!("{q} printed {line}"))?;
            let got = v["rows_final"].as_u64().unwrap_or(0);
            if got != want {
                failed.push(format!(
                    "{q} at parallelism {p}: {got} rows, the oracle {want}"
                ));
            }
            rows.push((q, v, want));
        }
    }
    println!(
        "| query | parallelism | events | wall s | CPU s | events/s | events/CPU s | peak MiB | rows out | final rows | oracle rows |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (q, v, want) in &rows {
        println!(
            "| {q} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {want} |",
            v["parallelism"],
            v["events"],
            v["wall_s"],
            v["cpu_s"],
            v["events_per_s"],
            v["events_per_cpu_s"],
            v["peak_rss_mib"],
            v["rows_out"],
            v["rows_final"]
        );
    }
    for (_, v, _) in &rows {
        println!("{v}");
    }
    if !failed.is_empty() {
        bail!("output differs from the oracle: {}", failed.join("; "));
    }
    Ok(())
}
