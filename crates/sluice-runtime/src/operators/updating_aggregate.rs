//! GROUP BY without a window: an updating result. Rows change their groups as they
//! arrive; at each barrier every group that changed goes out once (its old row taken
//! back, its new one put in), so output follows the changed keys, not the events. Over
//! an append-only input the aggregates are incremental; over a changelog they are
//! recomputed from the group's live rows, so any aggregate takes retractions.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Epoch, Message, Watermark};

use crate::error::Result;
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::retracting_groups::RetractingGroups;
use crate::operators::running_groups::RunningGroups;
use crate::plan::AggregatePlan;

enum Groups {
    Running(RunningGroups),
    Retracting(RetractingGroups),
}

pub struct UpdatingAggregate {
    groups: Groups,
    ttl_ms: Option<i64>,
    watermark: Watermark,
    keys_held: Arc<AtomicI64>,
}

impl UpdatingAggregate {
    pub fn new(plan: AggregatePlan, keys_held: Arc<AtomicI64>) -> Result<Self> {
        let ttl_ms = plan.ttl_ms;
        let groups = if plan.input_updating {
            Groups::Retracting(RetractingGroups::new(plan)?)
        } else {
            Groups::Running(RunningGroups::new(plan)?)
        };
        Ok(UpdatingAggregate {
            groups,
            ttl_ms,
            watermark: Watermark::MIN,
            keys_held,
        })
    }

    fn held(&self) -> usize {
        match &self.groups {
            Groups::Running(g) => g.len(),
            Groups::Retracting(g) => g.len(),
        }
    }

    fn flush(&mut self, out: &mut Collector) -> Result<()> {
        let wm = self.watermark.millis();
        let changes = match &mut self.groups {
            Groups::Running(g) => g.flush(wm, self.ttl_ms)?,
            Groups::Retracting(g) => g.flush(wm, self.ttl_ms)?,
        };
        if let Some(b) = changes {
            out.batch(b);
        }
        self.keys_held.store(self.held() as i64, Ordering::Relaxed);
        Ok(())
    }
}

impl Operator for UpdatingAggregate {
    fn name(&self) -> &str {
        "updating aggregate"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        let wm = self.watermark.millis();
        match &mut self.groups {
            Groups::Running(g) => g.update(&batch, wm)?,
            Groups::Retracting(g) => g.update(&batch, wm)?,
        }
        self.keys_held.store(self.held() as i64, Ordering::Relaxed);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
        }
        // A bounded input read to its end: its final result goes out now.
        if watermark == Watermark::MAX {
            self.flush(out)?;
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }

