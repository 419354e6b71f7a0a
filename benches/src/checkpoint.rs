//! Checkpoint cost with large window state: N keys (default 1 M) in one open 5-minute
//! window (count/avg/min/max per key), a stop that writes the final checkpoint, then a
//! restart from it: how long the checkpoint took, its size on disk, and the time from
//! starting the restored job to its first processed event. Before that, the state's
//! memory: the peak RSS of a process holding the N keys less that of the same job
//! holding none, per key (each in a process of its own), before and after its final
//! checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice::checkpoints::{CheckpointOptions, Restore};
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::{Positions, Source, SourcePoll};

use crate::{JOB, T0, peak_rss_mib};

/// Every key once, all in the first window; then nothing (the source stays open) until
/// the job is stopped. Resumable: its position is the number of rows emitted.
struct StateSource {
    schema: SchemaRef,
    keys: usize,
    next: usize,
}

const BATCH: usize = 8192;

impl Source for StateSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn next_batch(&mut self) -> sluice_runtime::Result<Option<RecordBatch>> {
        Ok(None)
    }
    fn position(&self) -> Positions {
        Positions::from([("0".to_string(), self.next as i64)])
    }
    fn seek(&mut self, position: &Positions) -> sluice_runtime::Result<()> {
        self.next = position.get("0").copied().unwrap_or(0).max(0) as usize;
        Ok(())
    }
    fn poll(&mut self) -> sluice_runtime::Result<SourcePoll> {
        if self.next >= self.keys {
            std::thread::sleep(Duration::from_millis(5));
            return Ok(SourcePoll::Idle);
        }
        let r = self.next..(self.next + BATCH).min(self.keys);
        self.next = r.end;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    r.clone().map(|k| format!("sensor-{k:07}")),
                )),
                Arc::new(Float64Array::from_iter_values(
                    r.clone().map(|k| 15.0 + (k % 2000) as f64 / 100.0),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    r.map(|k| T0 + (k % 60_000) as i64),
                )),
            ],
        )?;
        Ok(SourcePoll::Batch {
            partition: 0,
            batch,
        })
    }
}

fn job(keys: usize, next: usize, dir: &std::path::Path, restore: Restore) -> Result<JobRun> {
    let graph = sluice::plan_with_env(JOB, &|k| (k == "INPUT").then(|| "/dev/null".to_string()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let schema = graph.sources[0].schema.clone();
    let mut cp = CheckpointOptions::new(dir, "bench");
    cp.restore = restore;
    let options = RunOptions {
        parallelism: 1,
        checkpoint_interval: Some(Duration::from_secs(3600)),
        checkpoints: Some(cp),
        ..RunOptions::default()
    };
    let mut run = JobRun::build(&graph, &options).context("building the job")?;
    run.spec.sources[0].source = Box::new(StateSource { schema, keys, next });
    Ok(run)
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let t0 = Instant::now();
    while !f() {
        anyhow::ensure!(t0.elapsed() < limit, "{what} did not happen in {limit:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// A job reading `keys` new keys on a thread of its own, once it has read them all.
struct Started {
    handle: sluice_runtime::JobHandle,
    metrics: Arc<sluice_runtime::JobMetrics>,
    thread: std::thread::JoinHandle<Result<()>>,
}

fn start_and_read(keys: usize, dir: &std::path::Path) -> Result<Started> {
    let run = job(keys, 0, dir, Restore::Fresh)?;
    let (handle, metrics) = (run.handle.clone(), run.handle.metrics.clone());
    let thread = std::thread::spawn(move || run.run());
    wait_for("reading the keys", Duration::from_secs(600), || {
        metrics.snapshot().events_in >= keys as u64
    })?;
    Ok(Started {
        handle,
        metrics,
        thread,
    })
}

impl Started {
    /// Stops the job (writing its final checkpoint) and waits for it.
    fn stop(self) -> Result<Arc<sluice_runtime::JobMetrics>> {
        self.handle.stop();
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the job panicked"))??;
        Ok(self.metrics)
    }
}

/// Runs the job until it holds `keys` keys (and a moment more, for the last batch to
/// reach the aggregate), then prints the process's peak RSS in bytes; then stops it,
/// which writes the final checkpoint, and prints the peak again.
pub fn run_state(keys: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("sluice-bench-state-{}", std::process::id()));
    let started = start_and_read(keys, &dir)?;
    let metrics = started.metrics.clone();
    wait_for(
        "the aggregate taking them",
        Duration::from_secs(600),
        || {
            metrics
                .detail()
                .tasks
                .iter()
                .any(|t| t.task.starts_with("window aggregate") && t.rows_in >= keys as u64)
        },
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let held = peak_rss_mib() * 1048576.0;
    started.stop()?;
    println!("{} {}", held.round(), (peak_rss_mib() * 1048576.0).round());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Peak RSS of a process holding `keys` keys of window state, and after its checkpoint.
fn state_peak(keys: usize) -> Result<(f64, f64)> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["checkpoint-state", "--events", &keys.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "checkpoint-state {keys}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut f = text.split_whitespace().map(str::parse::<f64>);
    match (f.next(), f.next()) {
        (Some(held), Some(after)) => Ok((held?, after?)),
        _ => anyhow::bail!("checkpoint-state printed {text}"),
    }
}

pub fn run_checkpoint(keys: usize) -> Result<()> {
    let (empty, full) = (state_peak(0)?, state_peak(keys)?);
    let dir = std::env::temp_dir().join("sluice-bench-checkpoints");
    let _ = std::fs::remove_dir_all(&dir);
    let metrics = start_and_read(keys, &dir)?.stop()?;
    let stats = metrics
        .snapshot()
        .checkpoint
        .context("the stop wrote no checkpoint")?;

    // Restart: the restored job reads one more batch of new keys.
    let t0 = Instant::now();
    let run = job(keys + BATCH, keys, &dir, Restore::Newest)?;
    let (handle, metrics) = (run.handle.clone(), run.handle.metrics.clone());
    let t = std::thread::spawn(move || run.run());
    wait_for(
        "processing after the restart",
        Duration::from_secs(600),
        || metrics.snapshot().events_in > 0,
    )?;
    let restart = t0.elapsed();
    handle.stop();
    t.join()
        .map_err(|_| anyhow::anyhow!("the job panicked"))??;
    println!(
        "{}",
        serde_json::json!({
            "scenario": "checkpoint",
            "keys": keys,
            "checkpoint_ms": stats.duration_ms,
            "checkpoint_mib": (stats.bytes as f64 / 1048576.0 * 10.0).round() / 10.0,
            "restart_to_processing_ms": restart.as_millis(),
            "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
            "state_peak_rss_mib": (full.0 / 1048576.0 * 10.0).round() / 10.0,
            "empty_job_peak_rss_mib": (empty.0 / 1048576.0 * 10.0).round() / 10.0,
            "state_bytes_per_key": ((full.0 - empty.0) / keys.max(1) as f64).round(),
            "with_checkpoint_bytes_per_key": ((full.1 - empty.1) / keys.max(1) as f64).round(),
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
