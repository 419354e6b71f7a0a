//! A sink task merges its inputs by watermark (`merge.rs`: rows are released one
//! watermark step at a time, each step's rows sorted, so the output does not depend on
//! how work was split), aligns barriers across its inputs, keeps a transactional sink's
//! uncommitted epochs in the checkpoint, and commits an epoch when the coordinator says
//! it is durable.

use std::sync::mpsc::{Receiver, Sender};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;
use sluice_types::{Epoch, Message};

use crate::error::{Result, RuntimeError};
use crate::operator::Snapshot;
use crate::operators::sort::sort_all_columns;
use crate::sink::{Sink, SinkState};

use super::JobHandle;
use super::control::{Ack, Part, TaskMsg};
use super::inputs::{Event, Inputs};
use super::merge::Merge;
use super::tasks::ack_failed;

pub(crate) struct SinkTask {
    pub id: String,
    /// The sink table's name (for metrics).
    pub table: String,
    /// Per input: whether it comes straight from a stateless pipeline.
    pub inputs: Vec<bool>,
    /// Whether any input carries event time. Without it no watermark ever advances, so
    /// rows pass straight through instead of waiting for the end of the stream.
    pub watermarked: bool,
    /// The checkpoint being restored, if any.
    pub restored_epoch: Option<Epoch>,
    pub schema: SchemaRef,
    pub acks: Sender<Ack>,
}

fn sink_snapshot(state: SinkState) -> Snapshot {
    let mut epochs = Vec::new();
    let mut batches = Vec::new();
    for (e, bs) in state.pending {
        let bs: Vec<RecordBatch> = bs.into_iter().filter(|b| b.num_rows() > 0).collect();
        epochs.push((e.0, bs.len()));
        batches.extend(bs);
    }
    Snapshot {
        values: json!({ "epochs": epochs, "sink": state.values }),
        batches,
    }
}

/// What a sink task's snapshot saved for its sink.
pub(crate) fn sink_state_from(s: Snapshot) -> Result<SinkState> {
    let epochs: Vec<(u64, usize)> = serde_json::from_value(s.values["epochs"].clone())
        .map_err(|_| RuntimeError::Internal("a sink's saved epochs are unreadable".into()))?;
    let mut it = s.batches.into_iter();
    Ok(SinkState {
        pending: epochs
            .into_iter()
            .map(|(e, n)| (Epoch(e), it.by_ref().take(n).collect()))
            .collect(),
        values: s.values.get("sink").cloned().unwrap_or_default(),
    })
}

impl SinkTask {
    pub fn run(
        self,
        rx: Receiver<TaskMsg>,
        sink: &mut dyn Sink,
        restore: Option<Vec<Snapshot>>,
        handle: &JobHandle,
    ) -> Result<()> {
        let counters = handle.metrics.task(&format!("sink {}", self.table));
        let commit = |sink: &mut dyn Sink, e: Epoch| -> Result<()> {
            let t = std::time::Instant::now();
            sink.commit(e)?;
            handle
                .metrics
                .record_commit(&self.table, t.elapsed().as_millis() as u64);
            Ok(())
        };
        let n = self.inputs.len();
        let passthrough = (n == 1 && self.inputs[0]) || !self.watermarked || !sink.ordered();
        let mut m = Merge::new(n);
        if let Some(mut states) = restore {
            let saved = if states.len() > 1 { states.pop() } else { None };
            if let Some(merge) = states.pop() {
                m.restore(merge)?;
            }
            let saved = saved.map(sink_state_from).transpose()?.unwrap_or_default();
            let epoch = self.restored_epoch.unwrap_or(Epoch(0));
            sink.recover(epoch, saved)?;
        }
        let mut inputs = Inputs::new(n);
        let write = |batch: &RecordBatch, sink: &mut dyn Sink| -> Result<()> {
            if batch.num_rows() > 0 {
                handle.metrics.add_rows_out(batch.num_rows() as u64);
                counters.output(batch);
                handle.live.publish(&self.table, batch);
                sink.write_batch(batch)?;
            }
            Ok(())
        };
        while !m.done() {
            if handle.is_aborted() {
                return Ok(());
            }
            let (i, msg) = match inputs.next(&rx, &counters) {
                Event::Closed => break,
                Event::Commit(e) => {
                    commit(sink, e)?;
                    continue;
                }
                Event::Aligned(e) => {
                    let saved = sink.pre_commit(e)?;
                    let snapshots = vec![m.snapshot(), sink_snapshot(saved)];
                    self.acks
                        .send(Ack {
                            epoch: e,
                            parts: vec![Part::Task {
                                id: self.id.clone(),
                                snapshots,
                            }],
                        })
                        .map_err(|_| ack_failed())?;
                    continue;
                }
                Event::Data(i, msg) => (i, msg),
            };
            if let Message::Batch(b) = &msg {
                counters.input(b);
                if passthrough {
                    write(b, sink)?;
                    continue;
                }
            }
            let released = m.accept(i, msg);
            for batches in released.steps {
                if sluice_types::changelog::is_changelog(&self.schema) {
                    // A changelog keeps its order: each key's changes come from one
                    // input, in order, and must reach the sink so.
                    for b in &batches {
                        write(b, sink)?;
                    }
                } else {
                    let sorted = sort_all_columns(&self.schema, &batches)?;
                    write(&sorted, sink)?;
                }
            }
            if let Some(w) = released.watermark {
                sink.on_watermark(w)?;
            }
        }
        // A commit for the final checkpoint may still be queued behind the last data.
        while let Ok(msg) = rx.try_recv() {
            if let TaskMsg::Commit(e) = msg {
                commit(sink, e)?;
            }
        }
        sink.finish()
    }
}
