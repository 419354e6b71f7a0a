//! Plans a job file: DDL into tables, each `INSERT INTO … SELECT …` through DataFusion
//! into a streaming pipeline, refusing (with a position) what cannot run as a stream.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::expressions::{Column, cast};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    GroupByExpr, Insert, Query, SelectItem, SetExpr, Statement, TableObject,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use sluice_types::{ConnectorCatalog, JobRules, Position, TableRole};

use crate::ddl::{SetDef, TIMESTAMP_TYPE, TableDef, parse_create_table, parse_set};
use crate::env::expand;
use crate::error::{Result, SqlError};
use crate::graph::{
    AggregateSpec, EventTime, JobGraph, Pipeline, ScanSpec, SinkTable, SourceTable, Stage,
    WindowSpec,
};
use crate::scan::{StreamScanExec, StreamTable};
use crate::statements::{RawStatement, split};
use crate::window::{Rewrite, WindowCall, rewrite_query, span_pos};

const WINDOW_PREFIX: &str = "__sluice_window_";

/// Plans a whole job file, trusting it (as `sluice run` does).
pub fn plan_job(
    sql: &str,
    catalog: &dyn ConnectorCatalog,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobGraph> {
    plan_job_with_rules(sql, catalog, env, &JobRules::trusted())
}

/// Plans a whole job file under `rules` (the server's, for a submitted job).
pub fn plan_job_with_rules(
    sql: &str,
    catalog: &dyn ConnectorCatalog,
    env: &dyn Fn(&str) -> Option<String>,
    rules: &JobRules,
) -> Result<JobGraph> {
    let statements = split(sql)?;
    let mut tables: Vec<TableDef> = Vec::new();
    let mut settings: Vec<SetDef> = Vec::new();
    let mut inserts: Vec<&RawStatement> = Vec::new();
    let expander = |v: &str| {
        crate::rules::check_env(rules, v)?;
        expand(v, env)
    };
    for stmt in &statements {
        let words = stmt.leading_words(2);
        match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["CREATE", "TABLE"] => {
                let mut t = parse_create_table(stmt, &expander)?;
                crate::rules::resolve_paths(rules, catalog, &mut t)?;
                if tables.iter().any(|x| x.name == t.name) {
                    return Err(SqlError::refused(
                        t.position,
                        format!("table {} is declared twice", t.name),
                    ));
                }
                tables.push(t);
            }
            ["SET", ..] => settings.push(check_setting(parse_set(stmt)?)?),
            ["INSERT", ..] => inserts.push(stmt),
            _ => {
                return Err(SqlError::refused(
                    stmt.start(),
                    format!(
                        "a job holds CREATE TABLE, SET and INSERT INTO … SELECT statements; this one starts with {}",
                        words.join(" ")
                    ),
                ));
            }
        }
    }
    if inserts.is_empty() {
        return Err(SqlError::refused(
            None,
            "the job has no INSERT INTO … SELECT statement, so it would do nothing",
        ));
    }
    for t in &tables {
        let Some(conn) = t.options.connector() else {
            return Err(SqlError::refused(
                t.position,
                format!(
                    "table {} needs a connector: WITH (connector = '…', …)",
                    t.name
                ),
            ));
        };
        let _ = conn;
    }

    crate::rules::check_parallelism(rules, &settings)?;
    let max_windows = crate::rules::max_windows_per_row(rules, &settings)?;
    let mut planner = Planner::new(&tables, max_windows)?;
    let mut pipelines = Vec::new();
    for stmt in inserts {
        pipelines.push(planner.plan_insert(stmt)?);
    }

    // Check connector options once each table's role is known.
    for (i, t) in tables.iter().enumerate() {
        let role = if planner.sink_index.contains_key(&i) {
            TableRole::Sink
        } else if planner.source_index.contains_key(&i) {
            TableRole::Source
        } else {
            continue;
        };
        let refuse = |p: sluice_types::OptionProblem| {
            let at = p
                .key
                .as_deref()
                .and_then(|k| t.options.position(k))
                .unwrap_or(t.position);
            SqlError::refused(at, format!("table {}: {}", t.name, p.message))
        };
        catalog
            .check(role, !t.columns.is_empty(), &t.options, rules)
            .map_err(refuse)?;
        if let Some(&si) = planner.sink_index.get(&i) {
            catalog
                .check_sink_columns(&t.options, &planner.sinks[si].schema)
                .map_err(refuse)?;
        }
    }

    Ok(JobGraph {
        sql: sql.to_string(),
        settings,
        sources: planner.sources,
        sinks: planner.sinks,
        pipelines,
    })
}

