//! One `INSERT INTO sink SELECT …`: the query planned into a stream, the sink's schema
//! checked, and an edge from every branch of the stream to the sink.

use std::collections::HashMap;

use datafusion::sql::sqlparser::ast::{Insert, Statement, TableObject};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use sluice_runtime::{Consumer, EdgeSpec};

use super::Planner;
use super::physical::carry_op;
use super::sink_schema::{describe_schema, same_types, sink_schema_for};
use crate::error::{Result, SqlError};
use crate::graph::{InsertInfo, SinkTable};
use crate::statements::RawStatement;
use crate::window::span_pos;

impl Planner<'_> {
    pub(super) fn plan_insert(&mut self, stmt: &RawStatement) -> Result<()> {
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
                format!(
                    "INSERT INTO {sink_name_s}: no such table; declare it with CREATE TABLE, or take it from a catalog file that does (--catalog)"
                ),
            ));
        };
        if !columns.is_empty() {
            return Err(SqlError::refused(
                span_pos(&columns[0]).unwrap_or(sink_pos),
                "a column list after INSERT INTO is not supported; name and order the columns in the SELECT",
            ));
        }
        let Some(query) = source else {
            return Err(SqlError::refused(start, "INSERT needs a SELECT"));
        };
        if self.source_index.contains_key(&sink_ti) {
            return Err(SqlError::refused(
                sink_pos,
                format!(
                    "table {sink_name_s} is read by another statement and cannot also be written"
                ),
            ));
        }
        let query = *query;
        let stream = self.plan_query(query.clone(), start, &HashMap::new())?;
        if self.source_index.contains_key(&sink_ti) {
            return Err(SqlError::refused(
                sink_pos,
                format!("table {sink_name_s} is both read and written by this statement"),
            ));
        }
        stream.stream_only(start, "written to a sink as it is")?;
        if stream.unsessioned {
            return Err(SqlError::refused(
                start,
                "rows of SESSION(…) need a GROUP BY with aggregates, or a window join, before a sink (a session is only known when it closes)",
            ));
        }
        let (sink_schema, cast_stage) = sink_schema_for(sink_def, &stream.schema, &query)?;
        if stream.updating {
            let key: Option<Vec<String>> = stream.unique_key.as_ref().map(|k| {
                k.iter()
                    .map(|&i| sink_schema.field(i).name().clone())
                    .collect()
            });
            self.catalog
                .check_changelog_sink(&sink_def.options, key.as_deref())
                .map_err(|why| {
                    SqlError::refused(
                        sink_pos,
                        format!(
                            "INSERT INTO {sink_name_s}: the query's result is updating (a GROUP BY without a window changes its rows as events arrive), and {why}"
                        ),
                    )
                })?;
        }
        // The cast stage sees the query's columns; a changelog's `__op` rides after them.
        let cast_stage = cast_stage.map(|step| {
            if stream.updating {
                carry_op(step, stream.schema.fields().len())
            } else {
                step
            }
        });
        let sink = match self.sink_index.get(&sink_ti) {
            Some(&i) => {
                if self.sinks[i].changelog != stream.updating {
                    return Err(SqlError::refused(
                        sink_pos,
                        format!(
                            "{sink_name_s} is written by an earlier statement with an {} result; this one's is {}: write them to separate tables",
                            if stream.updating {
                                "append-only"
                            } else {
                                "updating"
                            },
                            if stream.updating {
                                "updating"
                            } else {
                                "append-only"
                            },
                        ),
                    ));
                }
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
                    changelog: stream.updating,
                });
                self.sink_index.insert(sink_ti, self.sinks.len() - 1);
                self.sinks.len() - 1
            }
        };
        for b in stream.branches {
            let mut steps = b.steps;
            steps.extend(cast_stage.clone());
            self.edges.push(EdgeSpec {
                from: b.from,
                steps,
                to: Consumer::Sink(sink),
                keys: Vec::new(),
            });
        }
        self.inserts.push(InsertInfo {
            position: start,
            sink,
            output_schema: sink_schema,
        });
        Ok(())
    }
}
