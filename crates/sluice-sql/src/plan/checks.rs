//! Logical checks: settings, window columns, and what a query may do to run as a stream.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{GroupByExpr, Query, SetExpr, TableFactor};
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
    (
        "shuffle.partitions",
        "a whole number of at least 1: the partitions of a distributed job's shuffle topic, fixed when the job first runs",
    ),
    (
        "state.ttl",
        "a duration of event time after which a join without a time bound lets a row go, such as '1 hour'",
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
        "parallelism" | "max_windows_per_row" | "shuffle.partitions" => {
            set.value.parse::<usize>().is_ok_and(|n| n >= 1)
        }
        "checkpoint_interval" => crate::parse_interval_text(&set.value).is_ok_and(|ms| ms >= 10),
        "state.ttl" => crate::parse_interval_text(&set.value).is_ok_and(|ms| ms > 0),
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

/// Where the first GROUP BY of the query is (the outermost SELECT's, else one in a
/// subquery of its FROM), or else where the outermost SELECT list starts.
pub(super) fn group_by_position(query: &Query) -> Option<Position> {
    fn group_by(query: &Query) -> Option<Position> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by
            && let Some(first) = exprs.first()
        {
            return span_pos(first);
        }
        for twj in &select.from {
            let factors =
                std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
            for f in factors {
                if let TableFactor::Derived { subquery, .. } = f
                    && let Some(p) = group_by(subquery)
                {
                    return Some(p);
                }
            }
        }
        None
    }
    group_by(query).or_else(|| match query.body.as_ref() {
        SetExpr::Select(select) => select.projection.first().and_then(span_pos),
        _ => None,
    })
}

/// What no streaming operator runs: ORDER BY, LIMIT. (Window functions with OVER are
/// judged in the physical translation, which runs the deduplication shape.)
pub(super) fn check_logical(plan: &LogicalPlan, fallback: Position) -> Result<()> {
    let mut problem: Option<SqlError> = None;
    let _ = plan.apply(|node| {
        match node {
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
    match problem {
        Some(p) => Err(p),
        None => Ok(()),
    }
}
