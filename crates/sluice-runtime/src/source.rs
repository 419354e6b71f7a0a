//! The source side: what a connector implements, and the watermark generator that
//! follows every source.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::Watermark;

use crate::error::{Result, RuntimeError};

/// A connector that produces rows.
pub trait Source: Send {
    fn schema(&self) -> SchemaRef;

    /// The next batch, or `None` when a bounded source has ended.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
}

/// Largest event time seen minus the declared delay, never going backwards.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    column: usize,
    delay_ms: i64,
    max_event: Option<i64>,
    current: Watermark,
}

impl WatermarkGenerator {
    pub fn new(column: usize, delay_ms: i64) -> Self {
        WatermarkGenerator {
            column,
            delay_ms,
            max_event: None,
            current: Watermark::MIN,
        }
    }

    /// Observes a batch; returns the new watermark if it advanced.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<Option<Watermark>> {
        let col = batch.column(self.column);
        let times = col
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal(format!("event time is {}", col.data_type())))?;
        let Some(max) = datafusion::arrow::compute::max(times) else {
            return Ok(None);
        };
        let max = self.max_event.map_or(max, |m| m.max(max));
        self.max_event = Some(max);
        let wm = Watermark::from_max_event_time(max, self.delay_ms);
        if wm > self.current {
            self.current = wm;
            Ok(Some(wm))
        } else {
            Ok(None)
        }
    }

    pub fn current(&self) -> Watermark {
        self.current
    }
}
