//! Physical translation of joins: a window join (both sides windowed alike, with
//! SESSION sides first given their sessions' bounds), an interval join, a regular join,
//! and a stream joined to a lookup table. What cannot run as a stream is refused here.

use std::sync::Arc;

use datafusion::common::{JoinType, NullEquality};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use sluice_runtime::{JoinKind, JoinPlan, JoinTime, NodeOp, SessionPlan, WindowKind};

use super::interval::interval_bounds;
use super::physical::{Context, Stream, TimeAttr};
use crate::error::{Result, SqlError};

/// Why a join of SESSION windows on less than their ends is refused.
const SESSION_JOIN_ON_END: &str = "a join of SESSION windows must equate window_end on both sides (sessions differ in length, so window_start alone does not say when a session is complete): ON a.window_start = b.window_start AND a.window_end = b.window_end";

impl Context<'_> {
    pub(super) fn join(&mut self, j: &HashJoinExec) -> Result<Stream> {
        let at = self.at;
        let left = self.translate(j.left())?;
        let right = self.translate(j.right())?;
        left.stream_only(
            at,
            "on the left of a join: put the table on the right (FROM stream JOIN table)",
        )?;
        left.append_only(at, "a join")?;
        right.append_only(at, "a join")?;
        if right.lookup.is_some() {
            if left.unsessioned {
                return Err(SqlError::refused(
                    at,
                    "rows of SESSION(…) get their session's bounds when it closes: aggregate them (GROUP BY window_start, window_end, …) before looking them up in a table",
                ));
            }
            return self.lookup_join(j, left, right);
        }
        let kind = match j.join_type() {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            JoinType::LeftSemi => JoinKind::LeftSemi,
            JoinType::RightSemi => JoinKind::RightSemi,
            JoinType::LeftAnti => JoinKind::LeftAnti,
            JoinType::RightAnti => JoinKind::RightAnti,
            other => {
                return Err(SqlError::refused(
                    at,
                    format!(
                        "this query needs a {other} join (from a subquery in WHERE), which is not supported on streams yet; write it as a JOIN"
                    ),
                ));
            }
        };
        let left_keys: Vec<Arc<dyn PhysicalExpr>> = j.on().iter().map(|(l, _)| l.clone()).collect();
        let right_keys: Vec<Arc<dyn PhysicalExpr>> =
            j.on().iter().map(|(_, r)| r.clone()).collect();
        // Rows straight from SESSION(…) learn their session's bounds first, per key.
        let left = self.sessioned(left, &left_keys)?;
        let right = self.sessioned(right, &right_keys)?;
        let col_attr = |s: &Stream, e: &Arc<dyn PhysicalExpr>| {
            e.downcast_ref::<Column>().and_then(|c| {
                s.attrs
                    .get(c.index())
                    .copied()
                    .flatten()
                    .map(|a| (c.index(), a))
            })
        };
        // A window join meets on the windows' start (or end) on both sides.
        let mut window_pair = None;
        for (l, r) in j.on() {
            if let (Some((li, la)), Some((ri, ra))) = (col_attr(&left, l), col_attr(&right, r)) {
                match (la, ra) {
                    (TimeAttr::WindowStart(a), TimeAttr::WindowStart(b))
                    | (TimeAttr::WindowEnd(a), TimeAttr::WindowEnd(b)) => {
                        if a != b {
                            return Err(SqlError::refused(
                                at,
                                format!(
                                    "a window join's two sides must use the same window: the left is {a}, the right {b}"
                                ),
                            ));
                        }
                        let offset = match (la, a) {
                            (TimeAttr::WindowStart(_), WindowKind::Tumble { size_ms })
                            | (TimeAttr::WindowStart(_), WindowKind::Hop { size_ms, .. }) => {
                                size_ms
                            }
                            _ => 0,
                        };
                        let is_end = matches!(la, TimeAttr::WindowEnd(_));
                        if window_pair.is_none() || is_end {
                            window_pair = Some((li, ri, offset, a, is_end));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some((_, _, _, WindowKind::Session { .. }, false)) = window_pair {
            return Err(SqlError::refused(at, SESSION_JOIN_ON_END));
        }
        let event = |s: &Stream| s.attrs.iter().position(|a| *a == Some(TimeAttr::Event));
        let (time, left_time, right_time, time_offset_ms) = if let Some((li, ri, off, _, _)) =
            window_pair
        {
            (JoinTime::Window, Some(li), Some(ri), off)
        } else if let Some(b) = j
            .filter()
            .and_then(|f| interval_bounds(f, &left.attrs, &right.attrs))
        {
            (
                JoinTime::Interval {
                    lower_ms: b.lower_ms,
                    upper_ms: b.upper_ms,
                },
                Some(b.left_column),
                Some(b.right_column),
                0,
            )
        } else {
            if matches!(kind, JoinKind::LeftAnti | JoinKind::RightAnti) {
                return Err(SqlError::refused(
                    at,
                    "NOT IN / NOT EXISTS (an anti join) without a time bound is not supported yet: bound it in time (b.t BETWEEN a.t - INTERVAL … AND a.t + INTERVAL …), or write it as a LEFT JOIN … WHERE b.k IS NULL",
                ));
            }
            let (lt, rt) = (event(&left), event(&right));
            if self.ttl_ms.is_none() {
                self.notes.push(format!(
                    "the join at {at} has no time bound: it keeps every row of both sides for ever (its rows held show in /metrics as sluice_join_rows_held); SET state.ttl = '…' lets rows go after that much event time"
                ));
            }
            let ttl_ms = self.ttl_ms;
            (JoinTime::Regular { ttl_ms }, lt, rt, 0)
        };
        let joined_schema = j.join_schema().clone();
        let output_schema = j.schema();
        let projection: Option<Vec<usize>> = j.projection.as_ref().map(|p| p.to_vec());
        // Which columns stay time attributes: a regular join's output has none.
        let joined_attrs: Vec<Option<TimeAttr>> = match kind {
            JoinKind::LeftSemi | JoinKind::LeftAnti => left.attrs.clone(),
            JoinKind::RightSemi | JoinKind::RightAnti => right.attrs.clone(),
            _ => left.attrs.iter().chain(&right.attrs).copied().collect(),
        };
        let keep = |a: Option<TimeAttr>| match time {
            JoinTime::Window => a.filter(|t| t.window().is_some()),
            JoinTime::Interval { .. } => a,
            JoinTime::Regular { .. } | JoinTime::Lookup { .. } => None,
        };
        let attrs: Vec<Option<TimeAttr>> = match &projection {
            Some(p) => p.iter().map(|&i| keep(joined_attrs[i])).collect(),
            None => joined_attrs.into_iter().map(keep).collect(),
        };
        let plan = JoinPlan {
            time,
            kind,
            left_schema: left.schema.clone(),
            right_schema: right.schema.clone(),
            left_keys: left_keys.clone(),
            right_keys: right_keys.clone(),
            null_equals_null: j.null_equality() == NullEquality::NullEqualsNull,
            filter: j.filter().cloned(),
            left_time,
            right_time,
            time_offset_ms,
            joined_schema,
            projection,
            output_schema: output_schema.clone(),
        };
        let updating = plan.updating();
        let n = self.node(
            "join",
            NodeOp::Join(plan),
            vec![(left, left_keys), (right, right_keys)],
        );
        if updating {
            // An outer join without a time bound: an unmatched row goes out padded at
            // once and is taken back when its first match comes.
            return Ok(Stream::updating_of_node(n, output_schema, Vec::new()).no_key());
        }
        Ok(Stream::of_node(n, output_schema, attrs))
    }

    /// A stream whose rows come straight from SESSION(…) goes through a session
    /// assignment node first (sessions per value of the join keys that are not window
    /// bounds), so that its rows carry their real session's bounds; any other stream is
    /// returned as it is.
    fn sessioned(&mut self, s: Stream, keys: &[Arc<dyn PhysicalExpr>]) -> Result<Stream> {
        if !s.unsessioned {
            return Ok(s);
        }
        let bound = |end: bool| {
            s.attrs.iter().position(|a| match a {
                Some(TimeAttr::WindowStart(WindowKind::Session { .. })) => !end,
                Some(TimeAttr::WindowEnd(WindowKind::Session { .. })) => end,
                _ => false,
            })
        };
        let (Some(start_column), Some(end_column)) = (bound(false), bound(true)) else {
            return Err(SqlError::refused(self.at, SESSION_JOIN_ON_END));
        };
        let Some(WindowKind::Session { gap_ms }) = s.attrs[start_column].and_then(|a| a.window())
        else {
            return Err(SqlError::Internal("a session without its gap".into()));
        };
        let keys: Vec<Arc<dyn PhysicalExpr>> = keys
            .iter()
            .filter(|k| {
                k.downcast_ref::<Column>()
                    .and_then(|c| s.attrs.get(c.index()).copied().flatten())
                    .is_none_or(|a| a.window().is_none())
            })
            .cloned()
            .collect();
        let plan = SessionPlan {
            gap_ms,
            schema: s.schema.clone(),
            keys: keys.clone(),
            start_column,
            end_column,
        };
        let (schema, attrs) = (s.schema.clone(), s.attrs.clone());
        let n = self.node(
            "session assignment",
            NodeOp::Sessions(plan),
            vec![(s, keys)],
        );
        Ok(Stream::of_node(n, schema, attrs))
    }

    /// A stream joined to a table looked up by key.
    fn lookup_join(&mut self, j: &HashJoinExec, left: Stream, right: Stream) -> Result<Stream> {
        let at = self.at;
        let kind = match j.join_type() {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            other => {
                return Err(SqlError::refused(
                    at,
                    format!(
                        "a lookup table joins as INNER JOIN or LEFT JOIN (each stream row meets the table's rows as they are when it arrives), not {other}"
                    ),
                ));
            }
        };
        let Some((lookup, steps)) = right.lookup.clone() else {
            return Err(SqlError::Internal("a lookup join without its table".into()));
        };
        let left_keys: Vec<Arc<dyn PhysicalExpr>> = j.on().iter().map(|(l, _)| l.clone()).collect();
        let right_keys: Vec<Arc<dyn PhysicalExpr>> =
            j.on().iter().map(|(_, r)| r.clone()).collect();
        let key_columns = right_keys
            .iter()
            .map(|e| {
                e.downcast_ref::<Column>()
                    .map(|c| c.name().to_string())
                    .ok_or_else(|| {
                        SqlError::refused(
                            at,
                            format!(
                                "a lookup table is looked up by its own columns: the ON clause must equate a column of the table with the stream, not {e}"
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let ttl_ms = (self.lookup_ttl)(lookup);
        let projection: Option<Vec<usize>> = j.projection.as_ref().map(|p| p.to_vec());
        let nl = left.attrs.len();
        let attrs = match &projection {
            Some(p) => p
                .iter()
                .map(|&i| if i < nl { left.attrs[i] } else { None })
                .collect(),
            None => left
                .attrs
                .iter()
                .copied()
                .chain(std::iter::repeat_n(None, right.attrs.len()))
                .collect(),
        };
        let output_schema = j.schema();
        let plan = JoinPlan {
            time: JoinTime::Lookup {
                lookup,
                ttl_ms,
                steps,
                key_columns,
            },
            kind,
            left_schema: left.schema.clone(),
            right_schema: right.schema.clone(),
            left_keys: left_keys.clone(),
            right_keys,
            null_equals_null: false,
            filter: j.filter().cloned(),
            left_time: None,
            right_time: None,
            time_offset_ms: 0,
            joined_schema: j.join_schema().clone(),
            projection,
            output_schema: output_schema.clone(),
        };
        let n = self.node("lookup join", NodeOp::Join(plan), vec![(left, left_keys)]);
        Ok(Stream::of_node(n, output_schema, attrs))
    }
}
