//! The job's graph as people look at it: sources, stateful nodes and sinks, each with
//! the names of the tasks that run it (whose counters are in `MetricsDetail::tasks`),
//! and the edges between them with the stateless steps they carry.

use serde::Serialize;

use crate::plan::{Consumer, JobSpec, NodeOp, Producer, Step};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub nodes: Vec<TopologyNode>,
    pub edges: Vec<TopologyEdge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyNode {
    /// "source", "operator" or "sink".
    pub kind: &'static str,
    /// The table's name, or the operator's (`aggregate 0`…).
    pub name: String,
    /// What it is: the connector and what it reads or writes, or the operator's kind.
    pub detail: String,
    /// Whether its output is a changelog.
    pub updating: bool,
    /// The tasks that run it, as named in the per-task counters.
    pub tasks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopologyEdge {
    /// Indices into `nodes`.
    pub from: usize,
    pub to: usize,
    /// The stateless steps run on the way (filter, project, assign windows).
    pub steps: Vec<String>,
    /// Whether rows are split over the consumer's tasks by a key.
    pub keyed: bool,
}

fn operator_kind(op: &NodeOp) -> String {
    match op {
        NodeOp::Aggregate(a) => match a.window {
            Some(w) => format!("{w}"),
            None => "GROUP BY without a window".into(),
        },
        NodeOp::Join(j) => format!("{:?} join", j.kind).to_lowercase(),
        NodeOp::Sessions(p) => format!("session windows (gap {} ms)", p.gap_ms),
        NodeOp::FirstRow(_) => "deduplicate (first row per key)".into(),
        NodeOp::TopN(p) => format!("top {} per key", p.limit),
    }
}

fn step_label(s: &Step) -> String {
    match s {
        Step::Filter(e) => format!("filter {e}"),
        Step::Project { schema, .. } => format!("project {} columns", schema.fields().len()),
        Step::Assign(a) => match a.window {
            Some(w) => format!("assign {w}"),
            None => "select columns".into(),
        },
    }
}

/// The graph of `spec`, with each node's tasks named as the runtime names them.
pub fn topology(spec: &JobSpec) -> Topology {
    let parallelism = spec.parallelism.max(1);
    let mut nodes = Vec::new();
    for s in &spec.sources {
        nodes.push(TopologyNode {
            kind: "source",
            name: s.name.clone(),
            detail: sluice_types::redact_secrets(&s.definition),
            updating: false,
            tasks: vec![format!("source {}", s.name)],
        });
    }
    for n in &spec.nodes {
        let parts = if n.keyed { parallelism } else { 1 };
        nodes.push(TopologyNode {
            kind: "operator",
            name: n.name.clone(),
            detail: operator_kind(&n.op),
            updating: n.op.updating(),
            tasks: (0..parts).map(|p| format!("{} {p}", n.name)).collect(),
        });
    }
    for s in &spec.sinks {
        nodes.push(TopologyNode {
            kind: "sink",
            name: s.name.clone(),
            detail: sluice_types::redact_secrets(&s.definition),
            updating: sluice_types::changelog::is_changelog(&s.schema),
            tasks: vec![format!("sink {}", s.name)],
        });
    }
    let (first_node, first_sink) = (spec.sources.len(), spec.sources.len() + spec.nodes.len());
    let edges = spec
        .edges
        .iter()
        .map(|e| TopologyEdge {
            from: match e.from {
                Producer::Source(s) => s,
                Producer::Node(n) => first_node + n,
            },
            to: match e.to {
                Consumer::Node { node, .. } => first_node + node,
                Consumer::Sink(s) => first_sink + s,
            },
            steps: e.steps.iter().map(step_label).collect(),
            keyed: !e.keys.is_empty()
                && matches!(e.to, Consumer::Node { node, .. } if spec.nodes[node].keyed),
        })
        .collect();
    Topology { nodes, edges }
}
