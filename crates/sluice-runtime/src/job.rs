//! Runs a job graph: one thread per task, joined by bounded channels (so a slow sink
//! slows the sources). Each edge's stateless steps run in its producer's task (a source
//! or a node); keyed nodes (aggregates, joins) are split over `parallelism` tasks by a
//! hash of the key; each sink merges its inputs by watermark so that its output is the
//! same for every parallelism. A coordinator takes checkpoints with aligned barriers.

mod control;
mod inputs;
mod merge;
mod node_task;
mod sink_task;
mod tasks;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::physical_plan::PhysicalExpr;
use sluice_state::StoredCheckpoint;
use sluice_types::key_hash::{key_hashes, partition_of};
use sluice_types::{Interrupt, Message};

use crate::error::{Result, RuntimeError};
use crate::live::LiveRows;
use crate::metrics::{JobMetrics, TaskCounters};
use crate::operator::{Chain, Operator, Snapshot};
use crate::operators::assign::AssignWindows;
use crate::operators::filter::Filter;
use crate::operators::first_row::FirstRow;
use crate::operators::lookup_join::LookupJoin;
use crate::operators::project::Project;
use crate::operators::session_aggregate::SessionAggregate;
use crate::operators::session_assign::SessionAssign;
use crate::operators::stream_join::StreamJoin;
use crate::operators::top_n::TopN;
use crate::operators::updating_aggregate::UpdatingAggregate;
use crate::operators::window_aggregate::WindowAggregate;
use crate::operators::window_join::WindowJoin;
use crate::plan::{
    Consumer, JobOutcome, JobSpec, JoinPlan, JoinTime, LookupSpec, NodeOp, Producer, SinkSpec,
    Step, WindowKind,
};
use crate::source::SourceWatermarks;
use control::{Ack, Control, Coordinator, TaskMsg, plan_lines};
use node_task::NodeTask;
use sink_task::SinkTask;
use tasks::{Head, SourceTask};

/// Controls a running job from outside.
#[derive(Clone, Default)]
pub struct JobHandle {
    stop: Interrupt,
    abort: Arc<AtomicBool>,
    pub metrics: Arc<JobMetrics>,
    /// The rows the sinks receive, for watchers; shared by every run of a job.
    pub live: Arc<LiveRows>,
}

impl JobHandle {
    pub fn new() -> Self {
        JobHandle::default()
    }

