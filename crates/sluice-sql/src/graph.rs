//! The planned job: sources, sinks, and between them a graph of stateful nodes
//! (window aggregates, joins) joined by edges that carry stateless steps. The node and
//! edge types are the runtime's own (`sluice_runtime::plan`); the engine only attaches
//! connectors to the sources and sinks.

use std::fmt::Write;

use datafusion::arrow::datatypes::SchemaRef;
use sluice_runtime::{Consumer, EdgeSpec, JoinTime, NodeOp, NodeSpec, Producer, Step};
use sluice_types::Position;

use crate::ddl::{SetDef, TableDef};

/// A job, planned.
#[derive(Debug, Clone)]
pub struct JobGraph {
    pub sql: String,
    pub settings: Vec<SetDef>,
    pub sources: Vec<SourceTable>,
    pub sinks: Vec<SinkTable>,
    pub nodes: Vec<NodeSpec>,
    pub edges: Vec<EdgeSpec>,
    /// Tables looked up by key (lookup joins' other sides).
    pub lookups: Vec<SourceTable>,
    /// One per INSERT, in the file's order.
    pub inserts: Vec<InsertInfo>,
    /// What the user should know about the plan (a join whose state grows for ever…).
    pub notes: Vec<String>,
}

/// One `INSERT INTO … SELECT …`.
#[derive(Debug, Clone)]
pub struct InsertInfo {
    pub position: Position,
    pub sink: usize,
    pub output_schema: SchemaRef,
}

/// A table read by one or more statements (read once, shared).
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

/// A table written by one or more statements.
#[derive(Debug, Clone)]
pub struct SinkTable {
    pub def: TableDef,
    /// The columns written.
    pub schema: SchemaRef,
    /// Whether it takes an updating result: its rows then carry `__op` after `schema`.
    pub changelog: bool,
}

impl SinkTable {
    /// The schema of the rows the sink receives (`__op` last for a changelog).
    pub fn rows_schema(&self) -> SchemaRef {
        if self.changelog {
            sluice_types::changelog::with_op(&self.schema)
        } else {
            self.schema.clone()
        }
    }
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

    fn producer(&self, p: Producer) -> String {
        match p {
            Producer::Source(s) => {
                let src = &self.sources[s];
                format!(
                    "source {} [{}]{}",
                    src.def.name,
                    src.def.options.connector().unwrap_or("?"),
                    match (&src.event_time, &src.def.watermark) {
                        (Some(_), Some(w)) =>
                            format!(", watermark {} - {}ms", w.column, w.delay_ms),
                        _ => String::new(),
                    }
                )
            }
            Producer::Node(n) => format!("node {}", n + 1),
        }
    }

    /// The streaming plan as text, for `sluice explain`: each node with its inputs, then
    /// each sink with its inputs; every edge lists its stateless steps.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        let edges_into = |to: &dyn Fn(Consumer) -> bool| -> Vec<&EdgeSpec> {
            self.edges.iter().filter(|e| to(e.to)).collect()
        };
        let write_edge = |s: &mut String, e: &EdgeSpec, port: Option<&str>| {
            let _ = writeln!(
                s,
                "  {}from {}",
                port.map(|p| format!("{p} ")).unwrap_or_default(),
                self.producer(e.from)
            );
            for st in &e.steps {
                let _ = writeln!(s, "    {}", describe(st));
            }
            if !e.keys.is_empty() {
                let keys: Vec<String> = e.keys.iter().map(|k| k.to_string()).collect();
                let _ = writeln!(s, "    by key [{}]", keys.join(", "));
            }
        };
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                s,
                "node {}: {} -> {}",
                i + 1,
                describe_node(n),
                if n.op.updating() {
                    "updating"
                } else {
                    "append-only"
                }
            );
            for e in edges_into(&|c| matches!(c, Consumer::Node { node, .. } if node == i)) {
                let port = match (&n.op, e.to) {
                    (NodeOp::Join(_), Consumer::Node { port: 0, .. }) => Some("left"),
                    (NodeOp::Join(_), _) => Some("right"),
                    _ => None,
                };
                write_edge(&mut s, e, port);
            }
        }
        for (i, ins) in self.inserts.iter().enumerate() {
            let sink = &self.sinks[ins.sink];
            let out: Vec<String> = ins
                .output_schema
                .fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect();
            let _ = writeln!(
                s,
                "insert {} (at {}): sink {} [{}] ({}) {}",
                i + 1,
                ins.position,
                sink.def.name,
                sink.def.options.connector().unwrap_or("?"),
                out.join(", "),
                if sink.changelog {
                    "updating: inserts, updates and deletes"
                } else {
                    "append-only"
                }
            );
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            let _ = writeln!(s, "sink {}:", sink.def.name);
            for e in edges_into(&|c| c == Consumer::Sink(i)) {
                write_edge(&mut s, e, None);
            }
        }
        for note in &self.notes {
            let _ = writeln!(s, "note: {note}");
        }
        s
    }
}

