//! What the manager shows of its jobs: each job as the API lists it, its checkpoints on
//! disk, the rows its sinks receive (live), and the figures `/metrics` renders.

use serde::Serialize;
use sluice_runtime::{CheckpointStats, LiveSubscription, MetricsDetail, MetricsSnapshot};
use sluice_types::{Watermark, redact_secrets};

use super::{Job, JobState, Manager, now_ms};
use crate::error::ServerError;

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub created_ms: i64,
    pub uptime_s: Option<f64>,
    pub restarts: u32,
    pub last_error: Option<String>,
    pub events_in: u64,
    pub events_per_s: f64,
    /// Events per second, once a second, oldest first (up to five minutes).
    pub events_per_s_history: Vec<f64>,
    pub rows_out: u64,
    pub late: u64,
    pub bad: u64,
    /// The watermark (ms since the Unix epoch), once there is one.
    pub watermark_ms: Option<i64>,
    /// Wall clock minus watermark.
    pub watermark_lag_ms: Option<i64>,
    pub last_checkpoint: Option<CheckpointInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<MetricsDetail>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    pub epoch: u64,
    pub at_ms: i64,
    pub bytes: u64,
    pub duration_ms: u64,
}

impl From<CheckpointStats> for CheckpointInfo {
    fn from(c: CheckpointStats) -> Self {
        CheckpointInfo {
            epoch: c.epoch,
            at_ms: c.at_ms,
            bytes: c.bytes,
            duration_ms: c.duration_ms,
        }
    }
}

/// A checkpoint on disk, as the API lists it. One whose manifest cannot be read has
/// only its epoch and the `problem`.
#[derive(Debug, Clone, Serialize)]
pub struct StoredCheckpointInfo {
    pub epoch: u64,
    pub at_ms: Option<i64>,
    pub bytes: Option<u64>,
    /// Known for checkpoints the current (or last) run took.
    pub duration_ms: Option<u64>,
    pub rows_out: Option<u64>,
    pub watermark_ms: Option<i64>,
    pub finished: bool,
    pub problem: Option<String>,
}

/// A job's figures for `/metrics`.
pub struct JobFigures {
    pub name: String,
    pub state: JobState,
    pub restarts: u32,
    pub snapshot: MetricsSnapshot,
    pub detail: MetricsDetail,
    /// Live-results watchers now, and rows dropped for slow ones.
    pub watchers: usize,
    pub watch_dropped: u64,
}

impl Manager {
    /// The job's checkpoints on disk, newest first: each one can be restored.
    pub fn checkpoints(&self, name_or_id: &str) -> Result<Vec<StoredCheckpointInfo>, ServerError> {
        let (name, taken) = {
            let jobs = self.lock()?;
            let key = Self::key(&jobs, name_or_id)?;
            let taken = jobs
                .get(&key)
                .and_then(|j| j.last_metrics.as_ref())
                .map(|h| h.metrics.checkpoints())
                .unwrap_or_default();
            (key, taken)
        };
        let store = sluice_state::CheckpointStore::new(&self.inner.dir, &name);
        let mut out: Vec<StoredCheckpointInfo> = store
            .manifests()
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .into_iter()
            .rev()
            .map(|(epoch, m)| match m {
                Ok(m) => StoredCheckpointInfo {
                    epoch,
                    at_ms: Some(m.created_ms),
                    bytes: Some(m.files.iter().map(|f| f.bytes).sum()),
                    duration_ms: taken
                        .iter()
                        .find(|c| c.epoch == epoch)
                        .map(|c| c.duration_ms),
                    rows_out: Some(m.rows_out),
                    watermark_ms: m.watermark,
                    finished: m.finished,
                    problem: None,
                },
                Err(e) => StoredCheckpointInfo {
                    epoch,
                    at_ms: None,
                    bytes: None,
                    duration_ms: None,
                    rows_out: None,
                    watermark_ms: None,
                    finished: false,
                    problem: Some(e.to_string()),
                },
            })
            .collect();
        out.truncate(1000);
        Ok(out)
    }

    /// Starts watching the rows the job's sink `sink` receives.
    pub fn watch(&self, name_or_id: &str, sink: &str) -> Result<LiveSubscription, ServerError> {
        let jobs = self.lock()?;
        let key = Self::key(&jobs, name_or_id)?;
        let Some(j) = jobs.get(&key) else {
            return Err(ServerError::NotFound(format!("no job named {name_or_id}")));
        };
        let topology = j.last_metrics.as_ref().and_then(|h| h.metrics.topology());
        if let Some(t) = topology {
            let sinks: Vec<&str> = t
                .nodes
                .iter()
                .filter(|n| n.kind == "sink")
                .map(|n| n.name.as_str())
                .collect();
            if !sinks.contains(&sink) {
                return Err(ServerError::NotFound(format!(
                    "job {key} writes no table named {sink} (it writes: {})",
                    sinks.join(", ")
                )));
            }
        }
        j.live.subscribe(sink).map_err(|_| {
            ServerError::Conflict(format!(
                "job {key} has {} live-results watchers already; close one first",
                sluice_runtime::MAX_WATCHERS
            ))
        })
    }

    /// Every job's figures, for `/metrics`.
    pub fn figures(&self) -> Result<Vec<JobFigures>, ServerError> {
        let jobs = self.lock()?;
        Ok(jobs
            .values()
            .map(|j| {
                let h = j.last_metrics.as_ref();
                JobFigures {
                    name: j.name.clone(),
                    state: j.state,
                    restarts: j.restarts,
                    snapshot: h.map_or_else(empty_snapshot, |h| h.metrics.snapshot()),
                    detail: h.map(|h| h.metrics.detail()).unwrap_or_default(),
                    watchers: j.live.watchers(),
                    watch_dropped: j.live.dropped(),
                }
            })
            .collect())
    }
}

pub(super) fn empty_snapshot() -> MetricsSnapshot {
    MetricsSnapshot {
        events_in: 0,
        rows_out: 0,
        late: 0,
        bad: 0,
        join_rows_held: 0,
        state_keys_held: 0,
        watermark: Watermark::MIN,
        checkpoint: None,
    }
}

pub(super) fn info(j: &Job, detail: bool) -> JobInfo {
    let h = j.last_metrics.as_ref();
    let s = h.map_or_else(empty_snapshot, |h| h.metrics.snapshot());
    let wm = (s.watermark != Watermark::MIN).then(|| s.watermark.millis());
    JobInfo {
        id: j.id.clone(),
        name: j.name.clone(),
        state: j.state,
        created_ms: j.created_ms,
        uptime_s: j
            .started
            .map(|t| (t.elapsed().as_secs_f64() * 10.0).round() / 10.0),
        restarts: j.restarts,
        last_error: j.last_error.as_deref().map(redact_secrets),
        events_in: s.events_in,
        events_per_s: j.rate.round(),
        events_per_s_history: j.rates.iter().copied().collect(),
        rows_out: s.rows_out,
        late: s.late,
        bad: s.bad,
        watermark_ms: wm,
        watermark_lag_ms: wm.map(|w| now_ms() - w),
        last_checkpoint: s.checkpoint.map(CheckpointInfo::from),
        sql: detail.then(|| redact_secrets(&j.sql)),
        detail: detail.then(|| h.map(|h| h.metrics.detail()).unwrap_or_default()),
    }
}
