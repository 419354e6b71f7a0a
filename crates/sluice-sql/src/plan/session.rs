//! The DataFusion side of planning: the session a query is planned in, the stand-in
//! table of a window call, positions the planner reports, and DataFusion's errors as
//! refusals.

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{Query, SetExpr};
use sluice_types::Position;

use super::WINDOW_PREFIX;
use crate::ddl::TIMESTAMP_TYPE;
use crate::error::SqlError;
use crate::window::span_pos;

/// Where the first JOIN of the query's outermost SELECT is.
pub(super) fn join_position(query: &Query) -> Option<Position> {
    if let SetExpr::Select(select) = query.body.as_ref() {
        for twj in &select.from {
            if let Some(j) = twj.joins.first() {
                return span_pos(&j.relation);
            }
        }
    }
    None
}

pub(super) fn planning_context() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().optimizer.repartition_aggregations = false;
    config.options_mut().optimizer.join_reordering = false;
    config.options_mut().optimizer.prefer_hash_join = true;
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
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .build();
    crate::functions::install(&mut state).expect("the planning session takes Sluice's functions");
    SessionContext::new_with_state(state)
}

pub(super) fn window_schema(source: &Schema) -> Schema {
    let mut fields: Vec<Field> = source.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("window_start", TIMESTAMP_TYPE, false));
    fields.push(Field::new("window_end", TIMESTAMP_TYPE, false));
    Schema::new(fields)
}

/// A DataFusion planning error as a sentence with the position DataFusion found.
pub(super) fn df_error(e: DataFusionError, fallback: Position) -> SqlError {
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
