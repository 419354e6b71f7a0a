//! The sink side: what a connector implements to receive a job's results, and the
//! hooks a transactional sink uses to write each epoch exactly once.

use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Epoch, Watermark};

use crate::error::Result;

/// Rows of epochs not yet committed, oldest first.
pub type PendingEpochs = Vec<(Epoch, Vec<RecordBatch>)>;

/// A connector that receives rows.
///
/// A transactional sink holds the rows it is given until [`Sink::pre_commit`] seals
/// them as an epoch's, and writes them only on [`Sink::commit`], which the runtime calls
/// once that epoch's checkpoint is durable. Other sinks write as rows arrive.
pub trait Sink: Send {
    /// Called once before any row, with the job's name and the sink table's name.
    /// Returns the newest epoch this sink has committed before (from its own store), if
    /// it keeps one.
    fn open(&mut self, _job: &str, _table: &str) -> Result<Option<Epoch>> {
        Ok(None)
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()>;

    /// All rows up to this watermark have been written.
    fn on_watermark(&mut self, _watermark: Watermark) -> Result<()> {
        Ok(())
    }

    /// A barrier: rows written since the last one belong to `epoch`. Returns every
    /// epoch's rows not yet committed, to be kept in the checkpoint.
    fn pre_commit(&mut self, _epoch: Epoch) -> Result<PendingEpochs> {
        Ok(Vec::new())
    }

    /// The checkpoint of `epoch` is durable: commit every epoch up to it.
    fn commit(&mut self, _epoch: Epoch) -> Result<()> {
        Ok(())
    }

    /// After a restore: rows of epochs that a checkpoint held uncommitted. The sink
    /// commits those newer than what it has committed, and skips the rest.
    fn recover(&mut self, _pending: PendingEpochs) -> Result<()> {
        Ok(())
    }

    /// The job has ended (or is stopping): flush and close.
    fn finish(&mut self) -> Result<()>;
}
