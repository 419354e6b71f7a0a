//! First row per key (`ROW_NUMBER() OVER (PARTITION BY k ORDER BY t) = 1`): per key the
//! row with the least event time is held until the watermark passes it, then put out once
//! (with `row_number` 1); the key's later rows are dropped. Append-only and exact: a row
//! that could still come first would not be behind the watermark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, RecordBatch, RecordBatchOptions,
    TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::join_state::{KeyEncoder, null_columns, row_times, take_rows};
use crate::plan::FirstRowPlan;

#[derive(Clone, Copy)]
struct Held {
    time: i64,
    batch: u32,
    row: u32,
}

pub struct FirstRow {
    plan: FirstRowPlan,
    encoder: KeyEncoder,
    /// Keys whose first row has gone out, with that row's time.
    done: super::StateMap<Box<[u8]>, i64>,
    /// Per key, its earliest row so far (in `batches`).
    held: super::StateMap<Box<[u8]>, Held>,
    batches: Vec<RecordBatch>,
    watermark: Watermark,
    late: Arc<AtomicU64>,
}

impl FirstRow {
    pub fn new(plan: FirstRowPlan, late: Arc<AtomicU64>) -> Result<Self> {
        // PARTITION BY puts NULL keys in one partition.
        let encoder = KeyEncoder::new(&plan.keys, &plan.schema, true)?;
        Ok(FirstRow {
            plan,
            encoder,
            done: super::StateMap::default(),
            held: super::StateMap::default(),
            batches: Vec::new(),
            watermark: Watermark::MIN,
            late,
        })
    }

    fn insert(&mut self, batch: RecordBatch, check_late: bool) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.encoder.encode(&batch)?;
        let times = row_times(&batch, Some(self.plan.time_column), 0)?;
        let b = self.batches.len() as u32;
        let mut late = 0u64;
        for (i, &t) in times.iter().enumerate() {
            if check_late && t != i64::MAX && t < self.watermark.millis() {
                late += 1;
                continue;
            }
            let key = keys.key(i);
            if self.done.contains_key(key) {
                continue;
            }
            let held = Held {
                time: t,
                batch: b,
                row: i as u32,
            };
            match self.held.get_mut(key) {
                Some(h) if t < h.time => *h = held,
                Some(_) => {}
                None => {
                    self.held.insert(key.as_ref().into(), held);
                }
            }
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        self.batches.push(batch);
        Ok(())
    }

    /// The held rows in `order`, as one batch of the input's schema.
    fn rows(&self, order: &[(usize, usize)]) -> Result<RecordBatch> {
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        Ok(interleave_record_batch(&refs, order)?)
    }

    /// Rewrites the held rows into one batch, dropping rows no key holds.
    fn compact(&mut self) -> Result<()> {
        if self.held.is_empty() {
            self.batches.clear();
            return Ok(());
        }
        let total: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
        if self.held.len() * 2 > total {
            return Ok(());
        }
        let mut order = Vec::with_capacity(self.held.len());
        for h in self.held.values_mut() {
            order.push((h.batch as usize, h.row as usize));
            h.batch = 0;
            h.row = (order.len() - 1) as u32;
        }
        self.batches = vec![self.rows(&order)?];
        Ok(())
    }

    /// The snapshot's layout: the input's columns (nullable) and `done_key`, set on the
    /// rows that stand for a key already put out.
    fn saved_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .plan
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new("done_key", DataType::Binary, true));
        Arc::new(Schema::new(fields))
    }
}

