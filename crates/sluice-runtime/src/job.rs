//! Runs a job: one thread per task, joined by bounded channels (so a slow sink slows
//! the sources). Sources run their pipelines' stateless heads; windowed aggregates are
//! split over `parallelism` tasks by a hash of the group key; each sink merges its
//! inputs by watermark so that its output is the same for every parallelism. A
//! coordinator takes checkpoints with aligned barriers.

mod control;
mod sink_task;
mod tasks;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_plan::PhysicalExpr;
use sluice_state::StoredCheckpoint;
use sluice_types::{Interrupt, Message};

use crate::error::{Result, RuntimeError};
use crate::metrics::JobMetrics;
use crate::operator::{Chain, Operator, Snapshot};
use crate::operators::assign::AssignWindows;
use crate::operators::filter::Filter;
use crate::operators::project::Project;
use crate::operators::session_aggregate::SessionAggregate;
use crate::operators::window_aggregate::WindowAggregate;
use crate::plan::{JobOutcome, JobSpec, PipelineSpec, Step, WindowKind};
use crate::source::SourceWatermarks;
use control::{Ack, Control, Coordinator, SinkMsg, plan_lines};
use sink_task::SinkTask;
use tasks::{Head, SourceTask, run_task};

/// Controls a running job from outside.
#[derive(Clone, Default)]
pub struct JobHandle {
    stop: Interrupt,
    abort: Arc<AtomicBool>,
    pub metrics: Arc<JobMetrics>,
}

impl JobHandle {
    pub fn new() -> Self {
        JobHandle::default()
    }

    /// Asks the sources to stop reading; a final checkpoint keeps the open windows
    /// (they are not emitted), then the job ends.
    pub fn stop(&self) {
        self.stop.raise();
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_raised()
    }

    /// Raised on stop and cancel: connectors end their waits and retries on it.
    pub fn interrupt(&self) -> Interrupt {
        self.stop.clone()
    }

    /// Ends every task at once, without a final checkpoint (after a failure).
    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
        self.stop();
    }

    pub fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }
}

type SinkTx = SyncSender<SinkMsg>;

/// Where a pipeline's head sends its output.
pub(crate) enum Route {
    Sink {
        tx: SinkTx,
        input: usize,
    },
    Partitioned {
        txs: Vec<SyncSender<Message>>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        hashes: Vec<u64>,
    },
}

impl Route {
    fn send(&mut self, msg: Message) -> Result<()> {
        match self {
            Route::Sink { tx, input } => tx.send(SinkMsg::Data(*input, msg)).map_err(|_| closed()),
            Route::Partitioned { txs, keys, hashes } => match msg {
                Message::Batch(b) => {
                    if txs.len() == 1 || keys.is_empty() {
                        return txs[0].send(Message::Batch(b)).map_err(|_| closed());
                    }
                    let n = b.num_rows();
                    let cols = keys
                        .iter()
                        .map(|e| e.evaluate(&b).and_then(|v| v.into_array(n)))
                        .collect::<Result<Vec<_>, _>>()?;
                    hashes.clear();
                    hashes.resize(n, 0);
                    create_hashes(&cols, &RandomState::with_seed(0x51_1C_E5), hashes)?;
                    let parts = txs.len() as u64;
                    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); txs.len()];
                    for (row, h) in hashes.iter().enumerate() {
                        idx[(h % parts) as usize].push(row as u32);
                    }
                    for (p, rows) in idx.into_iter().enumerate() {
                        if !rows.is_empty() {
                            let part = take_record_batch(&b, &UInt32Array::from(rows))?;
                            txs[p].send(Message::Batch(part)).map_err(|_| closed())?;
                        }
                    }
                    Ok(())
                }
                other => {
                    for tx in txs.iter() {
                        tx.send(other.clone()).map_err(|_| closed())?;
                    }
                    Ok(())
                }
            },
        }
    }
}

fn closed() -> RuntimeError {
    RuntimeError::Internal("a downstream task has stopped".into())
}

fn steps(steps: &[Step]) -> Vec<Box<dyn Operator>> {
    steps
        .iter()
        .map(|s| -> Box<dyn Operator> {
            match s {
                Step::Filter(p) => Box::new(Filter::new(p.clone())),
                Step::Project { exprs, schema } => {
                    Box::new(Project::new(exprs.clone(), schema.clone()))
                }
            }
        })
        .collect()
}

struct Failure(Mutex<Option<RuntimeError>>);

impl Failure {
    fn record(&self, e: RuntimeError, handle: &JobHandle) {
        if let Ok(mut slot) = self.0.lock() {
            // The first real error wins; "downstream stopped" follows from it.
            let replace = match slot.as_ref() {
                None => true,
                Some(RuntimeError::Internal(m)) => {
                    m == "a downstream task has stopped"
                        || m == "the checkpoint coordinator has stopped"
                }
                _ => false,
            };
            if replace {
                *slot = Some(e);
            }
        }
        handle.abort();
    }
}

