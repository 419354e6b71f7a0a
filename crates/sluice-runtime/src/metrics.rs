//! Counters a running job shares with whoever watches it (the progress line, /metrics,
//! the console): totals, per task (with how full its input queue is), per source
//! partition, the newest bad records and checkpoints, and the job's graph.

use std::collections::{BTreeMap, VecDeque};
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
    /// By source, by partition index: the partition's own watermark.
    partition_watermarks: Mutex<BTreeMap<String, BTreeMap<usize, i64>>>,
    bad_records: Mutex<VecDeque<BadRecord>>,
    checkpoints: Mutex<VecDeque<CheckpointStats>>,
    topology: Mutex<Option<crate::topology::Topology>>,
    /// The epoch of the checkpoint this run restored (0: none).
    restored_from: AtomicU64,
}

/// How many of the newest bad records and checkpoints a job keeps in memory.
pub const KEPT_BAD_RECORDS: usize = 50;
pub const KEPT_CHECKPOINTS: usize = 100;
/// A bad record's raw bytes are kept up to this length.
const KEPT_RAW_BYTES: usize = 2048;

/// A record a source could not decode, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BadRecord {
    /// When it was read, ms since the Unix epoch.
    pub at_ms: i64,
    pub table: String,
    /// The Kafka topic or the file.
    pub origin: String,
    pub partition: i64,
    /// The Kafka offset, or the file's line number.
    pub offset: i64,
    pub error: String,
    /// The record as text (invalid UTF-8 replaced), cut at 2 KiB.
    pub raw: String,
}

impl BadRecord {
    pub fn new(
        table: &str,
        origin: &str,
        partition: i64,
        offset: i64,
        error: &str,
        raw: &[u8],
    ) -> Self {
        let cut = &raw[..raw.len().min(KEPT_RAW_BYTES)];
        BadRecord {
            at_ms: sluice_types::now_ms(),
            table: table.to_string(),
            origin: origin.to_string(),
            partition,
            offset,
            error: error.to_string(),
            raw: String::from_utf8_lossy(cut).trim_end().to_string(),
        }
    }
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
    /// Messages waiting in the task's input queue, and how many it holds at most.
    pub queued: AtomicI64,
    pub capacity: AtomicU64,
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
    /// Messages in the task's input queue now, of `capacity` (a full queue means the
    /// task holds back the ones before it).
    pub queued: u64,
    pub capacity: u64,
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
    /// Each source partition's watermark (ms), by (source, partition index).
    pub partition_watermarks: Vec<(String, usize, i64)>,
    /// The newest records that could not be decoded, newest first.
    pub bad_records: Vec<BadRecord>,
    /// The checkpoints this run took, newest first.
    pub checkpoints: Vec<CheckpointStats>,
    pub topology: Option<crate::topology::Topology>,
    /// The checkpoint this run started from, if any.
    pub restored_from: Option<u64>,
}

/// A completed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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
            partition_watermarks: Mutex::new(BTreeMap::new()),
            bad_records: Mutex::new(VecDeque::new()),
            checkpoints: Mutex::new(VecDeque::new()),
            topology: Mutex::new(None),
            restored_from: AtomicU64::new(0),
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
    /// A source partition's watermark moved.
    pub fn set_partition_watermark(&self, source: &str, partition: usize, wm: i64) {
        // Called for every batch: no allocation once the source is known.
        if let Ok(mut w) = self.partition_watermarks.lock() {
            match w.get_mut(source) {
                Some(parts) => {
                    parts.insert(partition, wm);
                }
                None => {
                    w.insert(source.to_string(), BTreeMap::from([(partition, wm)]));
                }
            }
        }
    }
    /// The run restored the checkpoint of `epoch`.
    pub fn set_restored_from(&self, epoch: u64) {
        self.restored_from.store(epoch, Ordering::Relaxed);
    }
    /// The checkpoints this run took, newest first.
    pub fn checkpoints(&self) -> Vec<CheckpointStats> {
        newest_first(&self.checkpoints)
    }
    /// The job's graph, once it has started.
    pub fn topology(&self) -> Option<crate::topology::Topology> {
        self.topology.lock().ok().and_then(|t| t.clone())
    }
    /// The job's graph, set when it starts.
    pub fn set_topology(&self, t: crate::topology::Topology) {
        if let Ok(mut g) = self.topology.lock() {
            *g = Some(t);
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
                        queued: c.queued.load(Ordering::Relaxed).max(0) as u64,
                        capacity: load(&c.capacity),
                    })
                    .collect()
            }),
            commits: self.commits.lock().map_or(BTreeMap::new(), |c| c.clone()),
            kafka_lag: self.lag.lock().map_or(Vec::new(), |l| {
                l.iter().map(|((s, p), v)| (s.clone(), *p, *v)).collect()
            }),
            partition_watermarks: self.partition_watermarks.lock().map_or(Vec::new(), |w| {
                w.iter()
                    .flat_map(|(s, parts)| parts.iter().map(|(p, v)| (s.clone(), *p, *v)))
                    .collect()
            }),
            bad_records: newest_first(&self.bad_records),
            checkpoints: self.checkpoints(),
            topology: self.topology(),
            restored_from: Some(load(&self.restored_from)).filter(|e| *e > 0),
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
    /// Records a source could not decode: counted, and the newest kept to be shown.
    pub fn add_bad_records(&self, records: impl IntoIterator<Item = BadRecord>) {
        if let Ok(mut kept) = self.bad_records.lock() {
            for r in records {
                self.bad.fetch_add(1, Ordering::Relaxed);
                keep_newest(&mut kept, r, KEPT_BAD_RECORDS);
            }
        }
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
        if let Ok(mut kept) = self.checkpoints.lock() {
            keep_newest(&mut kept, stats, KEPT_CHECKPOINTS);
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

fn keep_newest<T>(kept: &mut VecDeque<T>, item: T, at_most: usize) {
    if kept.len() == at_most {
        kept.pop_front();
    }
    kept.push_back(item);
}

fn newest_first<T: Clone>(kept: &Mutex<VecDeque<T>>) -> Vec<T> {
    kept.lock()
        .map_or(Vec::new(), |k| k.iter().rev().cloned().collect())
}
