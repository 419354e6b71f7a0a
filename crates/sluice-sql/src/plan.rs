//! Plans a job file: DDL into tables, views, and each `INSERT INTO … SELECT …` through
//! DataFusion into nodes and edges of one job graph, refusing (with a position) what
//! cannot run as a stream. A source or view read by several statements is read once.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use sluice_runtime::{EdgeSpec, NodeSpec, Producer};
use sluice_types::{ConnectorCatalog, JobRules, Position, TableRole};

use crate::ddl::{SetDef, TableDef, parse_create_table, parse_set};
use crate::error::{Result, SqlError};
use crate::graph::{EventTime, InsertInfo, JobGraph, SinkTable, SourceTable};
use crate::scan::StreamTable;
use crate::statements::{RawStatement, split};
use crate::window::{Rewrite, rewrite_query, span_pos};

mod checks;
mod definitions;
mod insert;
mod interval;
mod joins;
mod physical;
mod row_number;
mod session;
mod sink_schema;

pub use checks::SETTINGS;
use checks::*;
pub use definitions::CatalogFile;
use definitions::{complete_columns, load_catalog_files};
use physical::{Branch, Context, Leaf, Stream, TimeAttr};
use session::{df_error, join_position, planning_context, window_schema};

const WINDOW_PREFIX: &str = "__sluice_window_";

