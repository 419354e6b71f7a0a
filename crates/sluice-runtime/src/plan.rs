//! What the runtime is asked to run: a graph of sources, stateful nodes (aggregates,
//! joins) and sinks, joined by edges that carry stateless steps.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
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

impl std::fmt::Display for WindowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowKind::Tumble { size_ms } => write!(f, "TUMBLE(size={size_ms}ms)"),
            WindowKind::Hop { slide_ms, size_ms } => {
                write!(f, "HOP(slide={slide_ms}ms, size={size_ms}ms)")
            }
            WindowKind::Session { gap_ms } => write!(f, "SESSION(gap={gap_ms}ms)"),
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
    /// Window assignment (a TUMBLE/HOP/SESSION in FROM) and column selection.
    Assign(AssignSpec),
}

impl Step {
    /// The schema of the rows this step puts out, when it changes them.
    pub fn output_schema(&self) -> Option<SchemaRef> {
        match self {
            Step::Filter(_) => None,
            Step::Project { schema, .. } => Some(schema.clone()),
            Step::Assign(a) => Some(a.schema.clone()),
        }
    }
}

/// Window assignment and column selection over a stream's rows.
#[derive(Debug, Clone)]
pub struct AssignSpec {
    /// Indices into the input columns followed by `window_start`, `window_end`.
    pub projection: Vec<usize>,
    pub window: Option<WindowKind>,
    pub time_column: Option<usize>,
    pub delay_ms: i64,
    /// Judge lateness per row against the running maximum event time (exact and
    /// independent of batching for a single-partition source); otherwise against the
    /// input's watermark messages only.
    pub per_row_lateness: bool,
    pub schema: SchemaRef,
}

/// A GROUP BY: over a window (each window's rows emitted once, when it closes), or
/// without one (an updating result: each changed group's new row at every barrier).
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// `None`: no window, an updating result.
    pub window: Option<WindowKind>,
    pub input_schema: SchemaRef,
    pub group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    pub window_key: usize,
    pub window_key_is_end: bool,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The group columns then one per aggregate (without `__op`).
    pub output_schema: SchemaRef,
    /// Whether the input is a changelog (rows carry `__op`; retractions are taken back).
    pub input_updating: bool,
    /// `SET state.ttl` (no window only): a group unchanged while the watermark moved
    /// this far is forgotten, and deleted downstream.
    pub ttl_ms: Option<i64>,
}

impl AggregatePlan {
    /// Group expressions other than the window columns: the key rows are hashed by.
    pub fn key_exprs(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.group_exprs
            .iter()
            .enumerate()
            .filter(|(i, e)| {
                self.window.is_none() || (*i != self.window_key && !self.is_window_column(e))
            })
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn is_window_column(&self, e: &Arc<dyn PhysicalExpr>) -> bool {
        e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
            .is_some_and(|c| c.name() == "window_start" || c.name() == "window_end")
    }
}

/// How a join decides which rows can still meet.
#[derive(Debug, Clone)]
pub enum JoinTime {
    /// No time bound: every row is kept (or until `ttl_ms` of event time has passed
    /// over it, when the side has a time column).
    Regular { ttl_ms: Option<i64> },
    /// `right.t BETWEEN left.t + lower_ms AND left.t + upper_ms`.
    Interval { lower_ms: i64, upper_ms: i64 },
    /// Both sides windowed alike and joined on the window: a window's rows meet once,
    /// when the watermark passes its end.
    Window,
    /// The right side is a table looked up by key (`lookup` in the job's lookups): each
    /// stream row meets the rows it has when the row arrives, fetched by key in batches
    /// and kept for `ttl_ms` of processing time. Fetched rows go through `steps` to
    /// become the join's right rows; `key_columns` name the table columns the right keys
    /// are.
    Lookup {
        lookup: usize,
        ttl_ms: i64,
        steps: Vec<Step>,
        key_columns: Vec<String>,
    },
}

/// Which rows a join puts out: matched pairs (inner), with the unmatched rows of one or
/// both sides (outer), or one side's rows that have a match (semi) or have none (anti).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    LeftSemi,
    RightSemi,
    LeftAnti,
    RightAnti,
}

