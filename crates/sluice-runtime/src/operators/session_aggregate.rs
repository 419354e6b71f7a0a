//! Session window aggregate: rows are kept per group key until their session closes
//! (the watermark passes the last event plus the gap); then the session's rows are
//! aggregated once and emitted with the session's start and end.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::groups::{AggregateInput, GroupedAggregation, group_schema};
use crate::operators::sessions::Sessions;
use crate::plan::{AggregatePlan, WindowKind};

pub struct SessionAggregate {
    plan: AggregatePlan,
    sessions: Sessions,
    group_schema: SchemaRef,
    start_col: Option<usize>,
    end_col: Option<usize>,
}

impl SessionAggregate {
    pub fn new(plan: AggregatePlan, late: Arc<AtomicU64>) -> Result<Self> {
        let Some(WindowKind::Session { gap_ms }) = plan.window else {
            return Err(RuntimeError::Internal("not a session window".into()));
        };
        // A row's time: its window key (the start, or the end less the gap).
        let time = (
            plan.group_exprs[plan.window_key].clone(),
            if plan.window_key_is_end { gap_ms } else { 0 },
        );
        let sessions = Sessions::new(gap_ms, plan.key_exprs(), time, &plan.input_schema, late)?;
        let group_schema = group_schema(&plan)?;
        let start_col = plan.input_schema.index_of("window_start").ok();
        let end_col = plan.input_schema.index_of("window_end").ok();
        Ok(SessionAggregate {
            plan,
            sessions,
            group_schema,
            start_col,
            end_col,
        })
    }
}

impl Operator for SessionAggregate {
    fn name(&self) -> &str {
        "session aggregate"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        self.sessions.insert(batch, true)
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        self.sessions.snapshot()
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        self.sessions.restore(state)
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if let Some(closed) = self.sessions.advance(watermark)? {
            let rows = closed.with_bounds(self.start_col, self.end_col)?;
            let mut agg = GroupedAggregation::new(&self.plan, &self.group_schema)?;
            agg.update(&AggregateInput::evaluate(&self.plan, &rows)?)?;
            out.batch(agg.emit()?);
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }
}
