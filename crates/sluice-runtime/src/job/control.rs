//! Checkpoint coordination: the coordinator asks every source for a barrier each
//! interval, gathers every task's snapshot for that epoch, writes the checkpoint, and
//! only then tells the sinks to commit the epoch. When every source has ended (or the
//! job is stopping) it takes a final checkpoint and lets the tasks finish.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use sluice_state::{Manifest, OperatorState, SourceState, TaskState};
use sluice_types::{Epoch, Message};

use crate::error::{Result, RuntimeError};
use crate::metrics::CheckpointStats;
use crate::operator::Snapshot;
use crate::plan::{CheckpointSettings, JobSpec};
use crate::source::Positions;

use super::JobHandle;

/// What tasks and the coordinator share.
#[derive(Default)]
pub(crate) struct Control {
    /// The highest epoch the coordinator has asked the sources to inject.
    pub requested: AtomicU64,
    /// Sources that have ended (or stopped reading).
    pub ended_sources: AtomicUsize,
    /// The final checkpoint is committed: tasks may send their end of stream.
    pub finish: AtomicBool,
    /// Per source task, its source's positions in the newest durable checkpoint.
    pub durable: Mutex<Vec<Option<Positions>>>,
    /// Whether checkpoints are kept: without a store, an epoch only commits the sinks and
    /// operators take no snapshot of their state (nothing would keep it).
    pub keep_state: bool,
}

impl Control {
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }
    pub fn finishing(&self) -> bool {
        self.finish.load(Ordering::SeqCst)
    }
    pub fn take_durable(&self, task: usize) -> Option<Positions> {
        self.durable
            .lock()
            .ok()
            .and_then(|mut d| d.get_mut(task).and_then(Option::take))
    }
}

/// One task's contribution to a checkpoint.
pub(crate) enum Part {
    Source {
        index: usize,
        state: SourceState,
    },
    Task {
        id: String,
        snapshots: Vec<Snapshot>,
    },
}

pub(crate) struct Ack {
    pub epoch: Epoch,
    pub parts: Vec<Part>,
}

/// What a node or sink task receives: data on one of its inputs, or (sinks only) the
/// word that an epoch is durable.
pub(crate) enum TaskMsg {
    Data(usize, Message),
    Commit(Epoch),
}

