//! Runs a job: one thread per task, joined by bounded channels (so a slow sink slows
//! the sources). Sources run their pipelines' stateless heads; windowed aggregates are
//! split over `parallelism` tasks by a hash of the group key; each sink merges its
//! inputs by watermark so that its output is the same for every parallelism.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_plan::PhysicalExpr;
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::metrics::JobMetrics;
use crate::operator::{Chain, Operator};
use crate::operators::assign::AssignWindows;
use crate::operators::filter::Filter;
use crate::operators::project::Project;
use crate::operators::session_aggregate::SessionAggregate;
use crate::operators::sort::sort_all_columns;
use crate::operators::window_aggregate::WindowAggregate;
use crate::plan::{JobSpec, PipelineSpec, Step, WindowKind};
use crate::sink::Sink;
use crate::source::{Source, SourcePoll, SourceWatermarks};

/// Controls a running job from outside.
#[derive(Clone, Default)]
pub struct JobHandle {
    stop: Arc<AtomicBool>,
    pub metrics: Arc<JobMetrics>,
}

impl JobHandle {
    pub fn new() -> Self {
        JobHandle::default()
    }

    /// Asks the sources to stop reading; open windows are not emitted.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

type SinkTx = SyncSender<(usize, Message)>;

/// Where a pipeline's head sends its output.
enum Route {
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
            Route::Sink { tx, input } => tx.send((*input, msg)).map_err(|_| closed()),
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
                Some(RuntimeError::Internal(m)) => m == "a downstream task has stopped",
                _ => false,
            };
            if replace {
                *slot = Some(e);
            }
        }
        handle.stop();
    }
}

