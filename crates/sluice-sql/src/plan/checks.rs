//! Logical checks: settings, window columns, and what a query may do to run as a stream.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{GroupByExpr, Query, SetExpr};
use sluice_types::Position;

use crate::ddl::{SetDef, TableDef};
use crate::error::{Result, SqlError};
use crate::window::{WindowCall, span_pos};

/// The job settings a `SET` may give, and what each accepts.
pub const SETTINGS: &[(&str, &str)] = &[
    ("parallelism", "a whole number of at least 1"),
    ("max_windows_per_row", "a whole number of at least 1"),
    (
        "checkpoint_interval",
        "a duration of at least 10 ms, such as '2s' or '1 minute'",
    ),
];

pub(super) fn check_setting(set: SetDef) -> Result<SetDef> {
    let Some((_, what)) = SETTINGS.iter().find(|(k, _)| *k == set.key) else {
        let known: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
        return Err(SqlError::refused(
            set.position,
            format!(
                "unknown setting '{}' (known: {})",
                set.key,
                known.join(", ")
            ),
        ));
    };
    let ok = match set.key.as_str() {
        "parallelism" | "max_windows_per_row" => set.value.parse::<usize>().is_ok_and(|n| n >= 1),
        "checkpoint_interval" => crate::parse_interval_text(&set.value).is_ok_and(|ms| ms >= 10),
        _ => true,
    };
    if !ok {
        return Err(SqlError::refused(
            set.position,
            format!("{} must be {what}, not '{}'", set.key, set.value),
        ));
    }
    Ok(set)
}

pub(super) fn check_window_column(w: &WindowCall, source: &TableDef) -> Result<()> {
    if !source.columns.iter().any(|c| c.name == w.time_column) {
        return Err(SqlError::refused(
            w.time_position,
            format!("table {} has no column {}", source.name, w.time_column),
        ));
    }
    match &source.watermark {
        Some(wm) if wm.column == w.time_column => Ok(()),
        Some(wm) => Err(SqlError::refused(
            w.time_position,
            format!(
                "a window must be over the event-time column that has the watermark ({}), not {}",
                wm.column, w.time_column
            ),
        )),
        None => Err(SqlError::refused(
            w.time_position,
            format!(
                "column {} has no watermark, so windows over it would never close; add WATERMARK FOR {} AS {} - INTERVAL '…' to table {}",
                w.time_column, w.time_column, w.time_column, source.name
            ),
        )),
    }
}

/// ORDER BY and LIMIT anywhere in the query cannot run on an unbounded stream.
pub(super) fn check_streamable_query(query: &Query) -> Result<()> {
    if let Some(order_by) = &query.order_by {
        return Err(SqlError::refused(
            span_pos(order_by),
            "ORDER BY cannot run on an unbounded stream: it never ends, so it is never fully sorted (sort in the sink's database, or per window)",
        ));
    }
    if let Some(limit) = &query.limit_clause {
        return Err(SqlError::refused(
            span_pos(limit),
            "LIMIT cannot run on an unbounded stream: a stream has no first N rows to stop at",
        ));
    }
    if let Some(fetch) = &query.fetch {
        return Err(SqlError::refused(
            span_pos(fetch),
            "FETCH cannot run on an unbounded stream: a stream has no first N rows to stop at",
        ));
    }
    if let SetExpr::Query(q) = query.body.as_ref() {
        check_streamable_query(q)?;
    }
    Ok(())
}

/// Where the GROUP BY (or else the SELECT list) of the outermost SELECT starts.
pub(super) fn group_by_position(query: &Query) -> Option<Position> {
    if let SetExpr::Select(select) = query.body.as_ref() {
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by
            && let Some(first) = exprs.first()
        {
            return span_pos(first);
        }
        return select.projection.first().and_then(span_pos);
    }
    None
}

pub(super) fn check_logical(
    plan: &LogicalPlan,
    query: &Query,
    window: Option<&WindowCall>,
    fallback: Position,
) -> Result<()> {
    let mut aggregates = Vec::new();
    let mut problem: Option<SqlError> = None;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Aggregate(agg) => aggregates.push(agg.clone()),
            LogicalPlan::Window(_) => {
                problem = Some(SqlError::refused(
                    fallback,
                    "window functions with OVER (…) are not supported on streams yet; use TUMBLE, HOP or SESSION in FROM",
                ))
            }
            LogicalPlan::Join(_) => {
                problem = Some(SqlError::refused(
                    fallback,
                    "joins are not supported on streams yet",
                ))
            }
            LogicalPlan::Sort(_) => {
                problem = Some(SqlError::refused(
                    fallback,
                    "ORDER BY cannot run on an unbounded stream",
                ))
            }
            LogicalPlan::Limit(_) => {
                problem = Some(SqlError::refused(
                    fallback,
                    "LIMIT cannot run on an unbounded stream",
                ))
            }
            _ => {}
        }
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if let Some(p) = problem {
        return Err(p);
    }
    let at = group_by_position(query).unwrap_or(fallback);
    if aggregates.len() > 1 {
        return Err(SqlError::refused(
            at,
            "only one level of GROUP BY per statement is supported on streams",
        ));
    }
    if let Some(agg) = aggregates.first() {
        let Some(_) = window else {
            return Err(SqlError::refused(
                at,
                "GROUP BY without a window cannot run on an unbounded stream: its groups would never be complete; aggregate over TUMBLE(…), HOP(…) or SESSION(…) and GROUP BY window_start, window_end",
            ));
        };
        let has_window_key = agg.group_expr.iter().any(|e| {
            matches!(e, datafusion::logical_expr::Expr::Column(c) if c.name == "window_start" || c.name == "window_end")
        });
        if !has_window_key {
            return Err(SqlError::refused(
                at,
                "a windowed aggregate must GROUP BY window_start (or window_end), so that each window's groups close when it does",
            ));
        }
    }
    Ok(())
}
