//! Session assignment: rows are kept per key until their session closes, then put out
//! one by one with their session's `window_start` and `window_end`, so that a later
//! operator (a window join) sees SESSION windows as it sees TUMBLE and HOP windows. Every
//! session that ends at or before a watermark goes out before that watermark does.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::PhysicalExpr;
use sluice_types::{Message, Watermark};

use crate::error::Result;
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::sessions::Sessions;
use crate::plan::SessionPlan;

pub struct SessionAssign {
    plan: SessionPlan,
    sessions: Sessions,
}

impl SessionAssign {
    pub fn new(plan: SessionPlan, late: Arc<AtomicU64>) -> Result<Self> {
        // The window-assignment step put each row's event time in its `window_start`.
        let start = plan.schema.field(plan.start_column).name();
        let time: Arc<dyn PhysicalExpr> = Arc::new(Column::new(start, plan.start_column));
        let sessions = Sessions::new(
            plan.gap_ms,
            plan.keys.clone(),
            (time, 0),
            &plan.schema,
            late,
        )?;
        Ok(SessionAssign { plan, sessions })
    }
}

impl Operator for SessionAssign {
    fn name(&self) -> &str {
        "session assignment"
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
            let (start, end) = (self.plan.start_column, self.plan.end_column);
            out.batch(closed.with_bounds(Some(start), Some(end))?);
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::TimestampMillisecondType;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::physical_expr::expressions::Column;

    fn schema() -> Arc<Schema> {
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
        ]))
    }

    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1 + 10),
                )),
            ],
        )
        .unwrap()
    }

    fn rows(out: &mut Collector) -> Vec<(i64, i64, i64)> {
        let mut v = Vec::new();
        for m in out.take() {
            if let Message::Batch(b) = m {
                let k = b
                    .column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let s = b.column(1).as_primitive::<TimestampMillisecondType>();
                let e = b.column(2).as_primitive::<TimestampMillisecondType>();
                for i in 0..b.num_rows() {
                    v.push((k.value(i), s.value(i), e.value(i)));
                }
            }
        }
        v.sort();
        v
    }

    #[test]
    fn rows_go_out_with_their_sessions_bounds_before_the_watermark_that_closes_them() {
        let plan = SessionPlan {
            gap_ms: 10,
            schema: schema(),
            keys: vec![Arc::new(Column::new("k", 0))],
            start_column: 1,
            end_column: 2,
        };
        let late = Arc::new(AtomicU64::new(0));
        let mut op = SessionAssign::new(plan, late.clone()).unwrap();
        let mut out = Collector::default();
        // Key 1: 0, 5, 12 are one session [0, 22); 40 another. Key 2: 3 alone [3, 13).
        op.process_batch(batch(&[(1, 0), (1, 12), (2, 3), (1, 40)]), &mut out)
            .unwrap();
        op.process_batch(batch(&[(1, 5)]), &mut out).unwrap();
        op.on_watermark(Watermark::from_millis(21), &mut out)
            .unwrap();
        assert_eq!(rows(&mut out), vec![(2, 3, 13)]);
        op.on_watermark(Watermark::from_millis(22), &mut out)
            .unwrap();
        assert_eq!(rows(&mut out), vec![(1, 0, 22); 3]);
        // A row whose session would already have closed is late.
        op.process_batch(batch(&[(2, 5)]), &mut out).unwrap();
        assert_eq!(late.load(std::sync::atomic::Ordering::Relaxed), 1);
        let state = op.snapshot().unwrap();
        let mut again = SessionAssign::new(op.plan.clone(), late).unwrap();
        again.restore(state).unwrap();
        again.on_watermark(Watermark::MAX, &mut out).unwrap();
        assert_eq!(rows(&mut out), vec![(1, 40, 50)]);
    }
}
