//! Counters a running job shares with whoever watches it (the progress line, later /metrics).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_types::Watermark;

/// Live figures of one job. Cheap to update from any task.
#[derive(Debug)]
pub struct JobMetrics {
    pub started: Instant,
    events_in: AtomicU64,
    rows_out: AtomicU64,
    /// Late rows dropped, one counter per pipeline.
    late: Mutex<Vec<Arc<AtomicU64>>>,
    held: Gauges,
    keys: Gauges,
    bad: AtomicU64,
    watermark: AtomicI64,
    checkpoint: Mutex<Option<CheckpointStats>>,
    bytes_in: AtomicU64,
    batches_in: AtomicU64,
    tasks: Mutex<Vec<(String, Arc<TaskCounters>)>>,
    commits: Mutex<BTreeMap<String, CommitStats>>,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

/// Per-task gauges of one kind (rows a join holds, keys an updating result holds),
/// reported summed.
#[derive(Debug, Default)]
struct Gauges(Mutex<Vec<Arc<AtomicI64>>>);

impl Gauges {
    fn counter(&self) -> Arc<AtomicI64> {
        let c = Arc::new(AtomicI64::new(0));
        if let Ok(mut v) = self.0.lock() {
            v.push(c.clone());
        }
        c
    }
    fn sum(&self) -> u64 {
        self.0.lock().map_or(0, |v| {
            v.iter()
                .map(|c| c.load(Ordering::Relaxed).max(0) as u64)
                .sum()
        })
    }
}

/// Rows, bytes and batches through one task (a chain of operators run together).
#[derive(Debug, Default)]
pub struct TaskCounters {
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub batches_in: AtomicU64,
}

impl TaskCounters {
    /// Counts a batch in; returns its size in bytes (Arrow memory).
    pub fn input(&self, batch: &datafusion::arrow::record_batch::RecordBatch) -> u64 {
        let bytes = batch.get_array_memory_size() as u64;
        self.rows_in
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
        bytes
    }
    pub fn output(&self, batch: &datafusion::arrow::record_batch::RecordBatch) {
        self.rows_out
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        self.bytes_out
            .fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
    }
}

/// One task's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskFigures {
    pub task: String,
    pub rows_in: u64,
    pub rows_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub batches_in: u64,
}

/// A sink's commits so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommitStats {
    pub commits: u64,
    pub total_ms: u64,
    pub last_ms: u64,
}

/// Everything beyond [`MetricsSnapshot`]: per task, per sink, per Kafka partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsDetail {
    pub bytes_in: u64,
    pub batches_in: u64,
    pub tasks: Vec<TaskFigures>,
    pub commits: BTreeMap<String, CommitStats>,
    /// Records behind the partition's end, by (source, partition).
    pub kafka_lag: Vec<(String, i32, i64)>,
}

/// The last completed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    pub epoch: u64,
    /// When it completed, ms since the Unix epoch.
    pub at_ms: i64,
    pub bytes: u64,
    /// From the barrier's injection to the manifest on disk.
    pub duration_ms: u64,
}

