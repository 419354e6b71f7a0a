//! Physical translation: DataFusion's physical plan becomes nodes and edges of the job
//! graph. A stream being built is a set of branches (a producer and the stateless steps
//! after it): UNION ALL concatenates branches, filters and projections extend each one,
//! and a stateful operator (window aggregate, join) becomes a node fed by every branch.
//! Each column knows whether it is a time attribute, so that a later stage knows when
//! its input for a given time is complete.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::TreeNode;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::{InterleaveExec, UnionExec};
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use sluice_runtime::{
    AggregatePlan, AssignSpec, Consumer, EdgeSpec, NodeOp, NodeSpec, Producer, Step, WindowKind,
};
use sluice_types::Position;

use super::row_number::ROW_NUMBER_ONLY;
use crate::error::{Result, SqlError};
use crate::scan::StreamScanExec;

/// A step over a changelog: a projection also carries the `__op` column, which rides
/// after the `width` columns every step sees.
pub(super) fn carry_op(step: Step, width: usize) -> Step {
    match step {
        Step::Project { mut exprs, schema } => {
            exprs.push(Arc::new(Column::new(sluice_types::OP_COLUMN, width)));
            Step::Project {
                exprs,
                schema: sluice_types::changelog::with_op(&schema),
            }
        }
        other => other,
    }
}

/// What a column means in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeAttr {
    /// Event time with a watermark (a source's watermarked column).
    Event,
    /// The start or end of a window of this kind.
    WindowStart(WindowKind),
    WindowEnd(WindowKind),
}

impl TimeAttr {
    pub(super) fn window(self) -> Option<WindowKind> {
        match self {
            TimeAttr::WindowStart(k) | TimeAttr::WindowEnd(k) => Some(k),
            TimeAttr::Event => None,
        }
    }
}

/// A producer and the stateless steps after it.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub from: Producer,
    pub steps: Vec<Step>,
}

/// A stream under construction.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub branches: Vec<Branch>,
    pub schema: SchemaRef,
    pub attrs: Vec<Option<TimeAttr>>,
    /// Rows come from a SESSION window's assignment and must be aggregated before
    /// anything else (a session is only known when it closes).
    pub unsessioned: bool,
    /// Not a stream but a table looked up by key (its index among the job's lookups),
    /// with the steps its fetched rows go through; only a join may read it.
    pub lookup: Option<(usize, Vec<Step>)>,
    /// An updating result (a changelog: rows carry `__op` after the schema's columns)
    /// rather than append-only.
    pub updating: bool,
    /// Columns that identify a row of an updating result (the GROUP BY keys), while
    /// they are all still there.
    pub unique_key: Option<Vec<usize>>,
}

impl Stream {
    pub(super) fn push(&mut self, step: Step) {
        let step = if self.updating {
            carry_op(step, self.schema.fields().len())
        } else {
            step
        };
        for b in &mut self.branches {
            b.steps.push(step.clone());
        }
        if let Some((_, steps)) = &mut self.lookup {
            steps.push(step);
        }
    }

    /// The rows a node puts out.
    pub fn of_node(n: usize, schema: SchemaRef, attrs: Vec<Option<TimeAttr>>) -> Stream {
        Stream {
            branches: vec![Branch {
                from: Producer::Node(n),
                steps: Vec::new(),
            }],
            schema,
            attrs,
            unsessioned: false,
            lookup: None,
            updating: false,
            unique_key: None,
        }
    }

    /// The changelog a node puts out, identified by `key` columns.
    pub fn updating_of_node(n: usize, schema: SchemaRef, key: Vec<usize>) -> Stream {
        let attrs = vec![None; schema.fields().len()];
        Stream {
            updating: true,
            unique_key: Some(key),
            ..Stream::of_node(n, schema, attrs)
        }
    }

    /// The same stream, its rows identified by no known key.
    pub fn no_key(self) -> Stream {
        Stream {
            unique_key: None,
            ..self
        }
    }

    /// Refuses an updating result where only an append-only stream can go.
    pub fn append_only(&self, at: Position, what: &str) -> Result<()> {
        if self.updating {
            return Err(SqlError::refused(
                at,
                format!(
                    "{what} over an updating result is not supported yet (a GROUP BY without a window changes its rows as events arrive); put it before that GROUP BY, or write the updating result to a table with a primary key"
                ),
            ));
        }
        Ok(())
    }

