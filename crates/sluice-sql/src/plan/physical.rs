//! Physical translation: DataFusion's physical plan taken apart into a scan, stateless
//! stages and an optional windowed aggregate.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use sluice_types::Position;

use crate::error::{Result, SqlError};
use crate::graph::{AggregateSpec, Stage};
use crate::scan::StreamScanExec;

pub(super) struct ScanLeaf {
    pub(super) projection: Vec<usize>,
    pub(super) schema: SchemaRef,
}

pub(super) struct Shape {
    pub(super) scan: ScanLeaf,
    pub(super) pre: Vec<Stage>,
    pub(super) aggregate: Option<AggregateSpec>,
    pub(super) post: Vec<Stage>,
    pub(super) output_schema: SchemaRef,
}

/// Cuts the physical plan into scan → stateless stages → [aggregate → stateless stages].
pub(super) fn decompose(plan: &Arc<dyn ExecutionPlan>, at: Position) -> Result<Shape> {
    let output_schema = plan.schema();
    let mut above: Vec<Stage> = Vec::new(); // collected top-down
    let mut below: Vec<Stage> = Vec::new();
    let mut aggregate: Option<AggregateSpec> = None;
    let mut node = plan.clone();
    loop {
        if let Some(scan) = node.downcast_ref::<StreamScanExec>() {
            let stages_top_down = if aggregate.is_some() {
                &mut below
            } else {
                &mut above
            };
            stages_top_down.reverse();
            let (pre, post) = if aggregate.is_some() {
                above.reverse();
                (below, above)
            } else {
                (std::mem::take(&mut above), Vec::new())
            };
            return Ok(Shape {
                scan: ScanLeaf {
                    projection: scan.projection.clone(),
                    schema: scan.schema.clone(),
                },
                pre,
                aggregate,
                post,
                output_schema,
            });
        }
        let stages = if aggregate.is_some() {
            &mut below
        } else {
            &mut above
        };
        let next = if let Some(p) = node.downcast_ref::<ProjectionExec>() {
            stages.push(Stage::Project {
                exprs: p
                    .expr()
                    .iter()
                    .map(|e| (e.expr.clone(), e.alias.clone()))
                    .collect(),
                schema: p.schema(),
            });
            p.input().clone()
        } else if let Some(f) = node.downcast_ref::<FilterExec>() {
            if let Some(proj) = f.projection() {
                let schema = f.schema();
                let in_schema = f.input().schema();
                let exprs = proj
                    .iter()
                    .map(|&i| {
                        let name = in_schema.field(i).name().clone();
                        (
                            Arc::new(Column::new(&name, i))
                                as Arc<dyn datafusion::physical_plan::PhysicalExpr>,
                            name,
                        )
                    })
                    .collect();
                stages.push(Stage::Project { exprs, schema });
            }
            stages.push(Stage::Filter(f.predicate().clone()));
            f.input().clone()
        } else if let Some(a) = node.downcast_ref::<AggregateExec>() {
            if aggregate.is_some() {
                return Err(SqlError::refused(
                    at,
                    "only one level of GROUP BY per statement is supported on streams",
                ));
            }
            let inner = match a.mode() {
                AggregateMode::Final | AggregateMode::FinalPartitioned => {
                    let mut child = a.input().clone();
                    while child.downcast_ref::<AggregateExec>().is_none() {
                        let kids = child.children();
                        let Some(k) = kids.first() else {
                            return Err(SqlError::Internal(
                                "final aggregate without partial".into(),
                            ));
                        };
                        child = (*k).clone();
                    }
                    child
                }
                _ => node.clone(),
            };
            let Some(agg) = inner.downcast_ref::<AggregateExec>() else {
                return Err(SqlError::Internal("aggregate vanished".into()));
            };
            aggregate = Some(aggregate_spec(agg, a.schema(), at)?);
            agg.input().clone()
        } else {
            let name = node.name().to_string();
            let kids = node.children();
            match (name.as_str(), kids.first()) {
                (
                    "CoalesceBatchesExec"
                    | "CoalescePartitionsExec"
                    | "RepartitionExec"
                    | "CooperativeExec",
                    Some(k),
                ) => (*k).clone(),
                _ => {
                    return Err(SqlError::refused(
                        at,
                        format!("this query needs {name}, which cannot run on an unbounded stream"),
                    ));
                }
            }
        };
        node = next;
    }
}

pub(super) fn aggregate_spec(
    agg: &AggregateExec,
    output_schema: SchemaRef,
    at: Position,
) -> Result<AggregateSpec> {
    let group = agg.group_expr();
    if group.has_grouping_set() {
        return Err(SqlError::refused(
            at,
            "GROUPING SETS, CUBE and ROLLUP are not supported on streams",
        ));
    }
    let group_exprs: Vec<_> = group.expr().to_vec();
    let find = |n: &str| {
        group_exprs
            .iter()
            .position(|(e, name)| name == n && e.downcast_ref::<Column>().is_some())
    };
    let (window_key, window_key_is_end) = match (find("window_start"), find("window_end")) {
        (Some(i), _) => (i, false),
        (None, Some(i)) => (i, true),
        (None, None) => {
            return Err(SqlError::refused(
                at,
                "a windowed aggregate must GROUP BY window_start (or window_end)",
            ));
        }
    };
    // An aggregate that cannot be built for its input type fails here, not when the
    // first window opens.
    for a in agg.aggr_expr() {
        let built = if a.groups_accumulator_supported() {
            a.create_groups_accumulator().map(|_| ())
        } else {
            a.create_accumulator().map(|_| ())
        };
        if let Err(e) = built {
            let text = e.strip_backtrace();
            let text = text
                .rsplit("This feature is not implemented: ")
                .next()
                .unwrap_or(&text)
                .to_string();
            return Err(SqlError::refused(
                at,
                format!("{} cannot run: {text}", a.name()),
            ));
        }
    }
    if output_schema.fields().len() != group_exprs.len() + agg.aggr_expr().len() {
        return Err(SqlError::Internal(
            "unexpected aggregate output shape".into(),
        ));
    }
    Ok(AggregateSpec {
        input_schema: agg.input_schema(),
        group_exprs,
        window_key,
        window_key_is_end,
        aggregates: agg.aggr_expr().to_vec(),
        filters: agg.filter_expr().to_vec(),
        output_schema,
    })
}
