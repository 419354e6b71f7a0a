//! Blackhole sink: takes every row and keeps none (for benchmarks and dry runs).

use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{Result, Sink};

pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        std::hint::black_box(batch.num_rows());
        Ok(())
    }

    /// It keeps nothing: no order to keep.
    fn ordered(&self) -> bool {
        false
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