fn describe_node(n: &NodeSpec) -> String {
    match &n.op {
        NodeOp::FirstRow(p) => {
            let keys: Vec<String> = p.keys.iter().map(|e| e.to_string()).collect();
            format!(
                "first row per key by {} (append-only: each key's earliest row goes out when the watermark passes it) keys [{}]",
                p.schema.field(p.time_column).name(),
                keys.join(", ")
            )
        }
        NodeOp::TopN(p) => {
            let keys: Vec<String> = p.keys.iter().map(|e| e.to_string()).collect();
            let order: Vec<String> = p.order.iter().map(|o| o.to_string()).collect();
            let how = match (p.window, p.ttl_ms) {
                (Some(_), _) => "per window: each window's rows go out when it closes".to_string(),
                (None, None) => {
                    "updating: changed ranks go out at each checkpoint; state unbounded: every key is kept".to_string()
                }
                (None, Some(t)) => format!(
                    "updating: changed ranks go out at each checkpoint; keys unchanged for {t}ms of event time deleted"
                ),
            };
            let over = if p.input_updating {
                " over a changelog (every live input row is kept)"
            } else {
                ""
            };
            format!(
                "top {} per key by [{}]{over} ({how}) keys [{}]",
                p.limit,
                order.join(", "),
                keys.join(", ")
            )
        }
        NodeOp::Sessions(p) => {
            let keys: Vec<String> = p.keys.iter().map(|e| e.to_string()).collect();
            format!(
                "session assignment (gap {}ms; rows go out when their session closes) keys [{}]",
                p.gap_ms,
                keys.join(", ")
            )
        }
        NodeOp::Aggregate(a) => {
            let keys: Vec<String> = a.group_exprs.iter().map(|e| e.to_string()).collect();
            let aggs: Vec<&str> = a.aggregates.iter().map(|x| x.name()).collect();
            match a.window {
                Some(w) => format!(
                    "window aggregate {w} (emit on window close) keys [{}] aggregates [{}]",
                    keys.join(", "),
                    aggs.join(", ")
                ),
                None => format!(
                    "aggregate without a window (each changed group emitted once per checkpoint{}{}) keys [{}] aggregates [{}]",
                    if a.input_updating {
                        "; input updating: groups recomputed from their live rows"
                    } else {
                        ""
                    },
                    match a.ttl_ms {
                        Some(t) => format!("; groups unchanged for {t}ms of event time deleted"),
                        None => "; state unbounded: every group is kept".to_string(),
                    },
                    keys.join(", "),
                    aggs.join(", ")
                ),
            }
        }
        NodeOp::Join(j) => {
            let time = match j.time {
                JoinTime::Window => "window join (emit on window close)".to_string(),
                JoinTime::Interval { lower_ms, upper_ms } => format!(
                    "interval join (right time within left time + [{lower_ms}ms, {upper_ms}ms])"
                ),
                JoinTime::Regular { ttl_ms: None } => {
                    "regular join (state unbounded: every row is kept)".to_string()
                }
                JoinTime::Regular { ttl_ms: Some(t) } => {
                    format!("regular join (rows kept for {t}ms of event time)")
                }
                JoinTime::Lookup { lookup, ttl_ms, .. } => format!(
                    "lookup join with table {} (rows fetched by key, cached for {ttl_ms}ms)",
                    lookup + 1
                ),
            };
            let on: Vec<String> = j
                .left_keys
                .iter()
                .zip(&j.right_keys)
                .map(|(l, r)| format!("{l} = {r}"))
                .collect();
            let mut d = format!("{:?} {time} on [{}]", j.kind, on.join(", "));
            if let Some(f) = &j.filter {
                let _ = write!(d, " where {}", f.expression());
            }
            d
        }
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::Filter(e) => format!("filter {e}"),
        Step::Project { exprs, schema } => {
            let parts: Vec<String> = exprs
                .iter()
                .zip(schema.fields())
                .map(|(e, f)| format!("{}={e}", f.name()))
                .collect();
            format!("project [{}]", parts.join(", "))
        }
        Step::Assign(a) => {
            let cols: Vec<&str> = a
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            match &a.window {
                Some(w) => format!("window {w} -> [{}]", cols.join(", ")),
                None => format!("scan -> [{}]", cols.join(", ")),
            }
        }
    }
}