/// The saved snapshots of one task, read from the checkpoint's files.
fn restored(stored: Option<&StoredCheckpoint>, id: &str) -> Result<Option<Vec<Snapshot>>> {
    let Some(c) = stored else {
        return Ok(None);
    };
    let Some(task) = c.manifest.tasks.get(id) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for op in &task.operators {
        let batches = match &op.file {
            Some(f) => c
                .read(f)
                .map_err(|e| RuntimeError::External(format!("reading checkpoint: {e}")))?,
            None => Vec::new(),
        };
        out.push(Snapshot {
            values: op.values.clone(),
            batches,
        });
    }
    Ok(Some(out))
}

/// Runs the job to its end: every source ended (then every window closes), or
/// [`JobHandle::stop`] (then a final checkpoint keeps what is open).
pub fn run_job(spec: JobSpec, handle: &JobHandle) -> Result<JobOutcome> {
    let plan = plan_lines(&spec);
    let JobSpec {
        name: job_name,
        sources,
        mut sinks,
        pipelines,
        parallelism,
        channel_capacity,
        mut checkpoint,
    } = spec;
    let parallelism = parallelism.max(1);
    let cap = channel_capacity.max(1);
    let stored = checkpoint.restore.take();
    if let Some(c) = &stored
        && let Some(why) = sluice_state::is_incompatible(&c.manifest.plan, &plan)
    {
        return Err(RuntimeError::User(format!(
            "cannot restore checkpoint {} of job {job_name} ({}): {why}. Start without it with --fresh, or restore a checkpoint taken with this plan",
            c.manifest.epoch,
            c.dir.display()
        )));
    }
    if checkpoint.skip_if_finished
        && let Some(c) = stored.as_ref().filter(|c| c.manifest.finished)
    {
        return Ok(JobOutcome::AlreadyFinished {
            epoch: c.manifest.epoch,
            rows_out: c.manifest.rows_out,
        });
    }
    let stored = stored.as_ref();

    // Sinks say what they have committed before; epochs continue above all of it.
    let mut last_epoch = checkpoint
        .after_epoch
        .max(stored.map_or(0, |c| c.manifest.epoch));
    for s in sinks.iter_mut() {
        if let Some(e) = s.sink.open(&job_name, &s.name)? {
            if let Some(c) = stored
                && c.manifest.epoch < e.0
            {
                tracing::warn!(
                    "sink {} has committed epoch {e}, newer than checkpoint {} being restored: rows of the epochs between are written again to tables without a key (keyed tables are upserts and stay right)",
                    s.name,
                    c.manifest.epoch
                );
            }
            last_epoch = last_epoch.max(e.0);
        }
    }

    let failure = Arc::new(Failure(Mutex::new(None)));
    let ctl = Arc::new(Control::default());
    ctl.requested.store(last_epoch, Ordering::SeqCst);
    if let Ok(mut d) = ctl.durable.lock() {
        *d = vec![None; sources.len()];
    }
    let (ack_tx, ack_rx) = channel::<Ack>();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut expected_acks = sources.len();

    // Sinks: count inputs first.
    let mut sink_inputs: Vec<Vec<bool>> = vec![Vec::new(); sinks.len()]; // per input: stateless?
    let mut pipeline_inputs: Vec<Vec<usize>> = Vec::new();
    for p in &pipelines {
        let n = if p.aggregate.is_some() {
            parallelism
        } else {
            1
        };
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(sink_inputs[p.sink].len());
            sink_inputs[p.sink].push(p.aggregate.is_none());
        }
        pipeline_inputs.push(ids);
    }
    let mut sink_txs: Vec<Option<SinkTx>> = Vec::new();
    for (i, s) in sinks.into_iter().enumerate() {
        let Some(schema) = pipelines.iter().find(|p| p.sink == i).map(output_schema) else {
            sink_txs.push(None); // a table nothing is inserted into
            continue;
        };
        let (tx, rx) = sync_channel::<SinkMsg>(cap);
        sink_txs.push(Some(tx));
        expected_acks += 1;
        let id = format!("sink {i}");
        let restore = restored(stored, &id)?;
        let watermarked = pipelines
            .iter()
            .any(|p| p.sink == i && sources[p.source].event_time.is_some());
        let task = SinkTask {
            id,
            table: s.name.clone(),
            inputs: sink_inputs[i].clone(),
            watermarked,
            restored_epoch: stored.map(|c| sluice_types::Epoch(c.manifest.epoch)),
            schema,
            acks: ack_tx.clone(),
        };
        let (h, f) = (handle.clone(), failure.clone());
        let mut sink = s.sink;
        threads.push(spawn(format!("sink {}", s.name), move || {
            if let Err(e) = task.run(rx, sink.as_mut(), restore, &h) {
                f.record(e, &h);
            }
        })?);
    }
    let sink_tx = |i: usize| {
        sink_txs[i]
            .clone()
            .ok_or_else(|| RuntimeError::Internal("a pipeline writes to no sink".into()))
    };

    // Aggregators and pipeline heads.
    let mut heads: Vec<Vec<Head>> = (0..sources.len()).map(|_| Vec::new()).collect();
    for (pi, p) in pipelines.iter().enumerate() {
        let late = handle.metrics.late_counter();
        let mut head_ops: Vec<Box<dyn Operator>> =
            vec![Box::new(AssignWindows::new(p.assign.clone(), late.clone()))];
        head_ops.extend(steps(&p.pre));
        let route = match &p.aggregate {
            None => Route::Sink {
                tx: sink_tx(p.sink)?,
                input: pipeline_inputs[pi][0],
            },
            Some(agg) => {
                let mut txs = Vec::new();
                for (part, &input) in pipeline_inputs[pi].iter().enumerate() {
                    let (tx, rx) = sync_channel::<Message>(cap);
                    txs.push(tx);
                    let window_op: Box<dyn Operator> = match agg.window {
                        WindowKind::Session { .. } => {
                            Box::new(SessionAggregate::new(agg.clone(), late.clone())?)
                        }
                        _ => Box::new(WindowAggregate::new(agg.clone(), late.clone())?),
                    };
                    let mut ops = vec![window_op];
                    ops.extend(steps(&p.post));
                    let mut chain = Chain::new(ops);
                    let id = format!("{} aggregate {part}", p.name);
                    if let Some(states) = restored(stored, &id)? {
                        chain.restore(states)?;
                    }
                    let out = Route::Sink {
                        tx: sink_tx(p.sink)?,
                        input,
                    };
                    expected_acks += 1;
                    let (h, f, acks) = (handle.clone(), failure.clone(), ack_tx.clone());
                    let counters = handle.metrics.task(&id);
                    threads.push(spawn(id.clone(), move || {
                        if let Err(e) = run_task(id, rx, chain, out, acks, &counters) {
                            f.record(e, &h);
                        }
                    })?);
                }
                Route::Partitioned {
                    txs,
                    keys: agg.key_exprs(),
                    hashes: Vec::new(),
                }
            }
        };
        let mut chain = Chain::new(head_ops);
        let id = format!("{} head", p.name);
        if let Some(states) = restored(stored, &id)? {
            chain.restore(states)?;
        }
        heads[p.source].push(Head { id, chain, route });
    }

    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    for (si, s) in sources.into_iter().enumerate() {
        let mut watermarks = s
            .event_time
            .map(|(c, d)| SourceWatermarks::new(c, d, s.source.partitions(), s.idle_timeout));
        let mut source = s.source;
        if let Some(saved) = stored.and_then(|c| c.manifest.sources.get(si)) {
            source.seek(&saved.offsets)?;
            if let Some(w) = watermarks.as_mut() {
                w.restore(&saved.max_event_times, saved.watermark);
                if let Some(wm) = saved.watermark {
                    handle
                        .metrics
                        .observe_watermark(sluice_types::Watermark::from_millis(wm));
                }
            }
        }
        let task = SourceTask {
            index: si,
            name: s.name.clone(),
            source,
            watermarks,
            heads: std::mem::take(&mut heads[si]),
            ctl: ctl.clone(),
            acks: ack_tx.clone(),
            injected: last_epoch,
        };
        let (h, f) = (handle.clone(), failure.clone());
        threads.push(spawn(format!("source {}", s.name), move || {
            if let Err(e) = task.run(&h) {
                f.record(e, &h);
            }
        })?);
    }
    drop(ack_tx);

    let coordinator = Coordinator {
        job: job_name,
        settings: checkpoint,
        plan,
        source_names,
        expected_acks,
        first_epoch: last_epoch + 1,
        rows_out_before: stored.map_or(0, |c| c.manifest.rows_out),
        sinks: sink_txs.into_iter().flatten().collect(),
    };
    if let Err(e) = coordinator.run(&ctl, ack_rx, handle) {
        failure.record(e, handle);
    }

    for t in threads {
        if t.join().is_err() {
            failure.record(RuntimeError::Internal("a task panicked".into()), handle);
        }
    }
    let err = failure.0.lock().ok().and_then(|mut s| s.take());
    match err {
        Some(e) => Err(e),
        None => Ok(JobOutcome::Ran),
    }
}

fn output_schema(p: &PipelineSpec) -> SchemaRef {
    let last = |steps: &[Step]| {
        steps.iter().rev().find_map(|s| match s {
            Step::Filter(_) => None,
            Step::Project { schema, .. } => Some(schema.clone()),
        })
    };
    match &p.aggregate {
        Some(a) => last(&p.post).unwrap_or_else(|| a.output_schema.clone()),
        None => last(&p.pre).unwrap_or_else(|| p.assign.schema.clone()),
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| RuntimeError::External(format!("cannot start a thread: {e}")))
}
