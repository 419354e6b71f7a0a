//! Session window aggregate: rows are kept per group key until their session closes
//! (the watermark passes the last event plus the gap); then the session's rows are
//! aggregated once and emitted with the session's start and end.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::groups::{AggregateInput, GroupedAggregation, group_schema};
use crate::operators::sessions::Sessions;
use crate::plan::{AggregatePlan, WindowKind};

pub struct SessionAggregate {
    plan: AggregatePlan,
    gap_ms: i64,
    sessions: Sessions,
    group_schema: SchemaRef,
    start_col: Option<usize>,
    end_col: Option<usize>,
}

impl SessionAggregate {
    pub fn new(plan: AggregatePlan, late: Arc<AtomicU64>) -> Result<Self> {
        let WindowKind::Session { gap_ms } = plan.window else {
            return Err(RuntimeError::Internal("not a session window".into()));
        };
        let sessions = Sessions::new(gap_ms, plan.key_exprs(), &plan.input_schema, late)?;
        let group_schema = group_schema(&plan)?;
        let start_col = plan.input_schema.index_of("window_start").ok();
        let end_col = plan.input_schema.index_of("window_end").ok();
        Ok(SessionAggregate {
            plan,
            gap_ms,
            sessions,
            group_schema,
            start_col,
            end_col,
        })
    }

    /// Keeps a batch's rows at the time their window key says (its start, or its end
    /// less the gap).
    fn insert(&mut self, batch: RecordBatch, check_late: bool) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let win = self.plan.group_exprs[self.plan.window_key]
            .evaluate(&batch)?
            .into_array(n)?;
        let win = win
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal("window key is not a timestamp".into()))?
            .clone();
        let offset = if self.plan.window_key_is_end {
            self.gap_ms
        } else {
            0
        };
        self.sessions.insert(batch, &win, offset, check_late)
    }
}

impl Operator for SessionAggregate {
    fn name(&self) -> &str {
        "session aggregate"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        self.insert(batch, true)
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        self.sessions.snapshot()
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        self.sessions.restore_watermark(&state);
        for b in state.batches {
            self.insert(b, false)?;
        }
        Ok(())
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