struct Planner<'a> {
    tables: &'a [TableDef],
    sources: Vec<SourceTable>,
    sinks: Vec<SinkTable>,
    /// table index → index in `sources` / `sinks`
    source_index: HashMap<usize, usize>,
    sink_index: HashMap<usize, usize>,
    statement_no: usize,
    /// How many windows one row may belong to.
    max_windows: u64,
}

impl<'a> Planner<'a> {
    fn new(tables: &'a [TableDef], max_windows: u64) -> Result<Self> {
        Ok(Planner {
            tables,
            sources: Vec::new(),
            sinks: Vec::new(),
            source_index: HashMap::new(),
            sink_index: HashMap::new(),
            statement_no: 0,
            max_windows,
        })
    }

    fn table(&self, name: &str) -> Option<(usize, &'a TableDef)> {
        self.tables.iter().enumerate().find(|(_, t)| t.name == name)
    }

    fn plan_insert(&mut self, stmt: &RawStatement) -> Result<Pipeline> {
        self.statement_no += 1;
        let dialect = GenericDialect {};
        let parsed = Parser::new(&dialect)
            .with_tokens_with_locations(stmt.tokens.clone())
            .parse_statement()
            .map_err(|e| SqlError::from_parser(&e))?;
        let start = stmt.start();
        let Statement::Insert(Insert {
            table,
            columns,
            source,
            ..
        }) = parsed
        else {
            return Err(SqlError::refused(
                start,
                "expected INSERT INTO <sink> SELECT …",
            ));
        };
        let TableObject::TableName(sink_name) = &table else {
            return Err(SqlError::refused(start, "INSERT INTO must name a table"));
        };
        let sink_pos = span_pos(sink_name).unwrap_or(start);
        let sink_name_s = sink_name.to_string().to_ascii_lowercase();
        let Some((sink_ti, sink_def)) = self.table(&sink_name_s) else {
            return Err(SqlError::refused(
                sink_pos,
                format!("INSERT INTO {sink_name_s}: no such table; declare it with CREATE TABLE"),
            ));
        };
        if !columns.is_empty() {
            return Err(SqlError::refused(
                span_pos(&columns[0]).unwrap_or(sink_pos),
                "a column list after INSERT INTO is not supported; name and order the columns in the SELECT",
            ));
        }
        let Some(mut query) = source else {
            return Err(SqlError::refused(start, "INSERT needs a SELECT"));
        };
        check_streamable_query(&query)?;

        let mut rewrite = Rewrite::default();
        let prefix = format!("{WINDOW_PREFIX}{}_", self.statement_no);
        rewrite_query(&mut query, &mut rewrite, &prefix)?;

        // Which source this pipeline reads.
        let mut read: Vec<(String, Position)> = rewrite
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.position))
            .collect();
        read.extend(
            rewrite
                .windows
                .iter()
                .map(|w| (w.source.clone(), w.source_position)),
        );
        for (name, p) in &read {
            match self.table(name) {
                None => {
                    return Err(SqlError::refused(
                        *p,
                        format!("no table named {name}; declare it with CREATE TABLE"),
                    ));
                }
                Some((_, t)) if t.columns.is_empty() => {
                    return Err(SqlError::refused(
                        *p,
                        format!(
                            "table {name} declares no columns, so it cannot be read; list its columns in CREATE TABLE"
                        ),
                    ));
                }
                Some((ti, _)) if ti == sink_ti => {
                    return Err(SqlError::refused(
                        *p,
                        format!("table {name} is both read and written by this statement"),
                    ));
                }
                _ => {}
            }
        }
        let mut distinct: Vec<&String> = read.iter().map(|(n, _)| n).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 || rewrite.windows.len() > 1 {
            let at = read.get(1).map(|(_, p)| *p);
            return Err(SqlError::refused(
                at,
                "a statement reads one source (joins and unions of streams are not supported yet); write one INSERT per source",
            ));
        }
        let Some((source_name, _)) = read.first().cloned() else {
            return Err(SqlError::refused(
                start,
                "the SELECT reads no table; a streaming job needs a source in FROM",
            ));
        };
        let window = rewrite.windows.first().cloned();
        let (source_ti, source_def) = self
            .table(&source_name)
            .ok_or_else(|| SqlError::Internal(format!("lost table {source_name}")))?;
        if let Some(w) = &window {
            check_window_column(w, source_def)?;
            crate::rules::check_window(self.max_windows, w)?;
        }

        // Plan with DataFusion against stand-in tables.
        let ctx = planning_context();
        for t in self.tables.iter().filter(|t| !t.columns.is_empty()) {
            let schema = Arc::new(t.schema());
            ctx.register_table(
                t.name.as_str(),
                Arc::new(StreamTable {
                    name: t.name.clone(),
                    schema,
                }),
            )
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        }
        if let Some(w) = &window {
            ctx.register_table(
                w.table_name.as_str(),
                Arc::new(StreamTable {
                    name: w.table_name.clone(),
                    schema: Arc::new(window_schema(&source_def.schema())),
                }),
            )
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        }
        let state = ctx.state();
        let df_stmt = DfStatement::Statement(Box::new(Statement::Query(query.clone())));
        let logical = futures::executor::block_on(state.statement_to_plan(df_stmt))
            .map_err(|e| df_error(e, start))?;
        check_logical(&logical, &query, window.as_ref(), start)?;
        let physical = futures::executor::block_on(state.create_physical_plan(&logical))
            .map_err(|e| df_error(e, start))?;

        let shape = decompose(&physical, group_by_position(&query).unwrap_or(start))?;
        let source_schema = Arc::new(source_def.schema());
        let time_column = source_def
            .watermark
            .as_ref()
            .and_then(|w| source_schema.index_of(&w.column).ok());
        let scan = ScanSpec {
            projection: shape.scan.projection.clone(),
            window: window.as_ref().map(|w| w.spec),
            time_column: if window.is_some() { time_column } else { None },
            schema: shape.scan.schema.clone(),
        };
        let aggregate = match shape.aggregate {
            Some(agg) => Some(agg),
            None => {
                if matches!(scan.window, Some(WindowSpec::Session { .. })) {
                    return Err(SqlError::refused(
                        window.as_ref().map(|w| w.source_position),
                        "SESSION windows need a GROUP BY with aggregates (a session is only known when it closes)",
                    ));
                }
                None
            }
        };

        // Register source and sink (a source shared by statements is read once).
        let source = match self.source_index.get(&source_ti) {
            Some(&i) => i,
            None => {
                let event_time = source_def.watermark.as_ref().and_then(|w| {
                    source_schema
                        .index_of(&w.column)
                        .ok()
                        .map(|column| EventTime {
                            column,
                            delay_ms: w.delay_ms,
                        })
                });
                self.sources.push(SourceTable {
                    def: source_def.clone(),
                    schema: source_schema.clone(),
                    event_time,
                });
                self.source_index.insert(source_ti, self.sources.len() - 1);
                self.sources.len() - 1
            }
        };
        if self.source_index.contains_key(&sink_ti) {
            return Err(SqlError::refused(
                sink_pos,
                format!(
                    "table {sink_name_s} is read by another statement and cannot also be written"
                ),
            ));
        }
        let query_schema = shape.output_schema.clone();
        let (sink_schema, cast_stage) = sink_schema_for(sink_def, &query_schema, &query)?;
        let sink = match self.sink_index.get(&sink_ti) {
            Some(&i) => {
                let existing = &self.sinks[i].schema;
                if !same_types(existing, &sink_schema) {
                    return Err(SqlError::refused(
                        sink_pos,
                        format!(
                            "{sink_name_s} is written by an earlier statement with columns ({}); this one gives ({})",
                            describe_schema(existing),
                            describe_schema(&sink_schema)
                        ),
                    ));
                }
                i
            }
            None => {
                self.sinks.push(SinkTable {
                    def: sink_def.clone(),
                    schema: sink_schema.clone(),
                });
                self.sink_index.insert(sink_ti, self.sinks.len() - 1);
                self.sinks.len() - 1
            }
        };
        if self.source_index.contains_key(&sink_ti) && self.sink_index.contains_key(&sink_ti) {
            return Err(SqlError::refused(
                sink_pos,
                format!("table {sink_name_s} cannot be both read and written"),
            ));
        }
        let mut post = shape.post;
        let mut pre = shape.pre;
        if let Some(stage) = cast_stage {
            if aggregate.is_some() {
                post.push(stage);
            } else {
                pre.push(stage);
            }
        }
        let _ = &source_schema;
        Ok(Pipeline {
            source,
            sink,
            position: start,
            scan,
            pre,
            aggregate,
            post,
            output_schema: sink_schema,
        })
    }
}