/// Plans a whole job file, trusting it (as `sluice run` does).
pub fn plan_job(
    sql: &str,
    catalog: &dyn ConnectorCatalog,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<JobGraph> {
    plan_job_with_rules(sql, catalog, env, &JobRules::trusted())
}

/// A `CREATE VIEW name AS SELECT …`.
#[derive(Debug, Clone)]
struct ViewDef {
    name: String,
    position: Position,
    query: Query,
    /// The catalog file it comes from (`None`: the job's own file).
    origin: Option<String>,
}

/// Plans a whole job file under `rules` (the server's, for a submitted job).
pub fn plan_job_with_rules(
    sql: &str,
    catalog: &dyn ConnectorCatalog,
    env: &dyn Fn(&str) -> Option<String>,
    rules: &JobRules,
) -> Result<JobGraph> {
    plan_job_with_catalog(sql, &[], catalog, env, rules)
}

/// Plans a job file with the tables and views of catalog files (read first; the job's
/// own definitions replace theirs by name).
pub fn plan_job_with_catalog(
    sql: &str,
    catalog_files: &[CatalogFile],
    catalog: &dyn ConnectorCatalog,
    env: &dyn Fn(&str) -> Option<String>,
    rules: &JobRules,
) -> Result<JobGraph> {
    let expander = |v: &str| crate::rules::expand_env(rules, env, v);
    let mut defs = load_catalog_files(catalog_files, catalog, &expander, rules)?;
    let statements = split(sql)?;
    let mut settings: Vec<SetDef> = Vec::new();
    let mut inserts: Vec<&RawStatement> = Vec::new();
    for stmt in &statements {
        let words = stmt.leading_words(4);
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w[..] {
            ["CREATE", "TABLE", ..] => {
                let mut t = parse_create_table(stmt, &expander)?;
                crate::rules::resolve_paths(rules, catalog, &mut t)?;
                complete_columns(catalog, &mut t);
                defs.add_table(t, None)?;
            }
            ["CREATE", "VIEW", ..] | ["CREATE", "TEMPORARY", "VIEW", ..] => {
                defs.add_view(parse_view(stmt)?)?;
            }
            ["SET", ..] => settings.push(check_setting(parse_set(stmt)?)?),
            ["INSERT", ..] => inserts.push(stmt),
            _ => {
                return Err(SqlError::refused(
                    stmt.start(),
                    format!(
                        "a job holds CREATE TABLE, CREATE VIEW, SET and INSERT INTO … SELECT statements; this one starts with {}",
                        words.iter().take(2).cloned().collect::<Vec<_>>().join(" ")
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
    for (t, origin) in &defs.tables {
        has_connector(t).map_err(|e| e.in_file(origin.as_deref()))?;
    }
    let tables: Vec<TableDef> = defs.tables.iter().map(|(t, _)| t.clone()).collect();
    let origins: Vec<Option<String>> = defs.tables.iter().map(|(_, o)| o.clone()).collect();
    let views = defs.views;

    crate::rules::check_parallelism(rules, &settings)?;
    let max_windows = crate::rules::max_windows_per_row(rules, &settings)?;
    let ttl_ms = settings
        .iter()
        .rev()
        .find(|s| s.key == "state.ttl")
        .map(|s| crate::parse_interval_text(&s.value))
        .transpose()
        .map_err(|e| SqlError::refused(None, format!("state.ttl: {e}")))?;
    let mut planner = Planner::new(catalog, &tables, &views, max_windows, ttl_ms);
    for stmt in inserts {
        planner.plan_insert(stmt)?;
    }

    // Check connector options once each table's role is known.
    for (i, t) in tables.iter().enumerate() {
        let role = if planner.sink_index.contains_key(&i) {
            TableRole::Sink
        } else if planner.source_index.contains_key(&i) {
            TableRole::Source
        } else if planner.lookup_index.contains_key(&i) {
            TableRole::Lookup
        } else {
            continue;
        };
        let refuse = |p| option_refusal(t, p);
        let in_file = |e: SqlError| e.in_file(origins[i].as_deref());
        catalog
            .check(role, !t.columns.is_empty(), &t.options, rules)
            .map_err(refuse)
            .map_err(in_file)?;
        if let Some(&si) = planner.sink_index.get(&i) {
            catalog
                .check_sink_columns(&t.options, &planner.sinks[si].schema)
                .map_err(refuse)
                .map_err(in_file)?;
        }
    }

    Ok(JobGraph {
        sql: sql.to_string(),
        settings,
        sources: planner.sources,
        sinks: planner.sinks,
        nodes: planner.nodes,
        edges: planner.edges,
        lookups: planner.lookups,
        inserts: planner.inserts,
        notes: planner.notes,
    })
}

/// Checks catalog files on their own (as the server does before keeping one): each
/// table's options for the role its shape says (with columns it is read, without it is
/// written), and each view planned. Returns the names they declare.
pub fn check_catalog(
    files: &[CatalogFile],
    catalog: &dyn ConnectorCatalog,
    env: &dyn Fn(&str) -> Option<String>,
    rules: &JobRules,
) -> Result<Vec<String>> {
    let expander = |v: &str| crate::rules::expand_env(rules, env, v);
    let defs = load_catalog_files(files, catalog, &expander, rules)?;
    let mut names = Vec::new();
    for (t, origin) in &defs.tables {
        let in_file = |e: SqlError| e.in_file(origin.as_deref());
        has_connector(t).map_err(in_file)?;
        let role = if t.columns.is_empty() {
            TableRole::Sink
        } else if catalog.is_lookup(&t.options) {
            TableRole::Lookup
        } else {
            TableRole::Source
        };
        catalog
            .check(role, !t.columns.is_empty(), &t.options, rules)
            .map_err(|p| in_file(option_refusal(t, p)))?;
        names.push(t.name.clone());
    }
    let tables: Vec<TableDef> = defs.tables.iter().map(|(t, _)| t.clone()).collect();
    let mut planner = Planner::new(catalog, &tables, &defs.views, u64::MAX, None);
    for v in &defs.views {
        planner.named_stream(&v.name, v.position, &HashMap::new())?;
        names.push(v.name.clone());
    }
    Ok(names)
}

fn has_connector(t: &TableDef) -> Result<()> {
    match t.options.connector() {
        Some(_) => Ok(()),
        None => Err(SqlError::refused(
            t.position,
            format!(
                "table {} needs a connector: WITH (connector = '…', …)",
                t.name
            ),
        )),
    }
}

/// A table's option refused by the connector catalog, at the option's key.
fn option_refusal(t: &TableDef, p: sluice_types::OptionProblem) -> SqlError {
    let at = p
        .key
        .as_deref()
        .and_then(|k| t.options.position(k))
        .unwrap_or(t.position);
    SqlError::refused(at, format!("table {}: {}", t.name, p.message))
}

fn parse_view(stmt: &RawStatement) -> Result<ViewDef> {
    let parsed = Parser::new(&GenericDialect {})
        .with_tokens_with_locations(stmt.tokens.clone())
        .parse_statement()
        .map_err(|e| SqlError::from_parser(&e))?;
    let Statement::CreateView(view) = parsed else {
        return Err(SqlError::refused(
            stmt.start(),
            "expected CREATE VIEW name AS SELECT …",
        ));
    };
    if !view.columns.is_empty() {
        return Err(SqlError::refused(
            span_pos(&view.name).or(Some(stmt.start())),
            "a column list after the view's name is not supported; name the columns in its SELECT",
        ));
    }
    if view.materialized {
        return Err(SqlError::refused(
            stmt.start(),
            "CREATE MATERIALIZED VIEW is not supported; a view here is a named query, and an INSERT INTO a table keeps results",
        ));
    }
    Ok(ViewDef {
        name: view.name.to_string().to_ascii_lowercase(),
        position: span_pos(&view.name).unwrap_or(stmt.start()),
        query: *view.query,
        origin: None,
    })
}

struct Planner<'a> {
    catalog: &'a dyn ConnectorCatalog,
    tables: &'a [TableDef],
    /// Tables looked up by key, and table index → index among them.
    lookups: Vec<SourceTable>,
    lookup_index: HashMap<usize, usize>,
    views: &'a [ViewDef],
    /// Views planned so far (each is planned once and shared).
    view_streams: HashMap<String, Stream>,
    sources: Vec<SourceTable>,
    sinks: Vec<SinkTable>,
    /// table index → index in `sources` / `sinks`
    source_index: HashMap<usize, usize>,
    sink_index: HashMap<usize, usize>,
    nodes: Vec<NodeSpec>,
    edges: Vec<EdgeSpec>,
    notes: Vec<String>,
    inserts: Vec<InsertInfo>,
    /// Queries planned so far (names their window tables apart).
    planned: usize,
    /// How many windows one row may belong to.
    max_windows: u64,
    ttl_ms: Option<i64>,
    /// Views being planned, to refuse a view that reads itself.
    reading: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(
        catalog: &'a dyn ConnectorCatalog,
        tables: &'a [TableDef],
        views: &'a [ViewDef],
        max_windows: u64,
        ttl_ms: Option<i64>,
    ) -> Self {
        Planner {
            catalog,
            lookups: Vec::new(),
            lookup_index: HashMap::new(),
            tables,
            views,
            view_streams: HashMap::new(),
            sources: Vec::new(),
            sinks: Vec::new(),
            source_index: HashMap::new(),
            sink_index: HashMap::new(),
            nodes: Vec::new(),
            edges: Vec::new(),
            notes: Vec::new(),
            inserts: Vec::new(),
            planned: 0,
            max_windows,
            ttl_ms,
            reading: Vec::new(),
        }
    }

    fn table(&self, name: &str) -> Option<(usize, &'a TableDef)> {
        self.tables.iter().enumerate().find(|(_, t)| t.name == name)
    }

    /// A source table's rows, registering the source on first use.
    fn source_stream(&mut self, ti: usize) -> Stream {
        let def = &self.tables[ti];
        let schema = Arc::new(def.schema());
        let time_col = def
            .watermark
            .as_ref()
            .and_then(|w| schema.index_of(&w.column).ok());
        let si = match self.source_index.get(&ti) {
            Some(&i) => i,
            None => {
                self.sources.push(SourceTable {
                    def: def.clone(),
                    schema: schema.clone(),
                    event_time: def.watermark.as_ref().and_then(|w| {
                        time_col.map(|column| EventTime {
                            column,
                            delay_ms: w.delay_ms,
                        })
                    }),
                });
                self.source_index.insert(ti, self.sources.len() - 1);
                self.sources.len() - 1
            }
        };
        let mut attrs = vec![None; schema.fields().len()];
        if let Some(c) = time_col {
            attrs[c] = Some(TimeAttr::Event);
        }
        Stream {
            branches: vec![Branch {
                from: Producer::Source(si),
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

    /// The stream a name in FROM reads: a statement's CTE, a view, or a table.
    fn named_stream(
        &mut self,
        name: &str,
        at: Position,
        scoped: &HashMap<String, Stream>,
    ) -> Result<Stream> {
        if let Some(s) = scoped.get(name) {
            return Ok(s.clone());
        }
        if let Some(v) = self.views.iter().find(|v| v.name == name) {
            if let Some(s) = self.view_streams.get(name) {
                return Ok(s.clone());
            }
            if self.reading.iter().any(|r| r == name) {
                return Err(SqlError::refused(at, format!("view {name} reads itself")));
            }
            self.reading.push(name.to_string());
            let s = self.plan_query(v.query.clone(), v.position, &HashMap::new());
            self.reading.pop();
            let s = s.map_err(|e| e.in_file(v.origin.as_deref()))?;
            self.view_streams.insert(name.to_string(), s.clone());
            return Ok(s);
        }
        match self.table(name) {
            None => Err(SqlError::refused(
                at,
                format!(
                    "no table or view named {name}; declare it with CREATE TABLE or CREATE VIEW, or take it from a catalog file that does (sluice run job.sql --catalog tables.sql; the reference jobs of sql/ use sql/catalog/)"
                ),
            )),
            Some((_, t)) if t.columns.is_empty() => Err(SqlError::refused(
                at,
                format!(
                    "table {name} declares no columns, so it cannot be read; list its columns in CREATE TABLE"
                ),
            )),
            Some((ti, t)) => {
                if self.sink_index.contains_key(&ti) {
                    return Err(SqlError::refused(
                        at,
                        format!("table {name} is written by a statement and cannot also be read"),
                    ));
                }
                if self.catalog.is_lookup(&t.options) {
                    let schema = Arc::new(t.schema());
                    let li = match self.lookup_index.get(&ti) {
                        Some(&i) => i,
                        None => {
                            self.lookups.push(SourceTable {
                                def: t.clone(),
                                schema: schema.clone(),
                                event_time: None,
                            });
                            self.lookup_index.insert(ti, self.lookups.len() - 1);
                            self.lookups.len() - 1
                        }
                    };
                    return Ok(Stream::lookup(li, schema));
                }
                Ok(self.source_stream(ti))
            }
        }
    }

    /// Plans one query (a view's, a CTE's or an INSERT's) into a stream.
    fn plan_query(
        &mut self,
        mut query: Query,
        start: Position,
        scoped: &HashMap<String, Stream>,
    ) -> Result<Stream> {
        check_streamable_query(&query)?;
        // A WITH clause's queries are planned first, visible to this query only.
        let mut scope = scoped.clone();
        if let Some(with) = query.with.take() {
            if with.recursive {
                return Err(SqlError::refused(
                    span_pos(&with.with_token.0).or(Some(start)),
                    "WITH RECURSIVE cannot run on a stream",
                ));
            }
            for cte in with.cte_tables {
                let name = cte.alias.name.value.to_ascii_lowercase();
                let sp = cte.alias.name.span.start;
                let at = if sp.line > 0 {
                    Position::new(sp.line, sp.column)
                } else {
                    start
                };
                if !cte.alias.columns.is_empty() {
                    return Err(SqlError::refused(
                        at,
                        "a column list after a WITH name is not supported; name the columns in its SELECT",
                    ));
                }
                let s = self.plan_query(*cte.query, at, &scope)?;
                scope.insert(name, s);
            }
        }
        self.planned += 1;
        // Positions are taken before window calls are rewritten (which loses theirs).
        let join_at = join_position(&query).unwrap_or(start);
        let mut rewrite = Rewrite::default();
        let prefix = format!("{WINDOW_PREFIX}{}_", self.planned);
        rewrite_query(&mut query, &mut rewrite, &prefix)?;

        let mut leaves: HashMap<String, Leaf> = HashMap::new();
        for t in rewrite.tables.clone() {
            if leaves.contains_key(&t.name) {
                continue;
            }
            let s = self.named_stream(&t.name, t.position, &scope)?;
            leaves.insert(t.name.clone(), Leaf::Stream(s));
        }
        for w in rewrite.windows.clone() {
            crate::rules::check_window(self.max_windows, &w)?;
            let input = self.named_stream(&w.source, w.source_position, &scope)?;
            input.stream_only(w.source_position, "windowed")?;
            let is_table =
                !scope.contains_key(&w.source) && !self.views.iter().any(|v| v.name == w.source);
            let (time_column, delay_ms) = if is_table {
                let (_, def) = self
                    .table(&w.source)
                    .ok_or_else(|| SqlError::Internal(format!("lost table {}", w.source)))?;
                check_window_column(&w, def)?;
                let c = input.schema.index_of(&w.time_column).map_err(|_| {
                    SqlError::refused(
                        w.time_position,
                        format!("table {} has no column {}", w.source, w.time_column),
                    )
                })?;
                (c, def.watermark.as_ref().map_or(0, |wm| wm.delay_ms))
            } else {
                let c = input.schema.index_of(&w.time_column).map_err(|_| {
                    SqlError::refused(
                        w.time_position,
                        format!("{} has no column {}", w.source, w.time_column),
                    )
                })?;
                match input.attrs[c] {
                    Some(TimeAttr::Event) => {}
                    Some(TimeAttr::WindowStart(k)) | Some(TimeAttr::WindowEnd(k))
                        if !matches!(k, sluice_runtime::WindowKind::Session { .. }) => {}
                    _ => {
                        return Err(SqlError::refused(
                            w.time_position,
                            format!(
                                "column {} of {} is not a time attribute (an event-time column with a watermark, or window_start / window_end of an earlier window), so windows over it would never close",
                                w.time_column, w.source
                            ),
                        ));
                    }
                }
                (c, 0)
            };
            leaves.insert(
                w.table_name.clone(),
                Leaf::Window {
                    input,
                    window: w.spec,
                    time_column,
                    delay_ms,
                },
            );
        }

        // Plan with DataFusion against stand-in tables.
        let ctx = planning_context();
        for (name, leaf) in &leaves {
            let schema = match leaf {
                Leaf::Stream(s) => s.schema.clone(),
                Leaf::Window { input, .. } => Arc::new(window_schema(&input.schema)),
            };
            ctx.register_table(
                name.as_str(),
                Arc::new(StreamTable {
                    name: name.clone(),
                    schema,
                }),
            )
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        }
        let state = ctx.state();
        let df_stmt = DfStatement::Statement(Box::new(Statement::Query(Box::new(query.clone()))));
        let logical = futures::executor::block_on(state.statement_to_plan(df_stmt))
            .map_err(|e| df_error(e, start))?;
        check_logical(&logical, start)?;
        let physical = futures::executor::block_on(state.create_physical_plan(&logical))
            .map_err(|e| df_error(e, start))?;
        let leaf = |name: &str| leaves.get(name).cloned();
        let lookups = &self.lookups;
        let lookup_ttl = |i: usize| {
            lookups
                .get(i)
                .and_then(|t| t.def.options.get("lookup.cache.ttl"))
                .and_then(|v| crate::parse_interval_text(v).ok())
                .unwrap_or(0)
        };
        let mut cx = Context {
            leaf: &leaf,
            lookup_ttl: &lookup_ttl,
            nodes: &mut self.nodes,
            edges: &mut self.edges,
            notes: &mut self.notes,
            ttl_ms: self.ttl_ms,
            group_by_at: group_by_position(&query).unwrap_or(start),
            at: join_at,
        };
        cx.translate(&physical)
    }
}