impl Operator for FirstRow {
    fn name(&self) -> &str {
        "first row per key"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        self.insert(batch, true)
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            let wm = watermark.millis();
            let mut order = Vec::new();
            let done = &mut self.done;
            self.held.retain(|k, h| {
                if h.time <= wm || watermark == Watermark::MAX {
                    order.push((h.batch as usize, h.row as usize));
                    done.insert(k.clone(), h.time);
                    false
                } else {
                    true
                }
            });
            if let Some(ttl) = self.plan.ttl_ms {
                self.done.retain(|_, t| t.saturating_add(ttl) >= wm);
            }
            if !order.is_empty() {
                let rows = self.rows(&order)?;
                let mut cols = rows.columns().to_vec();
                cols.push(Arc::new(UInt64Array::from(vec![1u64; rows.num_rows()])));
                out.batch(RecordBatch::try_new(self.plan.output_schema.clone(), cols)?);
                self.compact()?;
            }
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let order: Vec<(usize, usize)> = self
            .held
            .values()
            .map(|h| (h.batch as usize, h.row as usize))
            .collect();
        let schema = self.saved_schema();
        let mut batches = Vec::new();
        if !order.is_empty() {
            let rows = self.rows(&order)?;
            let mut cols = rows.columns().to_vec();
            cols.push(Arc::new(BinaryArray::new_null(rows.num_rows())));
            batches.push(RecordBatch::try_new(schema.clone(), cols)?);
        }
        if !self.done.is_empty() {
            // A key already out: its bytes, and its row's time in the time column.
            let n = self.done.len();
            let mut cols = null_columns(&self.plan.schema, n);
            cols[self.plan.time_column] = Arc::new(TimestampMillisecondArray::from_iter_values(
                self.done.values().copied(),
            ));
            cols.push(Arc::new(BinaryArray::from_iter_values(
                self.done.keys().map(|k| k.as_ref()),
            )));
            batches.push(RecordBatch::try_new_with_options(
                schema,
                cols,
                &RecordBatchOptions::new().with_row_count(Some(n)),
            )?);
        }
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis() }),
            batches,
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
        let width = self.plan.schema.fields().len();
        for saved in state.batches {
            if saved.num_columns() != width + 1 {
                return Err(RuntimeError::Internal(
                    "first-row state does not fit this job".into(),
                ));
            }
            let done = saved
                .column(width)
                .as_binary_opt::<i32>()
                .ok_or_else(|| RuntimeError::Internal("first-row keys are unreadable".into()))?;
            let times = row_times(&saved, Some(self.plan.time_column), 0)?;
            let mut rows = Vec::new();
            for (r, &t) in times.iter().enumerate() {
                if done.is_null(r) {
                    rows.push(r as u32);
                } else {
                    self.done.insert(done.value(r).into(), t);
                }
            }
            if rows.is_empty() {
                continue;
            }
            let part = take_rows(&saved, &rows)?;
            let cols: Vec<ArrayRef> = part.columns()[..width].to_vec();
            self.insert(RecordBatch::try_new(self.plan.schema.clone(), cols)?, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Int64Type, TimeUnit, TimestampMillisecondType};
    use datafusion::physical_expr::expressions::Column;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Field::new("v", DataType::Int64, false),
        ]))
    }

    fn batch(rows: &[(i64, i64, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn rows(out: &mut Collector) -> Vec<(i64, i64, i64)> {
        let mut v = Vec::new();
        for m in out.take() {
            if let Message::Batch(b) = m {
                let k = b.column(0).as_primitive::<Int64Type>();
                let t = b.column(1).as_primitive::<TimestampMillisecondType>();
                let x = b.column(2).as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    v.push((k.value(i), t.value(i), x.value(i)));
                }
            }
        }
        v.sort();
        v
    }

    fn plan() -> FirstRowPlan {
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("rn", DataType::UInt64, false));
        FirstRowPlan {
            schema: schema(),
            keys: vec![Arc::new(Column::new("k", 0))],
            time_column: 1,
            ttl_ms: None,
            output_schema: Arc::new(Schema::new(fields)),
        }
    }

    #[test]
    fn with_a_ttl_a_key_out_long_ago_is_forgotten_and_first_again() {
        let late = Arc::new(AtomicU64::new(0));
        let mut p = plan();
        p.ttl_ms = Some(10);
        let mut op = FirstRow::new(p.clone(), late.clone()).unwrap();
        let mut out = Collector::default();
        op.process_batch(batch(&[(1, 5, 50), (2, 30, 300)]), &mut out)
            .unwrap();
        op.on_watermark(Watermark::from_millis(14), &mut out)
            .unwrap();
        assert_eq!(rows(&mut out), vec![(1, 5, 50)]);
        // Within the TTL key 1 is still out; past it (and through a checkpoint) it is
        // forgotten, so its next row is a first row again.
        op.process_batch(batch(&[(1, 15, 150)]), &mut out).unwrap();
        op.on_watermark(Watermark::from_millis(15), &mut out)
            .unwrap();
        assert_eq!(rows(&mut out), vec![]);
        let mut again = FirstRow::new(p, late).unwrap();
        again.restore(op.snapshot().unwrap()).unwrap();
        again
            .on_watermark(Watermark::from_millis(16), &mut out)
            .unwrap();
        again
            .process_batch(batch(&[(1, 20, 200)]), &mut out)
            .unwrap();
        again.on_watermark(Watermark::MAX, &mut out).unwrap();
        assert_eq!(rows(&mut out), vec![(1, 20, 200), (2, 30, 300)]);
    }

    #[test]
    fn each_keys_earliest_row_goes_out_once_the_watermark_passes_it() {
        let late = Arc::new(AtomicU64::new(0));
        let mut op = FirstRow::new(plan(), late.clone()).unwrap();
        let mut out = Collector::default();
        // Key 1's earliest row (t 5) arrives after a later one; key 2's at t 20.
        op.process_batch(batch(&[(1, 8, 80), (2, 20, 200), (1, 5, 50)]), &mut out)
            .unwrap();
        op.on_watermark(Watermark::from_millis(10), &mut out)
            .unwrap();
        assert_eq!(rows(&mut out), vec![(1, 5, 50)]);
        // Key 1 is done: its later rows go nowhere; a row behind the watermark is late.
        op.process_batch(batch(&[(1, 12, 120), (3, 9, 90)]), &mut out)
            .unwrap();
        assert_eq!(late.load(Ordering::Relaxed), 1);
        // A checkpoint keeps the held row and the keys already out.
        let state = op.snapshot().unwrap();
        let mut again = FirstRow::new(plan(), late).unwrap();
        again.restore(state).unwrap();
        again
            .process_batch(batch(&[(1, 15, 150), (2, 18, 180)]), &mut out)
            .unwrap();
        again.on_watermark(Watermark::MAX, &mut out).unwrap();
        assert_eq!(rows(&mut out), vec![(2, 18, 180)]);
    }
}