/// The job settings a `SET` may give, and what each accepts.
pub const SETTINGS: &[(&str, &str)] = &[
    ("parallelism", "a whole number of at least 1"),
    ("max_windows_per_row", "a whole number of at least 1"),
    (
        "checkpoint_interval",
        "a duration of at least 10 ms, such as '2s' or '1 minute'",
    ),
];

fn check_setting(set: SetDef) -> Result<SetDef> {
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

fn planning_context() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().optimizer.repartition_aggregations = false;
    config.options_mut().execution.time_zone = None;
    let ctx = SessionContext::new_with_config(config);
    // Keep COUNT(DISTINCT x) a single aggregate: the streaming window operator runs one
    // level of aggregation.
    let state: SessionState = ctx.state();
    let rules = state
        .optimizers()
        .iter()
        .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
        .cloned()
        .collect();
    let state = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .build();
    SessionContext::new_with_state(state)
}

fn window_schema(source: &Schema) -> Schema {
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("window_start", TIMESTAMP_TYPE, false));
    fields.push(Field::new("window_end", TIMESTAMP_TYPE, false));
    Schema::new(fields)
}

fn check_window_column(w: &WindowCall, source: &TableDef) -> Result<()> {
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
fn check_streamable_query(query: &Query) -> Result<()> {
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
fn group_by_position(query: &Query) -> Option<Position> {
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

fn check_logical(
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

struct ScanLeaf {
    projection: Vec<usize>,
    schema: SchemaRef,
}

struct Shape {
    scan: ScanLeaf,
    pre: Vec<Stage>,
    aggregate: Option<AggregateSpec>,
    post: Vec<Stage>,
    output_schema: SchemaRef,
}

/// Cuts the physical plan into scan → stateless stages → [aggregate → stateless stages].
fn decompose(plan: &Arc<dyn ExecutionPlan>, at: Position) -> Result<Shape> {
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

fn aggregate_spec(
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

/// The sink's schema, and a stage casting the query's columns to it when it declares them.
fn sink_schema_for(
    sink: &TableDef,
    query_schema: &SchemaRef,
    query: &Query,
) -> Result<(SchemaRef, Option<Stage>)> {
    if sink.columns.is_empty() {
        return Ok((query_schema.clone(), None));
    }
    let item_pos = |i: usize| -> Option<Position> {
        if let SetExpr::Select(select) = query.body.as_ref() {
            select
                .projection
                .get(i)
                .and_then(|item: &SelectItem| span_pos(item))
        } else {
            None
        }
    };
    if sink.columns.len() != query_schema.fields().len() {
        return Err(SqlError::refused(
            item_pos(0).or(Some(sink.position)),
            format!(
                "table {} has {} columns ({}) but the SELECT gives {} ({})",
                sink.name,
                sink.columns.len(),
                sink.columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                query_schema.fields().len(),
                describe_schema(query_schema)
            ),
        ));
    }
    let sink_schema = Arc::new(sink.schema());
    let mut exprs = Vec::new();
    let mut needed = false;
    for (i, (col, field)) in sink.columns.iter().zip(query_schema.fields()).enumerate() {
        let from = field.data_type();
        let expr: Arc<dyn datafusion::physical_plan::PhysicalExpr> =
            Arc::new(Column::new(field.name(), i));
        if from != &col.data_type || field.name() != &col.name {
            needed = true;
        }
        let ok = castable(from, &col.data_type);
        if !ok {
            return Err(SqlError::refused(
                item_pos(i).or(Some(col.position)),
                format!(
                    "type mismatch: column {} of {} is {} but the SELECT gives {} ({})",
                    col.name,
                    sink.name,
                    sql_type(&col.data_type),
                    sql_type(from),
                    field.name()
                ),
            ));
        }
        let expr = if from == &col.data_type {
            expr
        } else {
            cast(expr, query_schema, col.data_type.clone())
                .map_err(|e| SqlError::Internal(e.to_string()))?
        };
        exprs.push((expr, col.name.clone()));
    }
    let stage = needed.then(|| Stage::Project {
        exprs,
        schema: sink_schema.clone(),
    });
    Ok((sink_schema, stage))
}

/// Casts a user would accept implicitly: numbers widen or narrow among numbers, anything
/// to text, timestamps among timestamps.
fn castable(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || from == &Null {
        return true;
    }
    let numeric = |t: &DataType| t.is_numeric();
    match (from, to) {
        (_, Utf8 | LargeUtf8 | Utf8View) => true,
        (a, b) if numeric(a) && numeric(b) => true,
        (Timestamp(..), Timestamp(..)) => true,
        (Boolean, Boolean) => true,
        _ => false,
    }
}

fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "TEXT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Timestamp(..) => "TIMESTAMP".into(),
        other => other.to_string(),
    }
}

fn describe_schema(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
        .collect::<Vec<_>>()
        .join(", ")
}

fn same_types(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.data_type() == y.data_type() && x.name() == y.name())
}

/// A DataFusion planning error as a sentence with the position DataFusion found.
fn df_error(e: DataFusionError, fallback: Position) -> SqlError {
    let position = e
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| Position::new(s.start.line, s.start.column))
        .unwrap_or(fallback);
    let text = e.strip_backtrace();
    let mut msg = text.as_str();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "This feature is not implemented: ",
        "Optimizer rule 'type_coercion' failed\ncaused by\n",
        "Execution error: ",
    ] {
        msg = msg.trim_start_matches(prefix);
    }
    for prefix in ["Error during planning: ", "Schema error: "] {
        msg = msg.trim_start_matches(prefix);
    }
    let msg = msg.replace(WINDOW_PREFIX, "window_");
    SqlError::refused(position, msg)
}