impl Default for JobMetrics {
    fn default() -> Self {
        JobMetrics {
            started: Instant::now(),
            events_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            late: Mutex::new(Vec::new()),
            held: Gauges::default(),
            keys: Gauges::default(),
            bad: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            checkpoint: Mutex::new(None),
            bytes_in: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            commits: Mutex::new(BTreeMap::new()),
            lag: Mutex::new(BTreeMap::new()),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub events_in: u64,
    pub rows_out: u64,
    pub late: u64,
    pub bad: u64,
    /// Rows the job's joins hold, all joins together.
    pub join_rows_held: u64,
    /// Keys the job's updating results hold (groups of aggregates without a window,
    /// deduplicated keys), all together.
    pub state_keys_held: u64,
    pub watermark: Watermark,
    pub checkpoint: Option<CheckpointStats>,
}

impl JobMetrics {
    pub fn add_events_in(&self, n: u64) {
        self.events_in.fetch_add(n, Ordering::Relaxed);
    }
    /// A source's batch of `rows` events and `bytes` (Arrow memory).
    pub fn add_source_batch(&self, rows: u64, bytes: u64) {
        self.add_events_in(rows);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        self.batches_in.fetch_add(1, Ordering::Relaxed);
    }
    /// The counters of the task `name` (made on first use).
    pub fn task(&self, name: &str) -> Arc<TaskCounters> {
        let Ok(mut tasks) = self.tasks.lock() else {
            return Arc::default();
        };
        if let Some((_, c)) = tasks.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let c = Arc::new(TaskCounters::default());
        tasks.push((name.to_string(), c.clone()));
        c
    }
    /// A sink committed an epoch in `ms`.
    pub fn record_commit(&self, sink: &str, ms: u64) {
        if let Ok(mut c) = self.commits.lock() {
            let s = c.entry(sink.to_string()).or_default();
            s.commits += 1;
            s.total_ms += ms;
            s.last_ms = ms;
        }
    }
    /// How far a Kafka partition's reader is behind its end.
    pub fn set_lag(&self, source: &str, partition: i32, lag: i64) {
        if let Ok(mut l) = self.lag.lock() {
            l.insert((source.to_string(), partition), lag.max(0));
        }
    }
    pub fn detail(&self) -> MetricsDetail {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsDetail {
            bytes_in: load(&self.bytes_in),
            batches_in: load(&self.batches_in),
            tasks: self.tasks.lock().map_or(Vec::new(), |t| {
                t.iter()
                    .map(|(name, c)| TaskFigures {
                        task: name.clone(),
                        rows_in: load(&c.rows_in),
                        rows_out: load(&c.rows_out),
                        bytes_in: load(&c.bytes_in),
                        bytes_out: load(&c.bytes_out),
                        batches_in: load(&c.batches_in),
                    })
                    .collect()
            }),
            commits: self.commits.lock().map_or(BTreeMap::new(), |c| c.clone()),
            kafka_lag: self.lag.lock().map_or(Vec::new(), |l| {
                l.iter().map(|((s, p), v)| (s.clone(), *p, *v)).collect()
            }),
        }
    }
    pub fn add_rows_out(&self, n: u64) {
        self.rows_out.fetch_add(n, Ordering::Relaxed);
    }
    /// A late-row counter for one pipeline.
    pub fn late_counter(&self) -> Arc<AtomicU64> {
        let c = Arc::new(AtomicU64::new(0));
        if let Ok(mut v) = self.late.lock() {
            v.push(c.clone());
        }
        c
    }
    /// A counter of the rows one join task holds.
    pub fn rows_held_counter(&self) -> Arc<AtomicI64> {
        self.held.counter()
    }
    /// A counter of the keys one task of an updating result holds.
    pub fn keys_held_counter(&self) -> Arc<AtomicI64> {
        self.keys.counter()
    }
    pub fn add_bad(&self, n: u64) {
        self.bad.fetch_add(n, Ordering::Relaxed);
    }
    pub fn observe_watermark(&self, wm: Watermark) {
        if wm != Watermark::MAX {
            self.watermark.fetch_max(wm.millis(), Ordering::Relaxed);
        }
    }
    pub fn record_checkpoint(&self, stats: CheckpointStats) {
        if let Ok(mut c) = self.checkpoint.lock() {
            *c = Some(stats);
        }
    }
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            events_in: self.events_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            // Pipelines sharing a source see the same late rows: report the largest count,
            // which is the number of late input rows when they share a window size.
            late: self.late.lock().map_or(0, |v| {
                v.iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .max()
                    .unwrap_or(0)
            }),
            bad: self.bad.load(Ordering::Relaxed),
            join_rows_held: self.held.sum(),
            state_keys_held: self.keys.sum(),
            watermark: Watermark::from_millis(self.watermark.load(Ordering::Relaxed)),
            checkpoint: self.checkpoint.lock().ok().and_then(|c| *c),
        }
    }
}
