//! Physical translation of deduplication: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY t)
//! = 1` over a stream, with `t` its event time, becomes a first-row node. Other uses of
//! window functions are refused.

use std::sync::Arc;

use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion::scalar::ScalarValue;
use sluice_runtime::{FirstRowPlan, NodeOp};

use super::physical::{Context, Stream, TimeAttr};
use crate::error::{Result, SqlError};

/// Why other window functions are refused.
pub(super) const DEDUP_ONLY: &str = "window functions with OVER (…) run on streams only as deduplication: SELECT … FROM (SELECT …, ROW_NUMBER() OVER (PARTITION BY key ORDER BY event_time) AS rn FROM t) WHERE rn = 1 keeps each key's first row; top-N and the last row per key need updating results (the issue on updating results brings them); for windows use TUMBLE, HOP or SESSION in FROM";

impl Context<'_> {
    /// `predicate` over the row numbers of `w` (its column `rn`): a first-row node when it
    /// keeps row 1 only.
    pub(super) fn first_row(
        &mut self,
        predicate: &Arc<dyn PhysicalExpr>,
        rn: usize,
        w: &BoundedWindowAggExec,
    ) -> Result<Stream> {
        let at = self.at;
        let refuse = || SqlError::refused(at, DEDUP_ONLY);
        let [expr] = w.window_expr() else {
            return Err(refuse());
        };
        if !expr.name().starts_with("row_number(") {
            return Err(refuse());
        }
        if !keeps_row_one(predicate, rn) {
            return Err(refuse());
        }
        let [order] = expr.order_by() else {
            return Err(refuse());
        };
        // Under the window sits the sort that orders its partitions: a stream needs none.
        let mut input = w.input().clone();
        while input.name() == "SortExec" || input.name() == "CoalescePartitionsExec" {
            let Some(k) = input.children().first().map(|k| (*k).clone()) else {
                return Err(refuse());
            };
            input = k;
        }
        let s = self.translate(&input)?;
        s.stream_only(at, "deduplicated")?;
        let time_column = order
            .expr
            .downcast_ref::<Column>()
            .map(Column::index)
            .filter(|&c| s.attrs.get(c).copied().flatten() == Some(TimeAttr::Event))
            .filter(|_| !order.options.descending)
            .ok_or_else(|| {
                SqlError::refused(
                    at,
                    "deduplication orders each key's rows by the stream's event time, ascending (ORDER BY event_time), so that a row is known to be first once the watermark passes it; the last row per key (DESC) needs updating results",
                )
            })?;
        let keys = expr.partition_by().to_vec();
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
        Ok(Stream::of_node(n, w.schema(), attrs))
    }
}

/// Whether `predicate` keeps exactly the rows numbered 1 (`rn = 1`, `rn <= 1`, `rn < 2`),
/// the row number being column `column`.
fn keeps_row_one(predicate: &Arc<dyn PhysicalExpr>, column: usize) -> bool {
    let Some(b) = predicate.downcast_ref::<BinaryExpr>() else {
        return false;
    };
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
        return false;
    };
    matches!(
        (op, n),
        (Operator::Eq, Some(1)) | (Operator::LtEq, Some(1)) | (Operator::Lt, Some(2))
    )
}