    /// The unique key after a projection to `exprs`.
    fn key_through(&self, exprs: &[Arc<dyn PhysicalExpr>]) -> Option<Vec<usize>> {
        let key = self.unique_key.as_ref()?;
        key.iter()
            .map(|k| {
                exprs
                    .iter()
                    .position(|e| e.downcast_ref::<Column>().is_some_and(|c| c.index() == *k))
            })
            .collect()
    }

    /// A lookup table's rows, before any step.
    pub fn lookup(index: usize, schema: SchemaRef) -> Stream {
        Stream {
            branches: Vec::new(),
            attrs: vec![None; schema.fields().len()],
            schema,
            unsessioned: false,
            lookup: Some((index, Vec::new())),
            updating: false,
            unique_key: None,
        }
    }

    /// Refuses a lookup table where a stream is needed.
    pub fn stream_only(&self, at: Position, what: &str) -> Result<()> {
        if self.lookup.is_some() {
            return Err(SqlError::refused(
                at,
                format!(
                    "a lookup table (a database table read by key) can only be joined to a stream (FROM stream JOIN table ON stream.key = table.key), not {what}"
                ),
            ));
        }
        Ok(())
    }

    /// Refuses an expression over a session's bounds before the session is known.
    fn no_session_bounds(&self, e: &Arc<dyn PhysicalExpr>, at: Position) -> Result<()> {
        if !self.unsessioned {
            return Ok(());
        }
        let mut found = false;
        let _ = e.apply(|x| {
            if let Some(c) = x.downcast_ref::<Column>()
                && self
                    .attrs
                    .get(c.index())
                    .copied()
                    .flatten()
                    .and_then(|a| a.window())
                    .is_some()
            {
                found = true;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        if found {
            return Err(SqlError::refused(
                at,
                "a SESSION window's window_start and window_end are only known when the session closes: use them after its GROUP BY or join, not in a filter or an expression before it",
            ));
        }
        Ok(())
    }

    /// Column selection by index.
    pub fn select(mut self, projection: &[usize], schema: SchemaRef) -> Stream {
        if projection.len() == self.schema.fields().len()
            && projection.iter().enumerate().all(|(i, p)| i == *p)
        {
            return Stream { schema, ..self };
        }
        let exprs: Vec<Arc<dyn PhysicalExpr>> = projection
            .iter()
            .map(|&i| {
                Arc::new(Column::new(self.schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
            })
            .collect();
        let unique_key = self.key_through(&exprs);
        self.push(Step::Project {
            exprs,
            schema: schema.clone(),
        });
        Stream {
            unique_key,
            attrs: projection.iter().map(|&i| self.attrs[i]).collect(),
            schema,
            ..self
        }
    }
}

/// What a table name in a planned query reads.
#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    /// A stream planned before: a source's rows, or a view's (or a lookup table).
    Stream(Stream),
    /// A window TVF over a stream.
    Window {
        input: Stream,
        window: WindowKind,
        time_column: usize,
        delay_ms: i64,
    },
}

/// Settings the translation needs.
pub(crate) struct Context<'a> {
    pub leaf: &'a dyn Fn(&str) -> Option<Leaf>,
    pub nodes: &'a mut Vec<NodeSpec>,
    pub edges: &'a mut Vec<EdgeSpec>,
    pub notes: &'a mut Vec<String>,
    pub ttl_ms: Option<i64>,
    /// A lookup table's cache TTL in milliseconds, by its index.
    pub lookup_ttl: &'a dyn Fn(usize) -> i64,
    /// Where aggregates and joins are reported.
    pub group_by_at: Position,
    pub at: Position,
}

impl Context<'_> {
    pub(super) fn node(
        &mut self,
        name: &str,
        op: NodeOp,
        inputs: Vec<(Stream, Vec<Arc<dyn PhysicalExpr>>)>,
    ) -> usize {
        let n = self.nodes.len();
        let keyed = inputs.iter().all(|(_, k)| !k.is_empty());
        self.nodes.push(NodeSpec {
            name: format!("{name} {}", n + 1),
            op,
            keyed,
        });
        for (port, (stream, keys)) in inputs.into_iter().enumerate() {
            for b in stream.branches {
                self.edges.push(EdgeSpec {
                    from: b.from,
                    steps: b.steps,
                    to: Consumer::Node { node: n, port },
                    keys: if keyed { keys.clone() } else { Vec::new() },
                });
            }
        }
        n
    }

    /// Translates a physical plan into a stream.
    pub fn translate(&mut self, plan: &Arc<dyn ExecutionPlan>) -> Result<Stream> {
        if let Some(scan) = plan.downcast_ref::<StreamScanExec>() {
            return self.scan(scan);
        }
        if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
            let mut s = self.translate(p.input())?;
            for e in p.expr() {
                if e.expr.downcast_ref::<Column>().is_none() {
                    s.no_session_bounds(&e.expr, self.at)?;
                }
            }
            let attrs = p
                .expr()
                .iter()
                .map(|e| {
                    e.expr
                        .downcast_ref::<Column>()
                        .and_then(|c| s.attrs.get(c.index()).copied().flatten())
                })
                .collect();
            let exprs: Vec<Arc<dyn PhysicalExpr>> =
                p.expr().iter().map(|e| e.expr.clone()).collect();
            let unique_key = s.key_through(&exprs);
            s.push(Step::Project {
                exprs,
                schema: p.schema(),
            });
            return Ok(Stream {
                unique_key,
                schema: p.schema(),
                attrs,
                ..s
            });
        }
        if let Some(f) = plan.downcast_ref::<FilterExec>() {
            // A filter on row numbers, perhaps through a choice of columns: deduplication.
            let between = f
                .input()
                .downcast_ref::<ProjectionExec>()
                .filter(|p| p.input().downcast_ref::<BoundedWindowAggExec>().is_some());
            let window = match between {
                Some(p) => p.input().downcast_ref::<BoundedWindowAggExec>(),
                None => f.input().downcast_ref::<BoundedWindowAggExec>(),
            };
            if let Some(w) = window {
                let width = w.input().schema().fields().len();
                let chosen: Option<Vec<usize>> = match between {
                    Some(p) => Some(
                        p.expr()
                            .iter()
                            .map(|e| e.expr.downcast_ref::<Column>().map(Column::index))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| SqlError::refused(self.at, ROW_NUMBER_ONLY))?,
                    ),
                    None => None,
                };
                let rn = match &chosen {
                    Some(cols) => cols.iter().position(|&c| c == width),
                    None => Some(width),
                }
                .ok_or_else(|| SqlError::refused(self.at, ROW_NUMBER_ONLY))?;
                let mut s = self.row_number(f.predicate(), rn, w)?;
                if let (Some(p), Some(cols)) = (between, chosen) {
                    s = s.select(&cols, p.schema());
                }
                return Ok(match f.projection() {
                    Some(proj) => s.select(proj, f.schema()),
                    None => s,
                });
            }
            let mut s = self.translate(f.input())?;
            s.no_session_bounds(f.predicate(), self.at)?;
            s.push(Step::Filter(f.predicate().clone()));
            if let Some(proj) = f.projection() {
                let proj: Vec<usize> = proj.to_vec();
                s = s.select(&proj, f.schema());
            }
            return Ok(s);
        }
        if let Some(a) = plan.downcast_ref::<AggregateExec>() {
            return self.aggregate(a);
        }
        if let Some(j) = plan.downcast_ref::<HashJoinExec>() {
            return self.join(j);
        }
        if let Some(u) = plan.downcast_ref::<UnionExec>() {
            return self.union(u.inputs(), plan.schema());
        }
        if let Some(u) = plan.downcast_ref::<InterleaveExec>() {
            return self.union(u.inputs(), plan.schema());
        }
        let name = plan.name().to_string();
        let kids = plan.children();
        match (name.as_str(), kids.first()) {
            (
                "CoalesceBatchesExec"
                | "CoalescePartitionsExec"
                | "RepartitionExec"
                | "CooperativeExec",
                Some(k),
            ) => self.translate(k),
            ("BoundedWindowAggExec" | "WindowAggExec", _) => {
                Err(SqlError::refused(self.at, ROW_NUMBER_ONLY))
            }
            ("NestedLoopJoinExec" | "CrossJoinExec", _) => Err(SqlError::refused(
                self.at,
                "a join of streams needs an equality between the two sides in its ON clause (a key to meet on); a join without one would hold and compare every pair of rows for ever",
            )),
            _ => Err(SqlError::refused(
                self.at,
                format!("this query needs {name}, which cannot run on an unbounded stream"),
            )),
        }
    }

