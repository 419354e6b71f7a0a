//! What the runtime is asked to run: sources, sinks, and per pipeline a window
//! assignment, stateless steps, an optional windowed aggregate and more steps.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::PhysicalExpr;

use crate::sink::Sink;
use crate::source::Source;

/// How rows are grouped in event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble { size_ms: i64 },
    Hop { slide_ms: i64, size_ms: i64 },
    Session { gap_ms: i64 },
}

impl WindowKind {
    /// Whether every window a row at `t` belongs to has closed at watermark `wm`.
    pub fn is_late(&self, t: i64, wm: i64) -> bool {
        match *self {
            WindowKind::Tumble { size_ms } => t.div_euclid(size_ms) * size_ms + size_ms <= wm,
            WindowKind::Hop { slide_ms, size_ms } => {
                t.div_euclid(slide_ms) * slide_ms + size_ms <= wm
            }
            // A row older than the watermark could belong to a session already emitted.
            WindowKind::Session { .. } => t < wm,
        }
    }
}

/// A stateless step.
#[derive(Debug, Clone)]
pub enum Step {
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
    },
}

/// Reading a source for one pipeline: window assignment and column selection.
#[derive(Debug, Clone)]
pub struct AssignSpec {
    /// Indices into the source columns followed by `window_start`, `window_end`.
    pub projection: Vec<usize>,
    pub window: Option<WindowKind>,
    pub time_column: Option<usize>,
    pub delay_ms: i64,
    /// Judge lateness per row against the running maximum event time (exact and
    /// independent of batching for a single-partition source); otherwise against the
    /// source's watermark messages only.
    pub per_row_lateness: bool,
    pub schema: SchemaRef,
}

/// A windowed GROUP BY.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    pub window: WindowKind,
    pub input_schema: SchemaRef,
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub window_key: usize,
    pub window_key_is_end: bool,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    pub output_schema: SchemaRef,
}

impl AggregatePlan {
    /// Group expressions other than the window columns: the key rows are hashed by.
    pub fn key_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.group_exprs
            .iter()
            .enumerate()
            .filter(|(i, e)| *i != self.window_key && !self.is_window_column(e))
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn is_window_column(&self, e: &Arc<dyn PhysicalExpr>) -> bool {
        e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
            .is_some_and(|c| c.name() == "window_start" || c.name() == "window_end")
    }
}

/// One INSERT, ready to run.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub name: String,
    pub source: usize,
    pub sink: usize,
    pub assign: AssignSpec,
    pub pre: Vec<Step>,
    pub aggregate: Option<AggregatePlan>,
    pub post: Vec<Step>,
}

/// A source with its event-time column and watermark delay.
pub struct SourceSpec {
    pub name: String,
    /// What the source reads (connector, topic, path…), for the checkpoint's plan.
    pub definition: String,
    pub source: Box<dyn Source>,
    pub event_time: Option<(usize, i64)>,
    /// A partition with no data for this long does not hold the watermark back.
    pub idle_timeout: std::time::Duration,
}

pub struct SinkSpec {
    pub name: String,
    /// Where the sink writes (connector, table, path…), for the checkpoint's plan.
    pub definition: String,
    pub sink: Box<dyn Sink>,
}

/// How a job checkpoints. Barriers run even without a store: transactional sinks
/// commit at each one (at least once, then, across restarts).
pub struct CheckpointSettings {
    pub store: Option<sluice_state::CheckpointStore>,
    pub interval: std::time::Duration,
    /// How many checkpoints to keep.
    pub keep: usize,
    /// The job's SQL, kept in each manifest.
    pub sql: String,
    pub restore: Option<sluice_state::StoredCheckpoint>,
    /// The first epoch is above this (a fresh run numbers on after old checkpoints).
    pub after_epoch: u64,
    /// Fault injection for tests: abort the process once this epoch's checkpoint is
    /// durable, before any sink commits it.
    pub abort_after: Option<u64>,
    /// A restored checkpoint marked finished means the job has nothing left to do: it
    /// does not run (set when the newest checkpoint was chosen for the user).
    pub skip_if_finished: bool,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            store: None,
            interval: std::time::Duration::from_secs(10),
            keep: 3,
            sql: String::new(),
            restore: None,
            after_epoch: 0,
            abort_after: None,
            skip_if_finished: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// It ran: every source ended, or it was stopped.
    Ran,
    /// Its newest checkpoint says it had finished: nothing ran, nothing was written.
    AlreadyFinished { epoch: u64, rows_out: u64 },
}

/// Everything a job needs to run.
pub struct JobSpec {
    pub name: String,
    pub sources: Vec<SourceSpec>,
    pub sinks: Vec<SinkSpec>,
    pub pipelines: Vec<PipelineSpec>,
    pub parallelism: usize,
    /// Capacity of each channel between tasks, in messages.
    pub channel_capacity: usize,
    pub checkpoint: CheckpointSettings,
}