    fn before_barrier(&mut self, _epoch: Epoch, out: &mut Collector) -> Result<()> {
        self.flush(out)
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let batch = match &mut self.groups {
            Groups::Running(g) => g.snapshot()?,
            Groups::Retracting(g) => g.snapshot()?,
        };
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis() }),
            batches: vec![batch],
        })
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        if let Some(wm) = state
            .values
            .get("watermark")
            .and_then(serde_json::Value::as_i64)
        {
            self.watermark = Watermark::from_millis(wm);
        }
        if let Some(batch) = state.batches.first() {
            match &mut self.groups {
                Groups::Running(g) => g.restore(batch)?,
                Groups::Retracting(g) => g.restore(batch)?,
            }
        }
        self.keys_held.store(self.held() as i64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::functions_aggregate::count::count_udaf;
    use datafusion::functions_aggregate::min_max::max_udaf;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::{Column, lit};
    use sluice_types::changelog::{op_column, with_op};
    use sluice_types::{Epoch, RowKind};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    /// `SELECT k, count(*) AS n, max(v) AS top FROM t GROUP BY k`.
    fn plan(input_updating: bool, ttl_ms: Option<i64>) -> AggregatePlan {
        let s = schema();
        let v: Arc<dyn datafusion::physical_plan::PhysicalExpr> = Arc::new(Column::new("v", 1));
        let count = AggregateExprBuilder::new(count_udaf(), vec![lit(1i64)])
            .schema(s.clone())
            .alias("n")
            .build()
            .unwrap();
        let max = AggregateExprBuilder::new(max_udaf(), vec![v])
            .schema(s.clone())
            .alias("top")
            .build()
            .unwrap();
        AggregatePlan {
            window: None,
            input_schema: s,
            group_exprs: vec![Arc::new(Column::new("k", 0))],
            window_key: 0,
            window_key_is_end: false,
            aggregates: vec![Arc::new(count), Arc::new(max)],
            filters: vec![None, None],
            output_schema: Arc::new(Schema::new(vec![
                Field::new("k", DataType::Utf8, false),
                Field::new("n", DataType::Int64, false),
                Field::new("top", DataType::Int64, true),
            ])),
            input_updating,
            ttl_ms,
        }
    }

    fn rows(keys: &[&str], values: &[i64], op: Option<RowKind>) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(keys.to_vec())),
            Arc::new(Int64Array::from(values.to_vec())),
        ];
        let schema = match op {
            Some(k) => {
                cols.push(op_column(k, keys.len()));
                with_op(&schema())
            }
            None => schema(),
        };
        RecordBatch::try_new(schema, cols).unwrap()
    }

    /// What goes out at a barrier, one `k n top op` line per row, ordered
    /// by key (groups may go out in any order; a key's own rows keep theirs).
    fn barrier(op: &mut UpdatingAggregate, epoch: u64) -> Vec<String> {
        let mut out = Collector::default();
        op.before_barrier(Epoch(epoch), &mut out).unwrap();
        let batches: Vec<RecordBatch> = out
            .take()
            .into_iter()
            .filter_map(|m| match m {
                Message::Batch(b) => Some(b),
                _ => None,
            })
            .collect();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("__op"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        // A stable sort on the key alone keeps each update's -U before its +U.
        lines.sort_by(|a, b| a.split(' ').next().cmp(&b.split(' ').next()));
        lines
    }

    fn push(op: &mut UpdatingAggregate, batch: RecordBatch) {
        op.process_batch(batch, &mut Collector::default()).unwrap();
    }

    #[test]
    fn each_changed_group_goes_out_once_per_barrier_as_an_update_and_survives_a_restore() {
        let held = Arc::new(AtomicI64::new(0));
        let mut op = UpdatingAggregate::new(plan(false, None), held.clone()).unwrap();
        push(&mut op, rows(&["a", "a", "b"], &[1, 5, 2], None));
        push(&mut op, rows(&["a"], &[4], None));
        assert_eq!(barrier(&mut op, 1), vec!["a 3 5 0", "b 1 2 0"]);
        assert_eq!(held.load(Ordering::Relaxed), 2);
        // Nothing changed: nothing goes out.
        assert!(barrier(&mut op, 2).is_empty());
        push(&mut op, rows(&["a"], &[3], None));
        assert_eq!(barrier(&mut op, 3), vec!["a 3 5 1", "a 4 5 2"]);
        // A group whose values do not change puts nothing out... but count always does.
        let state = op.snapshot().unwrap();
        let mut again = UpdatingAggregate::new(plan(false, None), held.clone()).unwrap();
        again.restore(state).unwrap();
        push(&mut again, rows(&["a", "c"], &[9, 1], None));
        assert_eq!(
            barrier(&mut again, 4),
            vec!["a 4 5 1", "a 5 9 2", "c 1 1 0"]
        );
    }

    #[test]
    fn over_a_changelog_retractions_take_rows_back_and_an_empty_group_is_deleted() {
        let held = Arc::new(AtomicI64::new(0));
        let mut op = UpdatingAggregate::new(plan(true, None), held.clone()).unwrap();
        push(
            &mut op,
            rows(&["a", "a", "b"], &[1, 5, 2], Some(RowKind::Insert)),
        );
        assert_eq!(barrier(&mut op, 1), vec!["a 2 5 0", "b 1 2 0"]);
        // The 5 is taken back: the maximum falls back to 1 (a plain max could not).
        push(&mut op, rows(&["a"], &[5], Some(RowKind::UpdateBefore)));
        push(&mut op, rows(&["a"], &[0], Some(RowKind::UpdateAfter)));
        assert_eq!(barrier(&mut op, 2), vec!["a 2 5 1", "a 2 1 2"]);
        let state = op.snapshot().unwrap();
        let mut again = UpdatingAggregate::new(plan(true, None), held.clone()).unwrap();
        again.restore(state).unwrap();
        push(&mut again, rows(&["b"], &[2], Some(RowKind::Delete)));
        assert_eq!(barrier(&mut again, 3), vec!["b 1 2 3"]);
        assert_eq!(held.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_group_unchanged_for_the_ttl_of_event_time_is_deleted_and_forgotten() {
        let held = Arc::new(AtomicI64::new(0));
        let mut op = UpdatingAggregate::new(plan(false, Some(1_000)), held.clone()).unwrap();
        let mut out = Collector::default();
        op.on_watermark(Watermark::from_millis(0), &mut out)
            .unwrap();
        push(&mut op, rows(&["a", "b"], &[1, 2], None));
        assert_eq!(barrier(&mut op, 1), vec!["a 1 1 0", "b 1 2 0"]);
        op.on_watermark(Watermark::from_millis(600), &mut out)
            .unwrap();
        push(&mut op, rows(&["b"], &[3], None));
        assert_eq!(barrier(&mut op, 2), vec!["b 1 2 1", "b 2 3 2"]);
        op.on_watermark(Watermark::from_millis(1_000), &mut out)
            .unwrap();
        assert_eq!(barrier(&mut op, 3), vec!["a 1 1 3"]);
        assert_eq!(held.load(Ordering::Relaxed), 1);
        // A forgotten group starts again from nothing.
        push(&mut op, rows(&["a"], &[7], None));
        assert_eq!(barrier(&mut op, 4), vec!["a 1 7 0"]);
    }
}