    fn scan(&mut self, scan: &StreamScanExec) -> Result<Stream> {
        let leaf = (self.leaf)(&scan.table)
            .ok_or_else(|| SqlError::Internal(format!("no stream for table {}", scan.table)))?;
        match leaf {
            Leaf::Stream(s) => Ok(s.select(&scan.projection, scan.schema.clone())),
            Leaf::Window {
                input,
                window,
                time_column,
                delay_ms,
            } => {
                input.append_only(self.at, "a window")?;
                let width = input.schema.fields().len();
                let mut attrs = Vec::new();
                for &i in &scan.projection {
                    attrs.push(if i < width {
                        input.attrs[i]
                    } else if i == width {
                        Some(TimeAttr::WindowStart(window))
                    } else {
                        Some(TimeAttr::WindowEnd(window))
                    });
                }
                let mut s = input;
                s.push(Step::Assign(AssignSpec {
                    projection: scan.projection.clone(),
                    window: Some(window),
                    time_column: Some(time_column),
                    delay_ms,
                    per_row_lateness: false,
                    schema: scan.schema.clone(),
                }));
                Ok(Stream {
                    schema: scan.schema.clone(),
                    attrs,
                    unsessioned: matches!(window, WindowKind::Session { .. }),
                    ..s
                })
            }
        }
    }