/// One line per part of the plan whose state a checkpoint holds; a restore compares them.
pub(crate) fn plan_lines(spec: &JobSpec) -> Vec<String> {
    let fields = |s: &datafusion::arrow::datatypes::Schema| {
        s.fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Which task holds a key's state depends on the tasks and on the key hash.
    let mut lines = vec![format!(
        "parallelism {} (key hash v{})",
        spec.parallelism.max(1),
        sluice_types::key_hash::KEY_HASH_VERSION
    )];
    for s in &spec.sources {
        lines.push(format!(
            "source {} [{}] ({}) event time {:?}",
            s.name,
            s.definition,
            fields(&s.source.schema()),
            s.event_time
        ));
    }
    for (i, n) in spec.nodes.iter().enumerate() {
        let line = match &n.op {
            crate::plan::NodeOp::Aggregate(a) => {
                let groups: Vec<String> = a.group_exprs.iter().map(|e| e.to_string()).collect();
                let aggs: Vec<String> = a.aggregates.iter().map(|e| e.name().to_string()).collect();
                let window = match a.window {
                    Some(w) => format!("{w:?}"),
                    None => format!(
                        "none (updating, input updating {}, ttl {:?})",
                        a.input_updating, a.ttl_ms
                    ),
                };
                format!(
                    "node {i}: window {window}, group by [{}], aggregates [{}] from ({}) to ({})",
                    groups.join(", "),
                    aggs.join(", "),
                    fields(&a.input_schema),
                    fields(&a.output_schema)
                )
            }
            crate::plan::NodeOp::Join(j) => format!(
                "node {i}: {:?} {:?} join from ({}) and ({}) to ({})",
                j.kind,
                j.time,
                fields(&j.left_schema),
                fields(&j.right_schema),
                fields(&j.output_schema)
            ),
            crate::plan::NodeOp::FirstRow(p) => format!(
                "node {i}: first row by column {} per [{}] over ({})",
                p.time_column,
                exprs(&p.keys),
                fields(&p.schema)
            ),
            crate::plan::NodeOp::TopN(p) => format!(
                "node {i}: top {} by [{}] per [{}] window {:?} ttl {:?} over ({})",
                p.limit,
                p.order
                    .iter()
                    .map(|o| o.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                exprs(&p.keys),
                p.window,
                p.ttl_ms,
                fields(&p.schema)
            ),
            crate::plan::NodeOp::Sessions(p) => format!(
                "node {i}: sessions of {}ms by [{}] over ({})",
                p.gap_ms,
                exprs(&p.keys),
                fields(&p.schema)
            ),
        };
        lines.push(format!("{line}, keyed {}", n.keyed));
    }
    for (i, e) in spec.edges.iter().enumerate() {
        let windows: Vec<String> = e
            .steps
            .iter()
            .filter_map(|s| match s {
                crate::plan::Step::Assign(a) => Some(format!("{:?}", a.window)),
                _ => None,
            })
            .collect();
        lines.push(format!(
            "edge {i}: {:?} to {:?}, windows [{}]",
            e.from,
            e.to,
            windows.join(", ")
        ));
    }
    for s in &spec.sinks {
        lines.push(format!("sink {} [{}]", s.name, s.definition));
    }
    for l in &spec.lookups {
        lines.push(format!("lookup {} [{}]", l.name, l.definition));
    }
    lines
}

struct Inflight {
    epoch: u64,
    last: bool,
    started: Instant,
    acks: usize,
    parts: Vec<Part>,
}

pub(crate) struct Coordinator {
    pub job: String,
    pub settings: CheckpointSettings,
    pub plan: Vec<String>,
    pub source_names: Vec<String>,
    /// Per source task, the index of the source it reads.
    pub task_sources: Vec<usize>,
    pub expected_acks: usize,
    pub first_epoch: u64,
    pub sinks: Vec<SyncSender<TaskMsg>>,
    /// Rows out before this run (from the restored checkpoint).
    pub rows_out_before: u64,
}

impl Coordinator {
    pub fn run(self, ctl: &Control, acks: Receiver<Ack>, handle: &JobHandle) -> Result<()> {
        let interval = self.settings.interval.max(Duration::from_millis(10));
        let mut next_epoch = self.first_epoch;
        let mut next_at = Instant::now() + interval;
        let mut inflight: Option<Inflight> = None;
        loop {
            if handle.is_aborted() {
                return Ok(());
            }
            if inflight.is_none() {
                let all_ended = ctl.ended_sources.load(Ordering::SeqCst) >= self.task_sources.len();
                if all_ended || Instant::now() >= next_at {
                    inflight = Some(Inflight {
                        epoch: next_epoch,
                        last: all_ended,
                        started: Instant::now(),
                        acks: 0,
                        parts: Vec::new(),
                    });
                    ctl.requested.store(next_epoch, Ordering::SeqCst);
                    next_epoch += 1;
                }
            }
            match acks.recv_timeout(Duration::from_millis(20)) {
                Ok(ack) => {
                    let Some(f) = inflight.as_mut().filter(|f| f.epoch == ack.epoch.0) else {
                        return Err(RuntimeError::Internal(format!(
                            "a task acknowledged epoch {} out of turn",
                            ack.epoch
                        )));
                    };
                    f.parts.extend(ack.parts);
                    f.acks += 1;
                    if f.acks == self.expected_acks
                        && let Some(done) = inflight.take()
                    {
                        let last = done.last;
                        self.complete(done, ctl, handle)?;
                        if last {
                            ctl.finish.store(true, Ordering::SeqCst);
                            return Ok(());
                        }
                        next_at = Instant::now() + interval;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn complete(&self, f: Inflight, ctl: &Control, handle: &JobHandle) -> Result<()> {
        let epoch = Epoch(f.epoch);
        let mut split: Vec<Vec<SourceState>> = vec![Vec::new(); self.source_names.len()];
        let mut tasks = BTreeMap::new();
        let mut files = Vec::new();
        for part in f.parts {
            match part {
                Part::Source { index, state } => {
                    if let Some(slot) = split.get_mut(index) {
                        slot.push(state);
                    }
                }
                Part::Task { id, snapshots } => {
                    let mut ops = Vec::new();
                    for (j, s) in snapshots.into_iter().enumerate() {
                        let batches: Vec<_> =
                            s.batches.into_iter().filter(|b| b.num_rows() > 0).collect();
                        let file = (!batches.is_empty()).then(|| {
                            let name = format!("{}-{j}.arrow", id.replace(' ', "-"));
                            files.push((name.clone(), batches));
                            name
                        });
                        ops.push(OperatorState {
                            values: s.values,
                            file,
                        });
                    }
                    tasks.insert(id, TaskState { operators: ops });
                }
            }
        }
        let sources: Vec<SourceState> = split.into_iter().map(merge_source_states).collect();
        let watermark = sources.iter().filter_map(|s| s.watermark).min();
        let mut bytes = 0;
        if let Some(store) = &self.settings.store {
            let manifest = Manifest {
                format: 0,
                job: self.job.clone(),
                epoch: epoch.0,
                created_ms: sluice_types::now_ms(),
                sql: self.settings.sql.clone(),
                fingerprint: sluice_state::fingerprint(&self.plan),
                plan: self.plan.clone(),
                finished: f.last && !handle.is_stopping(),
                rows_out: self.rows_out_before + handle.metrics.snapshot().rows_out,
                watermark,
                sources: sources.clone(),
                tasks,
                files: Vec::new(),
            };
            let written = store
                .write(manifest, files)
                .map_err(|e| RuntimeError::External(format!("writing checkpoint {epoch}: {e}")))?;
            bytes = written.total_bytes();
            if let Err(e) = store.prune(self.settings.keep, Some(epoch.0)) {
                tracing::warn!("pruning old checkpoints: {e}");
            }
            tracing::debug!(%epoch, bytes, "checkpoint written");
        }
        handle.metrics.record_checkpoint(CheckpointStats {
            epoch: epoch.0,
            at_ms: sluice_types::now_ms(),
            bytes,
            duration_ms: f.started.elapsed().as_millis() as u64,
        });
        if self.settings.abort_after == Some(epoch.0) {
            eprintln!("fault injection: aborting after checkpoint {epoch}, before its commit");
            std::process::abort();
        }
        for tx in &self.sinks {
            // A sink that has stopped has failed; its error is reported elsewhere.
            let _ = tx.send(TaskMsg::Commit(epoch));
        }
        if let Ok(mut d) = ctl.durable.lock() {
            *d = self
                .task_sources
                .iter()
                .map(|&si| sources.get(si).map(|s| s.offsets.clone()))
                .collect();
        }
        Ok(())
    }
}

/// A source's state from its tasks' states (one per part of a split source): their
/// positions together, each partition's largest event time from the part that reads it,
/// and the smallest watermark the parts have sent (none while any part has sent none).
pub(crate) fn merge_source_states(mut parts: Vec<SourceState>) -> SourceState {
    if parts.len() <= 1 {
        return parts.pop().unwrap_or_default();
    }
    let watermark = parts
        .iter()
        .map(|p| p.watermark)
        .collect::<Option<Vec<i64>>>()
        .and_then(|w| w.into_iter().min());
    let mut merged = SourceState {
        name: parts[0].name.clone(),
        watermark,
        ..SourceState::default()
    };
    for p in parts {
        merged.offsets.extend(p.offsets);
        if merged.max_event_times.len() < p.max_event_times.len() {
            merged.max_event_times.resize(p.max_event_times.len(), None);
        }
        for (m, q) in merged.max_event_times.iter_mut().zip(p.max_event_times) {
            *m = (*m).max(q);
        }
    }
    merged
}

/// Expressions as a plan line lists them.
fn exprs(e: &[std::sync::Arc<dyn datafusion::physical_plan::PhysicalExpr>]) -> String {
    e.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(offsets: &[(&str, i64)], max: &[Option<i64>], watermark: Option<i64>) -> SourceState {
        SourceState {
            name: "s".into(),
            offsets: offsets.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            max_event_times: max.to_vec(),
            watermark,
        }
    }

    #[test]
    fn a_whole_source_keeps_its_state() {
        let one = state(&[("bytes", 10)], &[Some(5)], Some(3));
        assert_eq!(merge_source_states(vec![one.clone()]), one);
        assert_eq!(merge_source_states(Vec::new()), SourceState::default());
    }

    #[test]
    fn a_split_source_joins_its_parts() {
        let merged = merge_source_states(vec![
            state(&[("a", 1)], &[Some(90), None], Some(80)),
            state(&[("b", 2)], &[None, Some(40)], Some(30)),
        ]);
        assert_eq!(
            merged,
            state(&[("a", 1), ("b", 2)], &[Some(90), Some(40)], Some(30))
        );
        // A part that has sent no watermark yet holds the source's back.
        let merged = merge_source_states(vec![
            state(&[("a", 1)], &[Some(90), None], Some(80)),
            state(&[("b", 0)], &[None, None], None),
        ]);
        assert_eq!(merged.watermark, None);
    }
}
