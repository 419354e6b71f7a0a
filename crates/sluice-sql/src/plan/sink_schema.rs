//! Sink schemas: the columns a statement writes, checked against a declared sink.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::physical_expr::expressions::{Column, cast};
use datafusion::sql::sqlparser::ast::{Query, SelectItem, SetExpr};
use sluice_types::Position;

use crate::ddl::TableDef;
use crate::error::{Result, SqlError};
use crate::window::span_pos;
use sluice_runtime::Step;

/// The sink's schema, and a stage casting the query's columns to it when it declares them.
pub(super) fn sink_schema_for(
    sink: &TableDef,
    query_schema: &SchemaRef,
    query: &Query,
) -> Result<(SchemaRef, Option<Step>)> {
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
        exprs.push(expr);
    }
    let stage = needed.then(|| Step::Project {
        exprs,
        schema: sink_schema.clone(),
    });
    Ok((sink_schema, stage))
}

/// Casts a user would accept implicitly: numbers widen or narrow among numbers, anything
/// to text, timestamps among timestamps.
pub(super) fn castable(from: &DataType, to: &DataType) -> bool {
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

pub(super) fn sql_type(t: &DataType) -> String {
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

pub(super) fn describe_schema(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), sql_type(f.data_type())))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn same_types(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.data_type() == y.data_type() && x.name() == y.name())
}
