//! The sink side: what a connector implements to receive a job's results.

use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::Watermark;

use crate::error::Result;

/// A connector that receives rows.
pub trait Sink: Send {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()>;

    /// All rows up to this watermark have been written.
    fn on_watermark(&mut self, _watermark: Watermark) -> Result<()> {
        Ok(())
    }

    /// The job has ended (or is stopping): flush and close.
    fn finish(&mut self) -> Result<()>;
}