impl JoinKind {
    /// Whether the left side's unmatched rows go out (padded, or alone for anti).
    pub fn keeps_left(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Full | JoinKind::LeftAnti)
    }
    pub fn keeps_right(self) -> bool {
        matches!(self, JoinKind::Right | JoinKind::Full | JoinKind::RightAnti)
    }
    /// The side (0 left, 1 right) a semi join puts out.
    pub fn semi_side(self) -> Option<usize> {
        match self {
            JoinKind::LeftSemi => Some(0),
            JoinKind::RightSemi => Some(1),
            _ => None,
        }
    }
    /// Whether only one side's columns go out.
    pub fn one_side(self) -> bool {
        matches!(
            self,
            JoinKind::LeftSemi | JoinKind::RightSemi | JoinKind::LeftAnti | JoinKind::RightAnti
        )
    }
}

/// A join of two streams on equal keys, with an optional extra condition.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub time: JoinTime,
    pub kind: JoinKind,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Whether NULL keys match each other (`IS NOT DISTINCT FROM`).
    pub null_equals_null: bool,
    pub filter: Option<datafusion::physical_plan::joins::utils::JoinFilter>,
    /// Per side, the column holding the row's time: its event time (interval and
    /// regular joins) or its window's end (window joins; `time_offset_ms` is added when
    /// the column is the window's start).
    pub left_time: Option<usize>,
    pub right_time: Option<usize>,
    pub time_offset_ms: i64,
    /// Left columns then right columns (one side's only for semi and anti joins).
    pub joined_schema: SchemaRef,
    /// Columns of the joined rows that are put out, in order (all when `None`).
    pub projection: Option<Vec<usize>>,
    pub output_schema: SchemaRef,
}

impl JoinPlan {
    /// Whether the join's output is a changelog: an outer join without a time bound puts
    /// out an unmatched row padded at once and takes it back when a match comes.
    pub fn updating(&self) -> bool {
        matches!(self.time, JoinTime::Regular { .. })
            && matches!(self.kind, JoinKind::Left | JoinKind::Right | JoinKind::Full)
    }
}

/// Rows of a SESSION window put out with their session's bounds once it closes.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub gap_ms: i64,
    /// In and out (the bounds columns are rewritten).
    pub schema: SchemaRef,
    /// Sessions are per value of these (none: one session stream for all rows).
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The `window_start` column: holds each row's event time on the way in.
    pub start_column: usize,
    pub end_column: usize,
}

/// The first row per key by event time (`ROW_NUMBER() … = 1`).
#[derive(Debug, Clone)]
pub struct FirstRowPlan {
    pub schema: SchemaRef,
    /// The PARTITION BY expressions.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The ORDER BY column: an event-time attribute.
    pub time_column: usize,
    /// `SET state.ttl`: a key already out is forgotten once the watermark is this far
    /// past its row's time (a later row of it is then a first row again).
    pub ttl_ms: Option<i64>,
    /// The input's columns and `row_number` (always 1).
    pub output_schema: SchemaRef,
}

/// The best `limit` rows per key (`ROW_NUMBER() … <= N`): per window, append-only; else
/// an updating result.
#[derive(Debug, Clone)]
pub struct TopNPlan {
    pub schema: SchemaRef,
    /// The PARTITION BY expressions.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The ORDER BY expressions, with their directions.
    pub order: Vec<datafusion::physical_expr::PhysicalSortExpr>,
    pub limit: usize,
    /// Per window: the input column of a window bound among the keys and what to add to
    /// it for the window's end (the size, for `window_start`). `None`: updating.
    pub window: Option<(usize, i64)>,
    /// `SET state.ttl` (updating only): a key unchanged while the watermark moved this
    /// far is forgotten, and its rows deleted downstream.
    pub ttl_ms: Option<i64>,
    /// Whether the input is a changelog (rows carry `__op`): then each key keeps all its
    /// live rows, since a retraction of one of its best N brings up the next.
    pub input_updating: bool,
    /// The input's columns and `row_number`.
    pub output_schema: SchemaRef,
}

