//! Counters a running job shares with whoever watches it (the progress line, later /metrics).

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
    bad: AtomicU64,
    watermark: AtomicI64,
    checkpoint: Mutex<Option<CheckpointStats>>,
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
            bad: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            checkpoint: Mutex::new(None),
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
    pub watermark: Watermark,
    pub checkpoint: Option<CheckpointStats>,
}

impl JobMetrics {
    pub fn add_events_in(&self, n: u64) {
        self.events_in.fetch_add(n, Ordering::Relaxed);
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
            watermark: Watermark::from_millis(self.watermark.load(Ordering::Relaxed)),
            checkpoint: self.checkpoint.lock().ok().and_then(|c| *c),
        }
    }
}
