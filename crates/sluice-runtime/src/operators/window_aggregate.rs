//! Tumbling and hopping window aggregate: one group table per open window, fed
//! incrementally; a window's rows are emitted once, when the watermark passes its end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, AsArray, UInt32Array};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::groups::{AggregateInput, GroupedAggregation, group_schema};
use crate::plan::{AggregatePlan, WindowKind};

pub struct WindowAggregate {
    plan: AggregatePlan,
    size_ms: i64,
    group_schema: SchemaRef,
    /// Open windows by start.
    windows: BTreeMap<i64, GroupedAggregation>,
    watermark: Watermark,
    late: Arc<AtomicU64>,
}

impl WindowAggregate {
    pub fn new(plan: AggregatePlan, late: Arc<AtomicU64>) -> Result<Self> {
        let size_ms = match plan.window {
            Some(WindowKind::Tumble { size_ms } | WindowKind::Hop { size_ms, .. }) => size_ms,
            _ => {
                return Err(RuntimeError::Internal(
                    "the window aggregate takes tumbling and hopping windows".into(),
                ));
            }
        };
        let group_schema = group_schema(&plan)?;
        Ok(WindowAggregate {
            plan,
            size_ms,
            group_schema,
            windows: BTreeMap::new(),
            watermark: Watermark::MIN,
            late,
        })
    }

    fn window_of(&self, key: i64) -> i64 {
        if self.plan.window_key_is_end {
            key - self.size_ms
        } else {
            key
        }
    }

    fn open(&mut self, start: i64) -> Result<&mut GroupedAggregation> {
        if !self.windows.contains_key(&start) {
            let g = GroupedAggregation::new(&self.plan, &self.group_schema)?;
            self.windows.insert(start, g);
        }
        self.windows
            .get_mut(&start)
            .ok_or_else(|| RuntimeError::Internal("window vanished".into()))
    }

    /// Emits, in window order, every window whose end is at or before `wm`.
    fn close_until(&mut self, wm: Watermark, out: &mut Collector) -> Result<()> {
        while let Some(entry) = self.windows.first_entry() {
            if *entry.key() + self.size_ms > wm.millis() && wm != Watermark::MAX {
                break;
            }
            let g = entry.remove();
            out.batch(g.emit()?);
        }
        Ok(())
    }

    pub fn open_windows(&self) -> usize {
        self.windows.len()
    }
}

impl Operator for WindowAggregate {
    fn name(&self) -> &str {
        "window aggregate"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        let input = AggregateInput::evaluate(&self.plan, &batch)?;
        let keys = input.keys[self.plan.window_key]
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal("window key is not a timestamp".into()))?
            .clone();
        if keys.null_count() > 0 {
            return Err(RuntimeError::Internal("null window key".into()));
        }
        let values = keys.values();
        let Some(&first) = values.first() else {
            return Ok(());
        };
        let wm = self.watermark.millis();
        let size = self.size_ms;
        let closed = |start: i64| start + size <= wm;
        if values.iter().all(|&v| v == first) {
            let start = self.window_of(first);
            if closed(start) {
                self.late.fetch_add(values.len() as u64, Ordering::Relaxed);
                return Ok(());
            }
            return self.open(start)?.update(&input);
        }
        // Rows of several windows: split by window, preserving row order within each.
        let mut by_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (i, &v) in values.iter().enumerate() {
            by_window
                .entry(self.window_of(v))
                .or_default()
                .push(i as u32);
        }
        for (start, rows) in by_window {
            if closed(start) {
                self.late.fetch_add(rows.len() as u64, Ordering::Relaxed);
                continue;
            }
            let part = input.take(&UInt32Array::from(rows))?;
            self.open(start)?.update(&part)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.close_until(watermark, out)?;
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let mut starts = Vec::new();
        let mut batches = Vec::new();
        for (start, g) in self.windows.iter_mut() {
            starts.push(*start);
            batches.push(g.snapshot(&self.plan, &self.group_schema)?);
        }
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis(), "windows": starts }),
            batches,
        })
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        let wm = state
            .values
            .get("watermark")
            .and_then(serde_json::Value::as_i64);
        let starts: Vec<i64> = state
            .values
            .get("windows")
            .and_then(|w| serde_json::from_value(w.clone()).ok())
            .unwrap_or_default();
        if starts.len() != state.batches.len() {
            return Err(RuntimeError::Internal(format!(
                "window state lists {} windows but holds {}",
                starts.len(),
                state.batches.len()
            )));
        }
        self.watermark = wm.map_or(Watermark::MIN, Watermark::from_millis);
        for (start, batch) in starts.into_iter().zip(&state.batches) {
            let g = GroupedAggregation::restore(&self.plan, &self.group_schema, batch)?;
            self.windows.insert(start, g);
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        // End of input without a final watermark (a stop): open windows are incomplete
        // and are not emitted.
        out.message(Message::EndOfStream);
        Ok(())
    }
}
