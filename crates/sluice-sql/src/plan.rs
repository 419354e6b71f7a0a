//! Plans a job file: DDL into tables, each `INSERT INTO … SELECT …` through DataFusion
//! into a streaming pipeline, refusing (with a position) what cannot run as a stream.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Insert, Statement, TableObject};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use sluice_types::{ConnectorCatalog, JobRules, Position, TableRole};

use crate::ddl::{SetDef, TIMESTAMP_TYPE, TableDef, parse_create_table, parse_set};
use crate::env::expand;
use crate::error::{Result, SqlError};
use crate::graph::{EventTime, JobGraph, Pipeline, ScanSpec, SinkTable, SourceTable, WindowSpec};
use crate::scan::StreamTable;
use crate::statements::{RawStatement, split};
use crate::window::{Rewrite, rewrite_query, span_pos};

mod checks;
mod physical;
mod sink_schema;

pub use checks::SETTINGS;
use checks::*;
use physical::*;
use sink_schema::*;

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
