//! Physical translation of `ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) <= N` over a
//! stream: the first row per key by event time (`= 1`, ascending) is deduplication,
//! append-only and exact; with a window bound among the keys it is a top N per window,
//! put out when the window closes; otherwise an updating top N (the last row per key is
//! `ORDER BY t DESC` and `= 1`), over an append-only input or an updating one (a top N of
//! running aggregates: a leaderboard). Other uses of window functions are refused.

use std::sync::Arc;

use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion::scalar::ScalarValue;
use sluice_runtime::{FirstRowPlan, NodeOp, TopNPlan, WindowKind};

use super::physical::{Context, Stream, TimeAttr};
use crate::error::{Result, SqlError};

/// Why other window functions are refused.
pub(super) const ROW_NUMBER_ONLY: &str = "window functions with OVER (…) run on streams only as ROW_NUMBER() filtered to the first rows per key: SELECT … FROM (SELECT …, ROW_NUMBER() OVER (PARTITION BY key ORDER BY …) AS rn FROM t) WHERE rn <= N (rn = 1 ordered by event time keeps each key's first row; ORDER BY event_time DESC keeps its last); for windows use TUMBLE, HOP or SESSION in FROM";

/// The most rows per key a top N may keep.
const MAX_N: u64 = 10_000;

impl Context<'_> {
    /// `predicate` over the row numbers of `w` (its column `rn`), keeping rows 1 to N.
    pub(super) fn row_number(
        &mut self,
        predicate: &Arc<dyn PhysicalExpr>,
        rn: usize,
        w: &BoundedWindowAggExec,
    ) -> Result<Stream> {
        let at = self.at;
        let refuse = || SqlError::refused(at, ROW_NUMBER_ONLY);
        let [expr] = w.window_expr() else {
            return Err(refuse());
        };
        if !expr.name().starts_with("row_number(") {
            return Err(refuse());
        }
        let limit = kept_rows(predicate, rn).ok_or_else(refuse)?;
        if limit > MAX_N {
            return Err(SqlError::refused(
                at,
                format!("a top N keeps at most {MAX_N} rows per key, not {limit}"),
            ));
        }
        let order = expr.order_by().to_vec();
        if order.is_empty() {
            return Err(SqlError::refused(
                at,
                "ROW_NUMBER() needs an ORDER BY: which rows of a key come first",
            ));
        }
        // Under the window sits the sort that orders its partitions: a stream needs none.
        let input = without_sorts(w.input()).map_err(|e| SqlError::Internal(e.to_string()))?;
        let s = self.translate(&input)?;
        s.stream_only(at, "ranked")?;
        // Over an updating result (a leaderboard of running totals) only the updating top
        // N applies: its input's rows carry no event time to hold a first row or a window by.
        let input_updating = s.updating;
        let keys = expr.partition_by().to_vec();
        let attr = |e: &Arc<dyn PhysicalExpr>| {
            e.downcast_ref::<Column>().and_then(|c| {
                s.attrs
                    .get(c.index())
                    .copied()
                    .flatten()
                    .map(|a| (c.index(), a))
            })
        };
        // The first row per key by event time: held until the watermark passes it.
        if let [o] = order.as_slice()
            && !input_updating
            && limit == 1
            && !o.options.descending
            && attr(&o.expr).is_some_and(|(_, a)| a == TimeAttr::Event)
            && !keys
                .iter()
                .any(|k| attr(k).is_some_and(|(_, a)| a.window().is_some()))
        {
            let time_column = attr(&o.expr).map(|(c, _)| c).ok_or_else(refuse)?;
            let plan = FirstRowPlan {
                schema: s.schema.clone(),
                keys: keys.clone(),
                time_column,
                ttl_ms: self.ttl_ms,
                output_schema: w.schema(),
            };
            let mut attrs = s.attrs.clone();
            attrs.push(None);
            let n = self.node("first row", NodeOp::FirstRow(plan), vec![(s, keys)]);
            return Ok(Stream::of_node(n, w.schema(), attrs));
        }
        // A window bound among the keys: each window's top N goes out when it closes.
        let mut window = None;
        for k in keys.iter().filter(|_| !input_updating) {
            match attr(k) {
                Some((c, TimeAttr::WindowEnd(_))) => window = Some((c, 0)),
                Some((c, TimeAttr::WindowStart(WindowKind::Tumble { size_ms })))
                | Some((c, TimeAttr::WindowStart(WindowKind::Hop { size_ms, .. })))
                    if window.is_none() =>
                {
                    window = Some((c, size_ms))
                }
                _ => {}
            }
        }
        let plan = TopNPlan {
            schema: s.schema.clone(),
            keys: keys.clone(),
            order,
            limit: limit as usize,
            window,
            ttl_ms: if window.is_none() { self.ttl_ms } else { None },
            input_updating,
            output_schema: w.schema(),
        };
        let width = s.schema.fields().len();
        if window.is_some() {
            let mut attrs = s.attrs.clone();
            attrs.push(None);
            let n = self.node("top n per window", NodeOp::TopN(plan), vec![(s, keys)]);
            return Ok(Stream::of_node(n, w.schema(), attrs));
        }
        // A row of the result is its key's row at one rank (the key alone when N = 1).
        let mut unique: Option<Vec<usize>> = keys
            .iter()
            .map(|k| k.downcast_ref::<Column>().map(Column::index))
            .collect();
        if limit > 1
            && let Some(u) = &mut unique
        {
            u.push(width);
        }
        let name = if input_updating {
            "top n over updates"
        } else {
            "top n"
        };
        let n = self.node(name, NodeOp::TopN(plan), vec![(s, keys)]);
        let mut out = Stream::updating_of_node(n, w.schema(), Vec::new());
        out.unique_key = unique;
        Ok(out)
    }
}

