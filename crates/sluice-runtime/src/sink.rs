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

/// What a sink that writes on commit holds: the rows since the last barrier, and the
/// sealed epochs waiting for their checkpoint to be durable, oldest first.
#[derive(Debug, Default, Clone)]
pub struct EpochBuffer {
    current: Vec<RecordBatch>,
    pending: PendingEpochs,
}

impl EpochBuffer {
    pub fn push(&mut self, batch: &RecordBatch) {
        self.current.push(batch.clone());
    }

    /// At a barrier: the rows since the last one become `epoch`'s. Returns every sealed
    /// epoch, for the checkpoint.
    pub fn seal(&mut self, epoch: Epoch) -> PendingEpochs {
        if !self.current.is_empty() {
            self.pending
                .push((epoch, std::mem::take(&mut self.current)));
        }
        self.pending.clone()
    }

    /// The sealed epochs up to `epoch` (whose checkpoint is durable), taken out in order.
    pub fn take_up_to(&mut self, epoch: Epoch) -> PendingEpochs {
        let n = self.pending.iter().take_while(|(e, _)| *e <= epoch).count();
        self.pending.drain(..n).collect()
    }
}

/// The epochs a restored checkpoint held that a sink has not committed (those after
/// `committed`, the newest epoch its own store says it committed), in order.
pub fn not_committed(committed: Option<u64>, held: PendingEpochs) -> PendingEpochs {
    held.into_iter()
        .filter(|(e, _)| committed.is_none_or(|c| e.0 > c))
        .collect()
}

/// Where a sink commits each epoch's rows together with a record that the epoch is
/// committed (PostgreSQL's progress row, a Kafka transaction's marker offset), all or
/// nothing, so that after a crash the store itself says which epochs it holds.
pub trait EpochStore: Send {
    /// Opens the store for the job's sink `table`; the newest epoch it has committed.
    fn open(&mut self, job: &str, table: &str) -> Result<Option<Epoch>>;

    /// The task's generation (a distributed worker's claim on it), set before `open`:
    /// the store refuses commits once a newer generation has opened it.
    fn fence(&mut self, _generation: u64) {}

    /// Writes `batches` as `epoch`, with the epoch's record, in one transaction.
    fn commit_epoch(&mut self, epoch: Epoch, batches: &[RecordBatch]) -> Result<()>;

    /// As [`Sink::ordered`].
    fn ordered(&self) -> bool {
        true
    }

    /// The job has ended or is stopping.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Exactly once over an [`EpochStore`]: rows are held until their epoch's checkpoint is
/// durable (and kept in it meanwhile), then committed; after a restore, the epochs the
/// checkpoint held that the store has not committed are committed first.
pub struct CommitOnCheckpoint<S> {
    store: S,
    table: String,
    rows: EpochBuffer,
    committed: Option<u64>,
}

impl<S: EpochStore> CommitOnCheckpoint<S> {
    pub fn new(store: S) -> Self {
        CommitOnCheckpoint {
            store,
            table: String::new(),
            rows: EpochBuffer::default(),
            committed: None,
        }
    }

    /// The newest epoch committed to the store, as far as this sink knows.
    pub fn committed(&self) -> Option<u64> {
        self.committed
    }

    fn commit_one(&mut self, epoch: Epoch, batches: &[RecordBatch]) -> Result<()> {
        self.store.commit_epoch(epoch, batches)?;
        self.committed = Some(self.committed.map_or(epoch.0, |c| c.max(epoch.0)));
        Ok(())
    }
}

impl<S: EpochStore> Sink for CommitOnCheckpoint<S> {
    fn fence(&mut self, generation: u64) {
        self.store.fence(generation);
    }

    fn open(&mut self, job: &str, table: &str) -> Result<Option<Epoch>> {
        self.table = table.to_string();
        self.committed = self.store.open(job, table)?.map(|e| e.0);
        Ok(self.committed.map(Epoch))
    }

    fn ordered(&self) -> bool {
        self.store.ordered()
    }

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.rows.push(batch);
        Ok(())
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<SinkState> {
        Ok(self.rows.seal(epoch).into())
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        for (e, batches) in self.rows.take_up_to(epoch) {
            self.commit_one(e, &batches)?;
        }
        Ok(())
    }

    fn recover(&mut self, _checkpoint: Epoch, saved: SinkState) -> Result<()> {
        for (e, batches) in not_committed(self.committed, saved.pending) {
            tracing::info!(table = %self.table, epoch = %e, "committing rows a checkpoint held");
            self.commit_one(e, &batches)?;
        }
        Ok(())
    }

    /// Rows not committed belong to no durable checkpoint: a restart replays them.
    fn finish(&mut self) -> Result<()> {
        self.store.close()
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

    /// The task's generation, set before `open` by a distributed worker: a sink that
    /// commits transactionally refuses to commit once a newer generation has opened it
    /// (a paused worker whose task moved elsewhere).
    fn fence(&mut self, _generation: u64) {}

    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Whether rows that several tasks send this sink must reach it in one order,
    /// whatever the parallelism: held until the watermark passes them and sorted by every
    /// column (a file's lines come out the same at any parallelism). A sink whose output
    /// has no order (a database table, a sink that only counts) says no and takes rows as
    /// they arrive, saving the hold and the sort. A changelog keeps its order either way.
    fn ordered(&self) -> bool {
        true
    }

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array};

    use super::*;

    fn rows(v: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v])) as ArrayRef)])
            .unwrap()
    }

    fn epochs(p: &PendingEpochs) -> Vec<u64> {
        p.iter().map(|(e, _)| e.0).collect()
    }

    #[test]
    fn sealed_epochs_wait_for_their_checkpoint_in_order() {
        let mut b = EpochBuffer::default();
        b.push(&rows(1));
        assert_eq!(epochs(&b.seal(Epoch(1))), vec![1]);
        assert_eq!(
            epochs(&b.seal(Epoch(2))),
            vec![1],
            "an empty epoch is not kept"
        );
        b.push(&rows(3));
        assert_eq!(epochs(&b.seal(Epoch(3))), vec![1, 3]);
        assert_eq!(epochs(&b.take_up_to(Epoch(2))), vec![1]);
        assert_eq!(epochs(&b.take_up_to(Epoch(3))), vec![3]);
        assert!(b.take_up_to(Epoch(9)).is_empty());
    }

    #[test]
    fn a_restore_commits_only_what_came_after_the_sinks_own_progress() {
        let held = |es: &[u64]| -> PendingEpochs {
            es.iter().map(|e| (Epoch(*e), vec![rows(0)])).collect()
        };
        assert_eq!(epochs(&not_committed(None, held(&[3, 4]))), vec![3, 4]);
        assert_eq!(epochs(&not_committed(Some(3), held(&[3, 4]))), vec![4]);
        assert!(not_committed(Some(9), held(&[3, 4])).is_empty());
    }
}
