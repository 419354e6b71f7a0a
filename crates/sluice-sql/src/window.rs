//! Finds `TUMBLE(t, col, size)`, `HOP(t, col, slide, size)` and `SESSION(t, col, gap)`
//! in FROM clauses and replaces each with a reference to a planner table that has the
//! source's columns plus `window_start` and `window_end`.

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Spanned,
    TableAlias, TableFactor, TableWithJoins,
};
use sluice_types::Position;

use crate::error::{Result, SqlError};
use crate::interval::interval_millis;
use sluice_runtime::WindowKind;

/// A window TVF found in the query.
#[derive(Debug, Clone)]
pub struct WindowCall {
    /// The name the planner table is registered under.
    pub table_name: String,
    pub source: String,
    pub source_position: Position,
    pub time_column: String,
    pub time_position: Position,
    pub spec: WindowKind,
}

/// A plain table referenced in FROM.
#[derive(Debug, Clone)]
pub struct TableRef {
    pub name: String,
    pub position: Position,
}

#[derive(Default, Debug)]
pub struct Rewrite {
    pub windows: Vec<WindowCall>,
    pub tables: Vec<TableRef>,
}

pub fn span_pos(node: &impl Spanned) -> Option<Position> {
    let s = node.span();
    (s.start.line > 0).then(|| Position::new(s.start.line, s.start.column))
}

/// Rewrites window TVFs in `query` (and its subqueries) in place.
pub fn rewrite_query(query: &mut Query, out: &mut Rewrite, prefix: &str) -> Result<()> {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            rewrite_query(&mut cte.query, out, prefix)?;
        }
    }
    rewrite_set_expr(&mut query.body, out, prefix)
}

fn rewrite_set_expr(body: &mut SetExpr, out: &mut Rewrite, prefix: &str) -> Result<()> {
    match body {
        SetExpr::Select(select) => {
            for twj in &mut select.from {
                rewrite_twj(twj, out, prefix)?;
            }
            Ok(())
        }
        SetExpr::Query(q) => rewrite_query(q, out, prefix),
        SetExpr::SetOperation { left, right, .. } => {
            rewrite_set_expr(left, out, prefix)?;
            rewrite_set_expr(right, out, prefix)
        }
        _ => Ok(()),
    }
}

fn rewrite_twj(twj: &mut TableWithJoins, out: &mut Rewrite, prefix: &str) -> Result<()> {
    rewrite_factor(&mut twj.relation, out, prefix)?;
    for j in &mut twj.joins {
        rewrite_factor(&mut j.relation, out, prefix)?;
    }
    Ok(())
}

fn rewrite_factor(factor: &mut TableFactor, out: &mut Rewrite, prefix: &str) -> Result<()> {
    match factor {
        TableFactor::Derived { subquery, .. } => rewrite_query(subquery, out, prefix),
        TableFactor::Table {
            name, args, alias, ..
        } => {
            let fname = name.to_string();
            let position = span_pos(name);
            let Some(targs) = args.take() else {
                out.tables.push(TableRef {
                    name: normalize(name),
                    position: position.unwrap_or_default(),
                });
                return Ok(());
            };
            let kind = fname.to_ascii_uppercase();
            let exprs: Vec<Expr> = targs
                .args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    other => Err(SqlError::refused(
                        span_pos(other).or(position),
                        format!("{kind}: unexpected argument {other}"),
                    )),
                })
                .collect::<Result<_>>()?;
            let usage = match kind.as_str() {
                "TUMBLE" => "TUMBLE(table, time_column, INTERVAL 'size')",
                "HOP" => "HOP(table, time_column, INTERVAL 'slide', INTERVAL 'size')",
                "SESSION" => "SESSION(table, time_column, INTERVAL 'gap')",
                _ => {
                    return Err(SqlError::refused(
                        position,
                        format!(
                            "unknown table function {fname}: the window functions are TUMBLE, HOP and SESSION"
                        ),
                    ));
                }
            };
            let want = if kind == "HOP" { 4 } else { 3 };
            if exprs.len() != want {
                return Err(SqlError::refused(
                    position,
                    format!("{kind} takes {want} arguments: {usage}"),
                ));
            }
            let (source, source_position) = ident_arg(&exprs[0], &kind, "table", position)?;
            let (time_column, time_position) =
                ident_arg(&exprs[1], &kind, "time column", position)?;
            let interval = |e: &Expr| {
                interval_millis(e).map_err(|m| {
                    SqlError::refused(span_pos(e).or(position), format!("{kind}: {m}"))
                })
            };
            let spec = match kind.as_str() {
                "TUMBLE" => WindowKind::Tumble {
                    size_ms: interval(&exprs[2])?,
                },
                "HOP" => {
                    let slide_ms = interval(&exprs[2])?;
                    let size_ms = interval(&exprs[3])?;
                    if size_ms % slide_ms != 0 {
                        return Err(SqlError::refused(
                            span_pos(&exprs[3]).or(position),
                            format!(
                                "HOP: the size ({size_ms} ms) must be a whole multiple of the slide ({slide_ms} ms)"
                            ),
                        ));
                    }
                    WindowKind::Hop { slide_ms, size_ms }
                }
                _ => WindowKind::Session {
                    gap_ms: interval(&exprs[2])?,
                },
            };
            let table_name = format!("{prefix}{}", out.windows.len());
            out.windows.push(WindowCall {
                table_name: table_name.clone(),
                source,
                source_position: source_position.or(position).unwrap_or_default(),
                time_column,
                time_position: time_position.or(position).unwrap_or_default(),
                spec,
            });
            *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(table_name))]);
            if alias.is_none() {
                // Columns keep their source's name: avg(iot.temperature), not avg(__sluice…).
                let source = out
                    .windows
                    .last()
                    .map(|w| w.source.clone())
                    .unwrap_or_default();
                *alias = Some(TableAlias {
                    at: None,
                    explicit: true,
                    name: Ident::new(source),
                    columns: vec![],
                });
            }
            Ok(())
        }
        TableFactor::NestedJoin {
            table_with_joins, ..
        } => rewrite_twj(table_with_joins, out, prefix),
        _ => Ok(()),
    }
}

fn normalize(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) if id.quote_style.is_none() => {
                id.value.to_ascii_lowercase()
            }
            ObjectNamePart::Identifier(id) => id.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn ident_arg(
    e: &Expr,
    kind: &str,
    what: &str,
    fallback: Option<Position>,
) -> Result<(String, Option<Position>)> {
    match e {
        Expr::Identifier(id) => Ok((
            if id.quote_style.is_none() {
                id.value.to_ascii_lowercase()
            } else {
                id.value.clone()
            },
            Some(Position::new(id.span.start.line, id.span.start.column))
                .filter(|p| p.line > 0)
                .or(fallback),
        )),
        other => Err(SqlError::refused(
            span_pos(other).or(fallback),
            format!("{kind}: the {what} must be a name, found {other}"),
        )),
    }
}
