//! The sink side: what a connector implements to receive a job's results, and the
//! hooks a transactional sink uses to write each epoch exactly once.

use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Epoch, Watermark};

use crate::error::Result;

/// Rows of epochs not yet committed, oldest first.
pub type PendingEpochs = Vec<(Epoch, Vec<RecordBatch>)>;

/// What a sink keeps in a checkpoint: rows of epochs it has not committed yet, and small
/// values of its own (how long its output file was, which part files wait for commit).
#[derive(Debug, Default, Clone)]
pub struct SinkState {
    pub pending: PendingEpochs,
    pub values: serde_json::Value,
}

impl From<PendingEpochs> for SinkState {
    fn from(pending: PendingEpochs) -> Self {
        SinkState {
            pending,
            values: serde_json::Value::Null,
        }
    }
}

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

    /// A barrier: rows written since the last one belong to `epoch`. Returns what the
    /// checkpoint must keep for the sink: every epoch's rows not yet committed, and its
    /// own values. A sink that writes as rows arrive makes them durable here (flushes
    /// and checks delivery), so that a completed checkpoint never loses them.
    fn pre_commit(&mut self, _epoch: Epoch) -> Result<SinkState> {
        Ok(SinkState::default())
    }

    /// The checkpoint of `epoch` is durable: commit every epoch up to it.
    fn commit(&mut self, _epoch: Epoch) -> Result<()> {
        Ok(())
    }

    /// After a restore of checkpoint `checkpoint`, before any row: what that checkpoint
    /// kept for the sink. The sink commits the epochs newer than what it has committed,
    /// skips the rest, and puts its output back to how the checkpoint saw it.
    fn recover(&mut self, _checkpoint: Epoch, _saved: SinkState) -> Result<()> {
        Ok(())
    }

    /// The job has ended (or is stopping): flush and close.
    fn finish(&mut self) -> Result<()>;
}