/// A stateful operator of the job graph.
#[derive(Debug, Clone)]
pub enum NodeOp {
    Aggregate(AggregatePlan),
    Join(JoinPlan),
    Sessions(SessionPlan),
    FirstRow(FirstRowPlan),
    TopN(TopNPlan),
}

impl NodeOp {
    pub fn output_schema(&self) -> SchemaRef {
        match self {
            NodeOp::Aggregate(a) if a.window.is_none() => {
                sluice_types::changelog::with_op(&a.output_schema)
            }
            NodeOp::Aggregate(a) => a.output_schema.clone(),
            NodeOp::Join(j) if j.updating() => sluice_types::changelog::with_op(&j.output_schema),
            NodeOp::Join(j) => j.output_schema.clone(),
            NodeOp::Sessions(p) => p.schema.clone(),
            NodeOp::FirstRow(p) => p.output_schema.clone(),
            NodeOp::TopN(p) if p.window.is_none() => {
                sluice_types::changelog::with_op(&p.output_schema)
            }
            NodeOp::TopN(p) => p.output_schema.clone(),
        }
    }

    /// Whether the node's output is a changelog (its rows carry `__op`) rather than
    /// append-only.
    pub fn updating(&self) -> bool {
        match self {
            NodeOp::Aggregate(a) => a.window.is_none(),
            NodeOp::TopN(p) => p.window.is_none(),
            NodeOp::Join(j) => j.updating(),
            _ => false,
        }
    }

    /// How many input ports the operator has.
    pub fn ports(&self) -> usize {
        match self {
            NodeOp::Aggregate(_) | NodeOp::Sessions(_) | NodeOp::FirstRow(_) | NodeOp::TopN(_) => 1,
            NodeOp::Join(_) => 2,
        }
    }
}

/// Fetches a table's rows by key: the other side of a lookup join (a database table).
pub trait Lookup: Send {
    /// Every row whose key columns equal one of the rows of `keys` (a batch of distinct
    /// key values, one column per key column, named as the table's).
    fn fetch(&mut self, keys: &RecordBatch) -> crate::error::Result<RecordBatch>;
}

/// Opens a lookup for each task of a lookup join.
pub trait LookupFactory: Send + Sync {
    fn open(&self) -> crate::error::Result<Box<dyn Lookup>>;
}

/// A table looked up by key.
pub struct LookupSpec {
    pub name: String,
    /// What it reads (connector, table), for the checkpoint's plan.
    pub definition: String,
    pub factory: std::sync::Arc<dyn LookupFactory>,
}

/// A stateful node, run as `parallelism` tasks when its inputs are keyed, else one.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub op: NodeOp,
    /// Whether rows are split over several tasks by key (every incoming edge has keys).
    pub keyed: bool,
}

/// Where an edge starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    Source(usize),
    Node(usize),
}

/// Where an edge ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Node { node: usize, port: usize },
    Sink(usize),
}

/// Rows flowing from a producer to a consumer through stateless steps (run in the
/// producer's task), split over the consumer's tasks by a hash of `keys`.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    pub from: Producer,
    pub steps: Vec<Step>,
    pub to: Consumer,
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
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
    /// The rows the sink takes.
    pub schema: SchemaRef,
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
    /// The task's generation (0 outside distributed runs), given to the sinks to fence
    /// commits of an older owner.
    pub generation: u64,
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
            generation: 0,
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
    pub nodes: Vec<NodeSpec>,
    pub edges: Vec<EdgeSpec>,
    pub lookups: Vec<LookupSpec>,
    pub parallelism: usize,
    /// Capacity of each channel between tasks, in messages.
    pub channel_capacity: usize,
    pub checkpoint: CheckpointSettings,
}
