//! Whether a job can run as independent tasks, one per source partition: every stateful
//! stage is keyed by a key that holds the column its sources are partitioned by
//! (`'key.fields'`), so all rows of a key stay in one partition's task and no shuffle is
//! needed. A distributed worker runs only such jobs.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;

use crate::plan::{Consumer, EdgeSpec, NodeSpec, Producer, Step};

/// Why a job cannot be split by source partition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotPartitionLocal(pub String);

/// Checks that the job splits by source partition. `source_keys[i]` is the column
/// source `i` is keyed by (its `'key.fields'`), if it declares one.
pub fn check_partition_local(
    nodes: &[NodeSpec],
    edges: &[EdgeSpec],
    source_keys: &[Option<String>],
) -> Result<(), NotPartitionLocal> {
    let mut memo = HashMap::new();
    for n in 0..nodes.len() {
        node_key(n, nodes, edges, source_keys, &mut memo, 0)?;
    }
    Ok(())
}

/// The column, in node `n`'s output, that its rows are partitioned by (`None`: the
/// output does not carry it, so no keyed stage may follow).
fn node_key(
    n: usize,
    nodes: &[NodeSpec],
    edges: &[EdgeSpec],
    source_keys: &[Option<String>],
    memo: &mut HashMap<usize, Option<String>>,
    depth: usize,
) -> Result<Option<String>, NotPartitionLocal> {
    if let Some(k) = memo.get(&n) {
        return Ok(k.clone());
    }
    let node = &nodes[n];
    if depth > nodes.len() {
        return Err(NotPartitionLocal(format!("{} is in a cycle", node.name)));
    }
    if !node.keyed {
        return Err(NotPartitionLocal(format!(
            "{} is not keyed: it needs every row of the job in one task",
            node.name
        )));
    }
    let inputs: Vec<&EdgeSpec> = edges
        .iter()
        .filter(|e| matches!(e.to, Consumer::Node { node, .. } if node == n))
        .collect();
    // Key positions that follow the partitioning on every input.
    let mut common: Option<Vec<usize>> = None;
    for e in &inputs {
        let partitioned_by = match e.from {
            Producer::Source(s) => source_keys.get(s).cloned().flatten(),
            Producer::Node(m) => node_key(m, nodes, edges, source_keys, memo, depth + 1)?,
        };
        let positions: Vec<usize> = e
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| {
                partitioned_by
                    .as_deref()
                    .is_some_and(|p| traced_name(k, &e.steps).as_deref() == Some(p))
            })
            .map(|(j, _)| j)
            .collect();
        common = Some(match common {
            None => positions,
            Some(c) => c.into_iter().filter(|j| positions.contains(j)).collect(),
        });
    }
    let Some(&j) = common.as_ref().and_then(|c| c.first()) else {
        return Err(NotPartitionLocal(format!(
            "{} is keyed by columns that do not include the column its input topic is keyed by (declare 'key.fields' on the source, and group or join by that column)",
            node.name
        )));
    };
    let out = node.op.output_schema();
    let key = inputs
        .first()
        .and_then(|e| column_name(&e.keys[j]))
        .filter(|name| out.index_of(name).is_ok());
    memo.insert(n, key.clone());
    Ok(key)
}

fn column_name(e: &Arc<dyn PhysicalExpr>) -> Option<String> {
    e.downcast_ref::<Column>().map(|c| c.name().to_string())
}

/// The producer's column a key expression reads, through the edge's steps, when it is a
/// column passed along unchanged.
fn traced_name(key: &Arc<dyn PhysicalExpr>, steps: &[Step]) -> Option<String> {
    let mut name = column_name(key)?;
    for step in steps.iter().rev() {
        match step {
            Step::Filter(_) => {}
            Step::Project { exprs, schema } => {
                let i = schema.index_of(&name).ok()?;
                name = column_name(exprs.get(i)?)?;
            }
            Step::Assign(a) => {
                let i = a.schema.index_of(&name).ok()?;
                if i >= a.projection.len() {
                    return None;
                }
            }
        }
    }
    Some(name)
}
