//! What travels on a channel between two tasks.

use arrow::record_batch::RecordBatch;

use crate::{Epoch, Watermark};

/// One message on a channel between tasks, in order.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows.
    Batch(RecordBatch),
    /// No on-time row older than this will follow on this channel.
    Watermark(Watermark),
    /// Checkpoint barrier: everything before it belongs to this epoch.
    Barrier(Epoch),
    /// The sender is done; nothing follows.
    EndOfStream,
}
