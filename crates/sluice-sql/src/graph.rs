//! The planned job: which sources feed which pipelines, the stages of each pipeline,
//! and where their rows go. The runtime builds tasks from this.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_plan::PhysicalExpr;
use sluice_types::Position;

use crate::ddl::{SetDef, TableDef};

/// A job, planned.
#[derive(Debug, Clone)]
pub struct JobGraph {
    pub sql: String,
    pub settings: Vec<SetDef>,
    pub sources: Vec<SourceTable>,
    pub sinks: Vec<SinkTable>,
    pub pipelines: Vec<Pipeline>,
}

/// A table read by one or more pipelines (read once, shared).
#[derive(Debug, Clone)]
pub struct SourceTable {
    pub def: TableDef,
    pub schema: SchemaRef,
    /// The event-time column (index in `schema`) and the declared watermark delay.
    pub event_time: Option<EventTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    pub column: usize,
    pub delay_ms: i64,
}

/// A table written by one or more pipelines.
#[derive(Debug, Clone)]
pub struct SinkTable {
    pub def: TableDef,
    pub schema: SchemaRef,
}

/// The window a pipeline's rows are assigned to, from a TUMBLE/HOP/SESSION in FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    Tumble { size_ms: i64 },
    Hop { slide_ms: i64, size_ms: i64 },
    Session { gap_ms: i64 },
}

impl std::fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowSpec::Tumble { size_ms } => write!(f, "TUMBLE(size={size_ms}ms)"),
            WindowSpec::Hop { slide_ms, size_ms } => {
                write!(f, "HOP(slide={slide_ms}ms, size={size_ms}ms)")
            }
            WindowSpec::Session { gap_ms } => write!(f, "SESSION(gap={gap_ms}ms)"),
        }
    }
}

/// How a pipeline reads its source: which columns, and the window assignment.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    /// Indices into the source's columns followed by `window_start`, `window_end`
    /// (when windowed).
    pub projection: Vec<usize>,
    pub window: Option<WindowSpec>,
    /// The event-time column in the source's schema (set when windowed).
    pub time_column: Option<usize>,
    pub schema: SchemaRef,
}

/// A stateless step.
#[derive(Debug, Clone)]
pub enum Stage {
    Filter(Arc<dyn PhysicalExpr>),
    Project {
        exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
        schema: SchemaRef,
    },
}

/// A windowed GROUP BY.
#[derive(Debug, Clone)]
pub struct AggregateSpec {
    pub input_schema: SchemaRef,
    pub group_exprs: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// Which group expression is `window_start` (or `window_end`).
    pub window_key: usize,
    pub window_key_is_end: bool,
    pub aggregates: Vec<Arc<AggregateFunctionExpr>>,
    pub filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Group columns then one column per aggregate.
    pub output_schema: SchemaRef,
}

/// One `INSERT INTO … SELECT …`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub source: usize,
    pub sink: usize,
    pub position: Position,
    pub scan: ScanSpec,
    pub pre: Vec<Stage>,
    pub aggregate: Option<AggregateSpec>,
    pub post: Vec<Stage>,
    pub output_schema: SchemaRef,
}

impl JobGraph {
    /// The value of a `SET key = …` in the job, if any (the last one wins).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|s| s.key == key)
            .map(|s| s.value.as_str())
    }

    /// The streaming plan as text, for `sluice explain`.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.pipelines.iter().enumerate() {
            let src = &self.sources[p.source];
            let sink = &self.sinks[p.sink];
            let _ = writeln!(s, "pipeline {} (INSERT at {}):", i + 1, p.position);
            let _ = writeln!(
                s,
                "  source {} [{}]{}",
                src.def.name,
                src.def.options.connector().unwrap_or("?"),
                match (&src.event_time, &src.def.watermark) {
                    (Some(_), Some(w)) => format!(", watermark {} - {}ms", w.column, w.delay_ms),
                    _ => String::new(),
                }
            );
            let cols: Vec<&str> = p
                .scan
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            match &p.scan.window {
                Some(w) => {
                    let _ = writeln!(s, "  window {w} -> [{}]", cols.join(", "));
                }
                None => {
                    let _ = writeln!(s, "  scan -> [{}]", cols.join(", "));
                }
            }
            for st in &p.pre {
                let _ = writeln!(s, "  {}", describe(st));
            }
            if let Some(a) = &p.aggregate {
                let keys: Vec<String> = a
                    .group_exprs
                    .iter()
                    .map(|(e, n)| format!("{n}={e}"))
                    .collect();
                let aggs: Vec<&str> = a.aggregates.iter().map(|x| x.name()).collect();
                let _ = writeln!(
                    s,
                    "  window aggregate (emit on window close) keys [{}] aggregates [{}]",
                    keys.join(", "),
                    aggs.join(", ")
                );
            }
            for st in &p.post {
                let _ = writeln!(s, "  {}", describe(st));
            }
            let out: Vec<String> = p
                .output_schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect();
            let _ = writeln!(
                s,
                "  sink {} [{}] ({})",
                sink.def.name,
                sink.def.options.connector().unwrap_or("?"),
                out.join(", ")
            );
        }
        s
    }
}

fn describe(stage: &Stage) -> String {
    match stage {
        Stage::Filter(e) => format!("filter {e}"),
        Stage::Project { exprs, .. } => {
            let parts: Vec<String> = exprs.iter().map(|(e, n)| format!("{n}={e}")).collect();
            format!("project [{}]", parts.join(", "))
        }
    }
}