/// Runs the job to its end (every source ended, or [`JobHandle::stop`]).
pub fn run_job(spec: JobSpec, handle: &JobHandle) -> Result<()> {
    let JobSpec {
        sources,
        sinks,
        pipelines,
        parallelism,
        channel_capacity,
    } = spec;
    let parallelism = parallelism.max(1);
    let cap = channel_capacity.max(1);
    let failure = Arc::new(Failure(Mutex::new(None)));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();

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
    let mut sink_txs: Vec<SinkTx> = Vec::new();
    for (i, s) in sinks.into_iter().enumerate() {
        let (tx, rx) = sync_channel::<(usize, Message)>(cap);
        sink_txs.push(tx);
        let inputs = sink_inputs[i].clone();
        let schema = pipelines.iter().find(|p| p.sink == i).map(output_schema);
        let (h, f) = (handle.clone(), failure.clone());
        let mut sink = s.sink;
        threads.push(spawn(format!("sink {}", s.name), move || {
            let Some(schema) = schema else {
                return;
            };
            if let Err(e) = run_sink(rx, inputs, schema, sink.as_mut(), &h) {
                f.record(e, &h);
            }
        })?);
    }

    // Aggregators and pipeline heads.
    let mut heads: Vec<Vec<(Chain, Route)>> = (0..sources.len()).map(|_| Vec::new()).collect();
    for (pi, p) in pipelines.iter().enumerate() {
        let late = handle.metrics.late_counter();
        let mut head_ops: Vec<Box<dyn Operator>> =
            vec![Box::new(AssignWindows::new(p.assign.clone(), late.clone()))];
        head_ops.extend(steps(&p.pre));
        let route = match &p.aggregate {
            None => Route::Sink {
                tx: sink_txs[p.sink].clone(),
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
                    let chain = Chain::new(ops);
                    let out = Route::Sink {
                        tx: sink_txs[p.sink].clone(),
                        input,
                    };
                    let (h, f) = (handle.clone(), failure.clone());
                    threads.push(spawn(format!("{} aggregate {part}", p.name), move || {
                        if let Err(e) = run_task(rx, chain, out) {
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
        heads[p.source].push((Chain::new(head_ops), route));
    }
    drop(sink_txs);

    for (si, s) in sources.into_iter().enumerate() {
        let outs = std::mem::take(&mut heads[si]);
        let (h, f) = (handle.clone(), failure.clone());
        let name = s.name.clone();
        let wm = s
            .event_time
            .map(|(c, d)| SourceWatermarks::new(c, d, s.source.partitions(), s.idle_timeout));
        let mut source = s.source;
        threads.push(spawn(format!("source {name}"), move || {
            if let Err(e) = run_source(source.as_mut(), wm, outs, &h) {
                f.record(e, &h);
            }
        })?);
    }

    for t in threads {
        if t.join().is_err() {
            failure.record(RuntimeError::Internal("a task panicked".into()), handle);
        }
    }
    let err = failure.0.lock().ok().and_then(|mut s| s.take());
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn output_schema(p: &PipelineSpec) -> SchemaRef {
    let last = |steps: &[Step]| {
        steps.iter().rev().find_map(|s| match s {
            Step::Project { schema, .. } => Some(schema.clone()),
            Step::Filter(_) => None,
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

fn run_source(
    source: &mut dyn Source,
    mut wm: Option<SourceWatermarks>,
    mut outs: Vec<(Chain, Route)>,
    handle: &JobHandle,
) -> Result<()> {
    let deliver = |msg: Message, outs: &mut Vec<(Chain, Route)>| -> Result<()> {
        for (chain, route) in outs.iter_mut() {
            for m in chain.push(msg.clone())? {
                route.send(m)?;
            }
        }
        Ok(())
    };
    let mut ended = false;
    while !handle.is_stopping() {
        match source.poll()? {
            SourcePoll::End => {
                ended = true;
                break;
            }
            SourcePoll::Idle => {}
            SourcePoll::Batch { partition, batch } => {
                handle.metrics.add_events_in(batch.num_rows() as u64);
                if let Some(g) = wm.as_mut() {
                    g.observe(partition, &batch)?;
                }
                deliver(Message::Batch(batch), &mut outs)?;
            }
        }
        if let Some(w) = wm.as_mut().and_then(|g| g.advance(Instant::now())) {
            handle.metrics.observe_watermark(w);
            deliver(Message::Watermark(w), &mut outs)?;
        }
    }
    if ended {
        deliver(Message::Watermark(Watermark::MAX), &mut outs)?;
    }
    deliver(Message::EndOfStream, &mut outs)
}

fn run_task(rx: Receiver<Message>, mut chain: Chain, mut out: Route) -> Result<()> {
    while let Ok(msg) = rx.recv() {
        let end = matches!(msg, Message::EndOfStream);
        for m in chain.push(msg)? {
            out.send(m)?;
        }
        if end {
            break;
        }
    }
    Ok(())
}

/// Merges a sink's inputs: rows are released in watermark order, each watermark's rows
/// sorted, so the output does not depend on how work was split.
fn run_sink(
    rx: Receiver<(usize, Message)>,
    inputs: Vec<bool>,
    schema: SchemaRef,
    sink: &mut dyn Sink,
    handle: &JobHandle,
) -> Result<()> {
    let n = inputs.len();
    let passthrough = n == 1 && inputs[0];
    let mut wms = vec![Watermark::MIN; n];
    let mut ended = vec![false; n];
    let mut open: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
    let mut segments: BTreeMap<Watermark, Vec<RecordBatch>> = BTreeMap::new();
    let mut released = Watermark::MIN;
    let write = |batch: &RecordBatch, sink: &mut dyn Sink| -> Result<()> {
        if batch.num_rows() > 0 {
            handle.metrics.add_rows_out(batch.num_rows() as u64);
            sink.write_batch(batch)?;
        }
        Ok(())
    };
    while ended.iter().any(|e| !e) {
        let Ok((i, msg)) = rx.recv() else {
            break;
        };
        match msg {
            Message::Batch(b) if passthrough => write(&b, sink)?,
            Message::Batch(b) => open[i].push(b),
            Message::Watermark(w) => {
                let seg = std::mem::take(&mut open[i]);
                segments.entry(w).or_default().extend(seg);
                wms[i] = wms[i].max(w);
            }
            Message::Barrier(_) => {}
            Message::EndOfStream => {
                ended[i] = true;
                let seg = std::mem::take(&mut open[i]);
                segments.entry(Watermark::MAX).or_default().extend(seg);
            }
        }
        let min = (0..n)
            .filter(|&i| !ended[i])
            .map(|i| wms[i])
            .min()
            .unwrap_or(Watermark::MAX);
        if min > released || ended.iter().all(|e| *e) {
            while let Some(entry) = segments.first_entry() {
                if *entry.key() > min {
                    break;
                }
                let batches = entry.remove();
                if !batches.is_empty() {
                    let sorted = sort_all_columns(&schema, &batches)?;
                    write(&sorted, sink)?;
                }
            }
            if min > released {
                released = min;
                sink.on_watermark(min)?;
            }
        }
    }
    sink.finish()
}
