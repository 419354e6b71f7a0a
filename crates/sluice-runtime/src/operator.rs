//! The operator trait: a required `process_batch` and defaulted hooks for watermarks,
//! barriers and the end of input. Operators in one task form a chain.

use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Epoch, Message, Watermark};

use crate::error::Result;

/// A piece of state saved in a checkpoint: scalars as JSON, rows as Arrow batches (all
/// of one schema).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub values: serde_json::Value,
    pub batches: Vec<RecordBatch>,
}

/// Where an operator puts what it produces.
#[derive(Default, Debug)]
pub struct Collector {
    out: Vec<Message>,
}

impl Collector {
    pub fn batch(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.out.push(Message::Batch(batch));
        }
    }
    pub fn message(&mut self, m: Message) {
        self.out.push(m);
    }
    pub fn take(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.out)
    }
}

/// One step of a pipeline.
pub trait Operator: Send {
    fn name(&self) -> &str;

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()>;

    /// A batch on input `port`; operators with two inputs (joins) tell them apart.
    fn process_port(&mut self, port: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let _ = port;
        self.process_batch(batch, out)
    }

    /// Called when the input's watermark advances; by default it is passed on.
    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        out.message(Message::Watermark(watermark));
        Ok(())
    }

    /// Called when every input feeding `port` has ended (a bounded table read to its
    /// end): no row will come there again.
    fn on_port_end(&mut self, port: usize, out: &mut Collector) -> Result<()> {
        let _ = (port, out);
        Ok(())
    }

    /// Called when a checkpoint barrier has arrived on every input, before the state is
    /// taken: what the operator holds back until a barrier (an updating result's changed
    /// groups) goes out here, ahead of the barrier, in the epoch that ends.
    fn before_barrier(&mut self, epoch: Epoch, out: &mut Collector) -> Result<()> {
        let _ = (epoch, out);
        Ok(())
    }

    /// Called on a checkpoint barrier; by default it is passed on.
    fn on_barrier(&mut self, epoch: Epoch, out: &mut Collector) -> Result<()> {
        out.message(Message::Barrier(epoch));
        Ok(())
    }

    /// The operator's state at a barrier: small values and Arrow rows. Stateless
    /// operators keep the default (nothing).
    fn snapshot(&mut self) -> Result<Snapshot> {
        Ok(Snapshot::default())
    }

    /// Puts back state saved by [`Operator::snapshot`], before any input arrives.
    fn restore(&mut self, _state: Snapshot) -> Result<()> {
        Ok(())
    }

    /// Called once when the input has ended.
    fn on_end(&mut self, out: &mut Collector) -> Result<()> {
        out.message(Message::EndOfStream);
        Ok(())
    }
}

/// Operators run one after another in the same task.
#[derive(Default)]
pub struct Chain {
    ops: Vec<Box<dyn Operator>>,
}

impl Chain {
    pub fn new(ops: Vec<Box<dyn Operator>>) -> Self {
        Chain { ops }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Every operator's snapshot, in order.
    pub fn snapshot(&mut self) -> Result<Vec<Snapshot>> {
        self.ops.iter_mut().map(|op| op.snapshot()).collect()
    }

    /// Restores every operator from snapshots taken of the same chain.
    pub fn restore(&mut self, states: Vec<Snapshot>) -> Result<()> {
        for (op, state) in self.ops.iter_mut().zip(states) {
            op.restore(state)?;
        }
        Ok(())
    }

    /// Pushes one message through every operator; returns what comes out of the last.
    pub fn push(&mut self, msg: Message) -> Result<Vec<Message>> {
        let mut current = vec![msg];
        for op in &mut self.ops {
            let mut out = Collector::default();
            for m in current {
                match m {
                    Message::Batch(b) => op.process_batch(b, &mut out)?,
                    Message::Watermark(w) => op.on_watermark(w, &mut out)?,
                    Message::Barrier(e) => {
                        op.before_barrier(e, &mut out)?;
                        op.on_barrier(e, &mut out)?;
                    }
                    Message::EndOfStream => op.on_end(&mut out)?,
                }
            }
            current = out.take();
            if current.is_empty() {
                break;
            }
        }
        Ok(current)
    }
}
