//! Window assignment: stamps each source row with `window_start`/`window_end`
//! (one copy per window for HOP), drops rows whose windows have all closed (late), and
//! keeps only the columns the query reads.
//!
//! Lateness is judged per row against the watermark as it stood just before that row
//! (largest earlier event time minus the delay), so the outcome does not depend on how
//! the input happened to be cut into batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{ArrayRef, AsArray, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::TimestampMillisecondType;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use sluice_types::Watermark;

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::plan::{AssignSpec, WindowKind};

pub struct AssignWindows {
    spec: AssignSpec,
    late: Arc<AtomicU64>,
    max_event: i64,
    watermark: i64,
}

impl AssignWindows {
    pub fn new(spec: AssignSpec, late: Arc<AtomicU64>) -> Self {
        AssignWindows {
            spec,
            late,
            max_event: i64::MIN,
            watermark: i64::MIN,
        }
    }

    fn project(&self, columns: &[ArrayRef], n: usize) -> Result<RecordBatch> {
        let cols = self
            .spec
            .projection
            .iter()
            .map(|&i| columns[i].clone())
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(n));
        Ok(RecordBatch::try_new_with_options(
            self.spec.schema.clone(),
            cols,
            &options,
        )?)
    }
}

impl Operator for AssignWindows {
    fn name(&self) -> &str {
        "assign windows"
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let (Some(window), Some(tcol)) = (self.spec.window, self.spec.time_column) else {
            let n = batch.num_rows();
            let cols = batch.columns().to_vec();
            out.batch(self.project(&cols, n)?);
            return Ok(());
        };
        let times = batch
            .column(tcol)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal("event time is not a timestamp".into()))?;
        let delay = self.spec.delay_ms;
        let mut take_idx: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut starts: Vec<i64> = Vec::with_capacity(batch.num_rows());
        let mut ends: Vec<i64> = Vec::with_capacity(batch.num_rows());
        let mut late = 0u64;
        let mut null_times = 0u64;
        for (row, t) in times.iter().enumerate() {
            let Some(t) = t else {
                null_times += 1;
                continue;
            };
            let wm = if self.spec.per_row_lateness {
                self.watermark.max(self.max_event.saturating_sub(delay))
            } else {
                self.watermark
            };
            if window.is_late(t, wm) {
                late += 1;
            } else {
                match window {
                    WindowKind::Tumble { size_ms } => {
                        let s = t.div_euclid(size_ms) * size_ms;
                        take_idx.push(row as u32);
                        starts.push(s);
                        ends.push(s + size_ms);
                    }
                    WindowKind::Hop { slide_ms, size_ms } => {
                        let mut s = t.div_euclid(slide_ms) * slide_ms;
                        while s > t - size_ms {
                            if s + size_ms > wm {
                                take_idx.push(row as u32);
                                starts.push(s);
                                ends.push(s + size_ms);
                            }
                            s -= slide_ms;
                        }
                    }
                    WindowKind::Session { gap_ms } => {
                        take_idx.push(row as u32);
                        starts.push(t);
                        ends.push(t + gap_ms);
                    }
                }
            }
            self.max_event = self.max_event.max(t);
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        if null_times > 0 {
            // A row without an event time belongs to no window: dropped like a late row.
            self.late.fetch_add(null_times, Ordering::Relaxed);
        }
        let n = take_idx.len();
        if n == 0 {
            return Ok(());
        }
        let identity =
            n == batch.num_rows() && take_idx.iter().enumerate().all(|(i, &r)| i as u32 == r);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 2);
        let source_cols_needed = |i: usize| self.spec.projection.contains(&i);
        if identity {
            columns.extend(batch.columns().iter().cloned());
        } else {
            let idx = UInt32Array::from(take_idx);
            for (i, c) in batch.columns().iter().enumerate() {
                if source_cols_needed(i) {
                    columns.push(take(c.as_ref(), &idx, None)?);
                } else {
                    columns.push(c.clone()); // not projected: never read
                }
            }
        }
        columns.push(Arc::new(TimestampMillisecondArray::from(starts)));
        columns.push(Arc::new(TimestampMillisecondArray::from(ends)));
        out.batch(self.project(&columns, n)?);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        Ok(Snapshot {
            values: serde_json::json!({ "max_event": self.max_event, "watermark": self.watermark }),
            batches: Vec::new(),
        })
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        let get = |k: &str| state.values.get(k).and_then(serde_json::Value::as_i64);
        self.max_event = get("max_event").unwrap_or(i64::MIN);
        self.watermark = get("watermark").unwrap_or(i64::MIN);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark != Watermark::MAX {
            self.watermark = self.watermark.max(watermark.millis());
        }
        out.message(sluice_types::Message::Watermark(watermark));
        Ok(())
    }
}