    fn union(&mut self, inputs: &[Arc<dyn ExecutionPlan>], schema: SchemaRef) -> Result<Stream> {
        let mut out: Option<Stream> = None;
        for input in inputs {
            let mut s2 = self.translate(input)?;
            s2.stream_only(self.at, "unioned")?;
            // Every branch puts out the union's schema: its names and nullability (a
            // sink without declared columns writes the names it is given).
            if s2.schema != schema {
                let exprs = (0..schema.fields().len())
                    .map(|i| {
                        Arc::new(Column::new(schema.field(i).name(), i)) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                s2.push(Step::Project {
                    exprs,
                    schema: schema.clone(),
                });
            }
            out = Some(match out {
                None => Stream {
                    schema: schema.clone(),
                    ..s2
                },
                Some(mut acc) => {
                    acc.branches.extend(s2.branches);
                    if acc.updating != s2.updating {
                        return Err(SqlError::refused(
                            self.at,
                            "UNION ALL of an updating result (a GROUP BY without a window) and an append-only stream is not supported yet; write them to separate sinks",
                        ));
                    }
                    acc.unique_key = None;
                    for (a, b) in acc.attrs.iter_mut().zip(&s2.attrs) {
                        if a != b {
                            *a = None;
                        }
                    }
                    acc.unsessioned |= s2.unsessioned;
                    acc
                }
            });
        }
        out.ok_or_else(|| SqlError::Internal("a union of nothing".into()))
    }

    fn aggregate(&mut self, a: &AggregateExec) -> Result<Stream> {
        let at = self.group_by_at;
        let holder: Arc<dyn ExecutionPlan>;
        let agg: &AggregateExec = match a.mode() {
            AggregateMode::Final | AggregateMode::FinalPartitioned => {
                let mut child = a.input().clone();
                while child.downcast_ref::<AggregateExec>().is_none() {
                    let kids = child.children();
                    let Some(k) = kids.first() else {
                        return Err(SqlError::Internal("final aggregate without partial".into()));
                    };
                    child = (*k).clone();
                }
                holder = child;
                holder
                    .downcast_ref::<AggregateExec>()
                    .ok_or_else(|| SqlError::Internal("aggregate vanished".into()))?
            }
            _ => a,
        };
        let input = self.translate(agg.input())?;
        input.stream_only(at, "aggregated")?;
        let group = agg.group_expr();
        if group.has_grouping_set() {
            return Err(SqlError::refused(
                at,
                "GROUPING SETS, CUBE and ROLLUP are not supported on streams",
            ));
        }
        let group_exprs: Vec<Arc<dyn PhysicalExpr>> =
            group.expr().iter().map(|(e, _)| e.clone()).collect();
        let attr_of = |e: &Arc<dyn PhysicalExpr>| {
            e.downcast_ref::<Column>()
                .and_then(|c| input.attrs.get(c.index()).copied().flatten())
        };
        let window_key = group_exprs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| attr_of(e).and_then(|t| t.window().map(|k| (i, t, k))))
            .min_by_key(|(_, t, _)| matches!(t, TimeAttr::WindowEnd(_)));
        let Some((window_key, attr, window)) = window_key else {
            return self.updating_aggregate(a, agg, input, group_exprs);
        };
        input.append_only(at, "a window aggregate")?;
        if matches!(window, WindowKind::Session { .. }) && !input.unsessioned {
            return Err(SqlError::refused(
                at,
                "grouping again by the windows of a SESSION aggregate is not supported yet; group the sessions in the sink's database",
            ));
        }
        check_buildable(agg, at)?;
        let output_schema = a.schema();
        if output_schema.fields().len() != group_exprs.len() + agg.aggr_expr().len() {
            return Err(SqlError::Internal(
                "unexpected aggregate output shape".into(),
            ));
        }
        let plan = AggregatePlan {
            window: Some(window),
            input_schema: agg.input_schema(),
            group_exprs: group_exprs.clone(),
            window_key,
            window_key_is_end: matches!(attr, TimeAttr::WindowEnd(_)),
            aggregates: agg.aggr_expr().to_vec(),
            filters: agg.filter_expr().to_vec(),
            output_schema: output_schema.clone(),
            input_updating: false,
            ttl_ms: None,
        };
        let keys = plan.key_exprs();
        // The windows' own columns stay time attributes in the output (a SESSION
        // aggregate's too: each session goes out before the watermark passes its end).
        let mut attrs: Vec<Option<TimeAttr>> = group_exprs
            .iter()
            .map(|e| attr_of(e).filter(|t| t.window().is_some()))
            .collect();
        attrs.resize(output_schema.fields().len(), None);
        let n = self.node(
            "window aggregate",
            NodeOp::Aggregate(plan),
            vec![(input, keys)],
        );
        Ok(Stream::of_node(n, output_schema, attrs))
    }
}

impl Context<'_> {
    /// A GROUP BY without a window: an updating result keyed by its groups, each changed
    /// group put out once per barrier.
    fn updating_aggregate(
        &mut self,
        a: &AggregateExec,
        agg: &AggregateExec,
        input: Stream,
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Stream> {
        let at = self.group_by_at;
        if input.unsessioned {
            return Err(SqlError::refused(
                at,
                "rows of SESSION(…) must be grouped by their window (GROUP BY window_start, window_end, …)",
            ));
        }
        check_buildable(agg, at)?;
        let output_schema = a.schema();
        if output_schema.fields().len() != group_exprs.len() + agg.aggr_expr().len() {
            return Err(SqlError::Internal(
                "unexpected aggregate output shape".into(),
            ));
        }
        let k = group_exprs.len();
        let plan = AggregatePlan {
            window: None,
            input_schema: agg.input_schema(),
            group_exprs,
            window_key: 0,
            window_key_is_end: false,
            aggregates: agg.aggr_expr().to_vec(),
            filters: agg.filter_expr().to_vec(),
            output_schema: output_schema.clone(),
            input_updating: input.updating,
            ttl_ms: self.ttl_ms,
        };
        let keys = plan.key_exprs();
        let n = self.node(
            "updating aggregate",
            NodeOp::Aggregate(plan),
            vec![(input, keys)],
        );
        Ok(Stream::updating_of_node(n, output_schema, (0..k).collect()))
    }
}

/// An aggregate that cannot be built for its input type fails here, not when the first
/// window opens.
fn check_buildable(agg: &AggregateExec, at: Position) -> Result<()> {
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
    Ok(())
}