/// `plan` without the sorts (and repartitions) DataFusion put under a window function,
/// through the projections between them.
fn without_sorts(
    plan: &Arc<dyn ExecutionPlan>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    match plan.name() {
        "SortExec" | "CoalescePartitionsExec" | "RepartitionExec" | "CoalesceBatchesExec" => {
            match plan.children().first() {
                Some(k) => without_sorts(k),
                None => Ok(plan.clone()),
            }
        }
        "ProjectionExec" => match plan.children().first() {
            Some(k) => {
                let k = without_sorts(k)?;
                datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                    plan.clone(),
                    vec![k],
                )
            }
            None => Ok(plan.clone()),
        },
        _ => Ok(plan.clone()),
    }
}

/// The N of a predicate that keeps the rows numbered 1 to N (`rn = 1`, `rn <= N`,
/// `rn < N + 1`), the row number being column `column`.
fn kept_rows(predicate: &Arc<dyn PhysicalExpr>, column: usize) -> Option<u64> {
    let b = predicate.downcast_ref::<BinaryExpr>()?;
    let is_rn = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| c.index() == column)
    };
    let number = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>().and_then(|l| match l.value() {
            ScalarValue::UInt64(Some(v)) => Some(*v as i128),
            ScalarValue::Int64(Some(v)) => Some(*v as i128),
            _ => None,
        })
    };
    let (op, n) = if is_rn(b.left()) {
        (*b.op(), number(b.right()))
    } else if is_rn(b.right()) {
        let flipped = match b.op() {
            Operator::Lt => Operator::Gt,
            Operator::LtEq => Operator::GtEq,
            Operator::Gt => Operator::Lt,
            Operator::GtEq => Operator::LtEq,
            other => *other,
        };
        (flipped, number(b.left()))
    } else {
        return None;
    };
    match (op, n?) {
        (Operator::Eq, 1) => Some(1),
        (Operator::LtEq, n) if n >= 1 => u64::try_from(n).ok(),
        (Operator::Lt, n) if n >= 2 => u64::try_from(n - 1).ok(),
        _ => None,
    }
}