    /// A handle for a new run of a job whose watchers (`live`) carry over.
    pub fn with_live(live: Arc<LiveRows>) -> Self {
        JobHandle {
            live,
            ..JobHandle::default()
        }
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

type TaskTx = SyncSender<TaskMsg>;

/// A consumer task and which of its inputs this producer is.
pub(crate) struct Target {
    tx: TaskTx,
    input: usize,
    /// The consumer's counters, whose `queued` counts what waits in its queue.
    queue: Arc<TaskCounters>,
}

impl Target {
    fn send(&self, msg: Message) -> Result<()> {
        self.queue.queued.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(TaskMsg::Data(self.input, msg))
            .map_err(|_| closed())
    }
}

/// Where an edge's head sends its output.
pub(crate) enum Route {
    One(Target),
    Partitioned {
        targets: Vec<Target>,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        hashes: Vec<u32>,
    },
}

impl Route {
    fn send(&mut self, msg: Message) -> Result<()> {
        match self {
            Route::One(t) => t.send(msg),
            Route::Partitioned {
                targets,
                keys,
                hashes,
            } => match msg {
                Message::Batch(b) => {
                    if keys.is_empty() || targets.len() == 1 {
                        return targets[0].send(Message::Batch(b));
                    }
                    let n = b.num_rows();
                    let cols = keys
                        .iter()
                        .map(|e| e.evaluate(&b).and_then(|v| v.into_array(n)))
                        .collect::<Result<Vec<_>, _>>()?;
                    key_hashes(&cols, n, hashes)?;
                    let mut idx: Vec<Vec<u32>> = vec![Vec::new(); targets.len()];
                    for (row, h) in hashes.iter().enumerate() {
                        idx[partition_of(*h, targets.len())].push(row as u32);
                    }
                    for (p, rows) in idx.into_iter().enumerate() {
                        if !rows.is_empty() {
                            let part = take_record_batch(&b, &UInt32Array::from(rows))?;
                            targets[p].send(Message::Batch(part))?;
                        }
                    }
                    Ok(())
                }
                other => {
                    for t in targets.iter() {
                        t.send(other.clone())?;
                    }
                    Ok(())
                }
            },
        }
    }
}

fn closed() -> RuntimeError {
    RuntimeError::Stopped("a downstream task")
}

fn steps(steps: &[Step], late: &Arc<AtomicU64>) -> Vec<Box<dyn Operator>> {
    steps
        .iter()
        .map(|s| -> Box<dyn Operator> {
            match s {
                Step::Filter(p) => Box::new(Filter::new(p.clone())),
                Step::Project { exprs, schema } => {
                    Box::new(Project::new(exprs.clone(), schema.clone()))
                }
                Step::Assign(a) => Box::new(AssignWindows::new(a.clone(), late.clone())),
            }
        })
        .collect()
}

struct Failure(Mutex<Option<RuntimeError>>);

impl Failure {
    fn record(&self, e: RuntimeError, handle: &JobHandle) {
        if let Ok(mut slot) = self.0.lock() {
            // The first real error wins; "another task stopped" follows from it.
            let replace = matches!(slot.as_ref(), None | Some(RuntimeError::Stopped(_)));
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

/// Whether each node's input carries event time (its watermarks mean something).
fn timed_nodes(spec: &JobSpec) -> Vec<bool> {
    let mut timed = vec![false; spec.nodes.len()];
    loop {
        let mut changed = false;
        for e in &spec.edges {
            if let Consumer::Node { node, .. } = e.to {
                let t = match e.from {
                    Producer::Source(s) => spec.sources[s].event_time.is_some(),
                    Producer::Node(n) => timed[n],
                };
                if t && !timed[node] {
                    timed[node] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            return timed;
        }
    }
}

/// One input of a consumer task: one producer task of one edge.
#[derive(Debug, Clone, Copy)]
struct InputOf {
    edge: usize,
    part: usize,
    port: usize,
    timed: bool,
    stateless: bool,
}

fn input_index(list: &[InputOf], edge: usize, part: usize) -> Result<usize> {
    list.iter()
        .position(|i| i.edge == edge && i.part == part)
        .ok_or_else(|| RuntimeError::Internal("an edge lost its input".into()))
}

fn join_operator(
    plan: &JoinPlan,
    late: Arc<AtomicU64>,
    metrics: &JobMetrics,
    lookups: &[LookupSpec],
) -> Result<Box<dyn Operator>> {
    Ok(match &plan.time {
        JoinTime::Lookup {
            lookup, steps: s, ..
        } => {
            let table = lookups
                .get(*lookup)
                .ok_or_else(|| RuntimeError::Internal("a lookup join without its table".into()))?;
            Box::new(LookupJoin::new(
                plan.clone(),
                table.factory.open()?,
                Chain::new(steps(s, &late)),
            )?)
        }
        JoinTime::Window => Box::new(WindowJoin::new(plan.clone(), late)?),
        JoinTime::Interval { .. } | JoinTime::Regular { .. } => Box::new(StreamJoin::new(
            plan.clone(),
            late,
            metrics.rows_held_counter(),
        )?),
    })
}

/// Runs the job to its end: every source ended (then every window closes), or
/// [`JobHandle::stop`] (then a final checkpoint keeps what is open).
pub fn run_job(spec: JobSpec, handle: &JobHandle) -> Result<JobOutcome> {
    let plan = plan_lines(&spec);
    handle
        .metrics
        .set_topology(crate::topology::topology(&spec));
    let timed = timed_nodes(&spec);
    let JobSpec {
        name: job_name,
        sources,
        mut sinks,
        nodes,
        edges,
        lookups,
        parallelism,
        channel_capacity,
        mut checkpoint,
    } = spec;
    let parallelism = parallelism.max(1);
    let cap = channel_capacity.max(1);
    let mut stored = checkpoint.restore.take();
    // A distributed task opens its sinks under its generation first, fencing the task's
    // older owner, and only then settles what to restore: that owner may have
    // checkpointed and committed since the checkpoint was chosen, and state must not
    // fall behind rows already committed (each commit's checkpoint is written before it).
    let mut opened = None;
    if checkpoint.generation > 0 {
        let committed = open_sinks(&mut sinks, &job_name, checkpoint.generation)?;
        if let (Some(c), Some(store)) = (
            committed.iter().flatten().map(|e| e.0).max(),
            checkpoint.store.as_ref(),
        ) && stored.as_ref().is_none_or(|s| s.manifest.epoch < c)
        {
            stored = store.newest().map_err(|e| {
                RuntimeError::External(format!("job {job_name}: reading checkpoints: {e}"))
            })?;
        }
        opened = Some(committed);
    }
    if let Some(c) = &stored
        && let Some(why) = sluice_state::is_incompatible(&c.manifest.plan, &plan)
    {
        return Err(RuntimeError::User(format!(
            "cannot restore checkpoint {} of job {job_name} ({}): {why}. Start without it with --fresh, or restore a checkpoint taken with this plan",
            c.manifest.epoch,
            c.location()
        )));
    }
    // Each sink says what it has committed before (opened once, here unless above).
    let committed = match opened {
        Some(c) => c,
        None => open_sinks(&mut sinks, &job_name, checkpoint.generation)?,
    };
    if checkpoint.skip_if_finished
        && let Some(c) = stored.as_ref().filter(|c| c.manifest.finished)
    {
        // The final checkpoint is durable, but a crash may have come before its sinks
        // committed it: each sink recovers what the checkpoint holds for it.
        for (i, s) in sinks.iter_mut().enumerate() {
            let saved = match restored(Some(c), &format!("sink {i}"))? {
                Some(mut states) if states.len() > 1 => states
                    .pop()
                    .map(sink_task::sink_state_from)
                    .transpose()?
                    .unwrap_or_default(),
                _ => crate::sink::SinkState::default(),
            };
            s.sink
                .recover(sluice_types::Epoch(c.manifest.epoch), saved)?;
            s.sink.finish()?;
        }
        return Ok(JobOutcome::AlreadyFinished {
            epoch: c.manifest.epoch,
            rows_out: c.manifest.rows_out,
        });
    }
    let stored = stored.as_ref();
    if let Some(c) = stored {
        handle.metrics.set_restored_from(c.manifest.epoch);
    }

    // Sinks say what they have committed before; epochs continue above all of it.
    let mut last_epoch = checkpoint
        .after_epoch
        .max(stored.map_or(0, |c| c.manifest.epoch));
    for (s, e) in sinks.iter().zip(&committed) {
        if let Some(e) = e {
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
    let ctl = Arc::new(Control {
        keep_state: checkpoint.store.is_some(),
        ..Control::default()
    });
    ctl.requested.store(last_epoch, Ordering::SeqCst);
    let (ack_tx, ack_rx) = channel::<Ack>();
    let mut threads: Vec<JoinHandle<()>> = Vec::new();

    // Each source back where the checkpoint left it, then split over up to
    // `parallelism` tasks (a restore runs at the parallelism it was taken at, so the
    // split is the one saved).
    let mut sources = sources;
    let mut split_off: Vec<Vec<Box<dyn crate::source::Source>>> = Vec::new();
    for (si, s) in sources.iter_mut().enumerate() {
        if let Some(saved) = stored.and_then(|c| c.manifest.sources.get(si)) {
            s.source.seek(&saved.offsets)?;
        }
        split_off.push(if parallelism > 1 {
            s.source.split(parallelism)?
        } else {
            Vec::new()
        });
    }
    let source_tasks: Vec<usize> = split_off.iter().map(|p| p.len() + 1).collect();
    let task_sources: Vec<usize> = source_tasks
        .iter()
        .enumerate()
        .flat_map(|(si, &n)| std::iter::repeat_n(si, n))
        .collect();
    if let Ok(mut d) = ctl.durable.lock() {
        *d = vec![None; task_sources.len()];
    }
    let instances = |p: Producer| match p {
        Producer::Node(n) if nodes[n].keyed => parallelism,
        Producer::Source(s) => source_tasks[s],
        Producer::Node(_) => 1,
    };
    let mut expected_acks = task_sources.len();

    // Every consumer's inputs: one per producer task of each edge into it.
    let mut node_inputs: Vec<Vec<InputOf>> = vec![Vec::new(); nodes.len()];
    let mut sink_inputs: Vec<Vec<InputOf>> = vec![Vec::new(); sinks.len()];
    for (ei, e) in edges.iter().enumerate() {
        let (list, port) = match e.to {
            Consumer::Node { node, port } => (&mut node_inputs[node], port),
            Consumer::Sink(s) => (&mut sink_inputs[s], 0),
        };
        let producer_timed = match e.from {
            Producer::Source(s) => sources[s].event_time.is_some(),
            Producer::Node(n) => timed[n],
        };
        for part in 0..instances(e.from) {
            list.push(InputOf {
                edge: ei,
                part,
                port,
                timed: producer_timed,
                stateless: matches!(e.from, Producer::Source(_)),
            });
        }
    }

    // Sinks.
    let mut sink_txs: Vec<Option<TaskTx>> = Vec::new();
    let mut sink_queues: Vec<Option<Arc<TaskCounters>>> = Vec::new();
    for (i, s) in sinks.into_iter().enumerate() {
        if sink_inputs[i].is_empty() {
            sink_txs.push(None); // a table nothing is inserted into
            sink_queues.push(None);
            continue;
        }
        let (tx, rx) = sync_channel::<TaskMsg>(cap);
        sink_txs.push(Some(tx));
        sink_queues.push(Some(queue_counters(
            handle,
            &format!("sink {}", s.name),
            cap,
        )));
        expected_acks += 1;
        let id = format!("sink {i}");
        let restore = restored(stored, &id)?;
        let task = SinkTask {
            id,
            table: s.name.clone(),
            inputs: sink_inputs[i].iter().map(|x| x.stateless).collect(),
            watermarked: sink_inputs[i].iter().any(|x| x.timed),
            restored_epoch: stored.map(|c| sluice_types::Epoch(c.manifest.epoch)),
            schema: s.schema.clone(),
            acks: ack_tx.clone(),
        };
        let h = handle.clone();
        let mut sink = s.sink;
        threads.push(spawn(
            format!("sink {}", s.name),
            &failure,
            handle,
            move || task.run(rx, sink.as_mut(), restore, &h),
        )?);
    }

    // Node tasks' channels, made before any route points at them.
    let mut node_txs: Vec<Vec<(TaskTx, Arc<TaskCounters>)>> = Vec::new();
    let mut node_rxs: Vec<Vec<Option<Receiver<TaskMsg>>>> = Vec::new();
    for (ni, node) in nodes.iter().enumerate() {
        let (mut txs, mut rxs) = (Vec::new(), Vec::new());
        for part in 0..instances(Producer::Node(ni)) {
            let (tx, rx) = sync_channel::<TaskMsg>(cap);
            txs.push((
                tx,
                queue_counters(handle, &format!("{} {part}", node.name), cap),
            ));
            rxs.push(Some(rx));
        }
        node_txs.push(txs);
        node_rxs.push(rxs);
    }

    // Late rows are counted per consumer (the steps into it and the node itself); rows
    // of a source read by several consumers are late for each, so /metrics shows the
    // largest count.
    let mut late_counters: std::collections::HashMap<(bool, usize), Arc<AtomicU64>> =
        std::collections::HashMap::new();
    let mut late_of = |c: Consumer| {
        let key = match c {
            Consumer::Node { node, .. } => (true, node),
            Consumer::Sink(s) => (false, s),
        };
        late_counters
            .entry(key)
            .or_insert_with(|| handle.metrics.late_counter())
            .clone()
    };

    // The head of every edge, per producer task: its steps and where they send.
    let mut source_heads: Vec<Vec<Vec<Head>>> = source_tasks
        .iter()
        .map(|&n| (0..n).map(|_| Vec::new()).collect())
        .collect();
    let mut node_heads: Vec<Vec<Vec<Head>>> = (0..nodes.len())
        .map(|ni| {
            (0..instances(Producer::Node(ni)))
                .map(|_| Vec::new())
                .collect()
        })
        .collect();
    let mut made = Vec::new();
    for (ei, e) in edges.iter().enumerate() {
        let count = instances(e.from);
        for part in 0..count {
            let route = match e.to {
                Consumer::Sink(s) => Route::One(Target {
                    tx: sink_txs[s]
                        .clone()
                        .ok_or_else(|| RuntimeError::Internal("an edge into no sink".into()))?,
                    input: input_index(&sink_inputs[s], ei, part)?,
                    queue: sink_queues[s]
                        .clone()
                        .ok_or_else(|| RuntimeError::Internal("an edge into no sink".into()))?,
                }),
                Consumer::Node { node, .. } => {
                    let input = input_index(&node_inputs[node], ei, part)?;
                    let mut targets: Vec<Target> = node_txs[node]
                        .iter()
                        .map(|(tx, queue)| Target {
                            tx: tx.clone(),
                            input,
                            queue: queue.clone(),
                        })
                        .collect();
                    if targets.len() == 1 {
                        Route::One(targets.remove(0))
                    } else {
                        Route::Partitioned {
                            targets,
                            keys: e.keys.clone(),
                            hashes: Vec::new(),
                        }
                    }
                }
            };
            let id = if count == 1 {
                format!("edge {ei}")
            } else {
                format!("edge {ei} part {part}")
            };
            let mut chain = Chain::new(steps(&e.steps, &late_of(e.to)));
            if let Some(states) = restored(stored, &id)? {
                chain.restore(states)?;
            }
            made.push((e.from, part, Head { id, chain, route }));
        }
    }
    for (from, part, head) in made {
        match from {
            Producer::Source(s) => source_heads[s][part].push(head),
            Producer::Node(n) => node_heads[n][part].push(head),
        }
    }

    // Node tasks.
    for (ni, node) in nodes.iter().enumerate() {
        let heads = std::mem::take(&mut node_heads[ni]);
        for (part, outputs) in heads.into_iter().enumerate() {
            let id = format!("node {ni} part {part}");
            let mut op: Box<dyn Operator> = match &node.op {
                NodeOp::Aggregate(agg) => match agg.window {
                    None => Box::new(UpdatingAggregate::new(
                        agg.clone(),
                        handle.metrics.keys_held_counter(),
                    )?),
                    Some(WindowKind::Session { .. }) => Box::new(SessionAggregate::new(
                        agg.clone(),
                        late_of(Consumer::Node { node: ni, port: 0 }),
                    )?),
                    _ => Box::new(WindowAggregate::new(
                        agg.clone(),
                        late_of(Consumer::Node { node: ni, port: 0 }),
                    )?),
                },
                NodeOp::FirstRow(p) => Box::new(FirstRow::new(
                    p.clone(),
                    late_of(Consumer::Node { node: ni, port: 0 }),
                )?),
                NodeOp::TopN(p) => Box::new(TopN::new(
                    p.clone(),
                    late_of(Consumer::Node { node: ni, port: 0 }),
                    handle.metrics.keys_held_counter(),
                )?),
                NodeOp::Sessions(p) => Box::new(SessionAssign::new(
                    p.clone(),
                    late_of(Consumer::Node { node: ni, port: 0 }),
                )?),
                NodeOp::Join(j) => join_operator(
                    j,
                    late_of(Consumer::Node { node: ni, port: 0 }),
                    &handle.metrics,
                    &lookups,
                )?,
            };
            if let Some(mut states) = restored(stored, &id)?
                && let Some(state) = states.pop()
            {
                op.restore(state)?;
            }
            let rx = node_rxs[ni][part]
                .take()
                .ok_or_else(|| RuntimeError::Internal("a node task's input was taken".into()))?;
            expected_acks += 1;
            let task = NodeTask {
                id: id.clone(),
                op,
                ports: node_inputs[ni].iter().map(|x| x.port).collect(),
                timed: node_inputs[ni].iter().map(|x| x.timed).collect(),
                outputs,
                acks: ack_tx.clone(),
                keep_state: ctl.keep_state,
            };
            let h = handle.clone();
            let counters = handle.metrics.task(&format!("{} {part}", node.name));
            threads.push(spawn(id, &failure, handle, move || {
                task.run(rx, &h, &counters)
            })?);
        }
    }
    drop(node_txs);

    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let mut task = 0;
    for ((si, s), more) in sources.into_iter().enumerate().zip(split_off) {
        let saved = stored.and_then(|c| c.manifest.sources.get(si));
        if let Some(wm) = saved.and_then(|saved| saved.watermark) {
            handle
                .metrics
                .observe_watermark(sluice_types::Watermark::from_millis(wm));
        }
        let parts: Vec<Box<dyn crate::source::Source>> =
            std::iter::once(s.source).chain(more).collect();
        let whole = parts.len() == 1;
        let partitions: usize = parts.iter().map(|p| p.partitions().max(1)).sum();
        let watermarks = s.event_time.map(|(c, d)| {
            let mut w = SourceWatermarks::new(c, d, partitions, s.idle_timeout);
            if let Some(saved) = saved {
                w.restore(&saved.max_event_times, saved.watermark);
            }
            Arc::new(Mutex::new(w))
        });
        let restored_wm = saved.and_then(|s| s.watermark).map_or(
            sluice_types::Watermark::MIN,
            sluice_types::Watermark::from_millis,
        );
        let mut first = 0;
        for (part, source) in parts.into_iter().enumerate() {
            // A source read whole owns every partition, those it adds later too.
            let own = if whole {
                0..usize::MAX
            } else {
                first..first + source.partitions().max(1)
            };
            first = own.end;
            let t = SourceTask {
                index: si,
                task,
                name: s.name.clone(),
                source,
                watermarks: watermarks.clone(),
                own,
                emitted: restored_wm,
                heads: std::mem::take(&mut source_heads[si][part]),
                ctl: ctl.clone(),
                acks: ack_tx.clone(),
                injected: last_epoch,
            };
            task += 1;
            let h = handle.clone();
            let thread = if whole {
                format!("source {}", s.name)
            } else {
                format!("source {} {part}", s.name)
            };
            threads.push(spawn(thread, &failure, handle, move || t.run(&h))?);
        }
    }
    drop(ack_tx);

    let coordinator = Coordinator {
        job: job_name,
        settings: checkpoint,
        plan,
        source_names,
        task_sources,
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

/// Opens every sink under the task's generation; what each has committed before.
fn open_sinks(
    sinks: &mut [SinkSpec],
    job: &str,
    generation: u64,
) -> Result<Vec<Option<sluice_types::Epoch>>> {
    sinks
        .iter_mut()
        .map(|s| {
            s.sink.fence(generation);
            s.sink.open(job, &s.name)
        })
        .collect()
}

/// A consumer task's counters, with the capacity of its input queue set.
fn queue_counters(handle: &JobHandle, task: &str, capacity: usize) -> Arc<TaskCounters> {
    let c = handle.metrics.task(task);
    c.capacity.store(capacity as u64, Ordering::Relaxed);
    c
}

/// Starts a task's thread: its error, or its panic as an internal error naming the task,
/// fails the job (so a panicking operator stops the job instead of leaving it waiting).
fn spawn(
    name: String,
    failure: &Arc<Failure>,
    handle: &JobHandle,
    f: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<JoinHandle<()>> {
    let (failure, handle) = (failure.clone(), handle.clone());
    let task = name.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let error = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    RuntimeError::Internal(format!("task {task} failed: {why}"))
                }
            };
            failure.record(error, &handle);
        })
        .map_err(|e| RuntimeError::External(format!("cannot start a thread: {e}")))
}
