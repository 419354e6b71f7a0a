//! A sink task merges its inputs by watermark (rows are released one watermark step at
//! a time, each step's rows sorted, so the output does not depend on how work was
//! split), aligns barriers across its inputs, keeps a transactional sink's uncommitted
//! epochs in the checkpoint, and commits an epoch when the coordinator says it is
//! durable.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;
use sluice_types::{Epoch, Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::Snapshot;
use crate::operators::sort::sort_all_columns;
use crate::sink::{Sink, SinkState};

use super::JobHandle;
use super::control::{Ack, Part, TaskMsg};
use super::inputs::{Event, Inputs};
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

struct Merge {
    wms: Vec<Watermark>,
    ended: Vec<bool>,
    open: Vec<Vec<RecordBatch>>,
    segments: BTreeMap<Watermark, Vec<RecordBatch>>,
    released: Watermark,
}

impl Merge {
    fn snapshot(&self) -> Snapshot {
        let mut batches = Vec::new();
        let mut segments = Vec::new();
        for (w, bs) in &self.segments {
            segments.push((w.millis(), bs.len()));
            batches.extend(bs.iter().cloned());
        }
        let open: Vec<usize> = self.open.iter().map(Vec::len).collect();
        for bs in &self.open {
            batches.extend(bs.iter().cloned());
        }
        Snapshot {
            values: json!({
                "watermarks": self.wms.iter().map(|w| w.millis()).collect::<Vec<_>>(),
                "released": self.released.millis(),
                "segments": segments,
                "open": open,
            }),
            batches,
        }
    }

    fn restore(&mut self, s: Snapshot) -> Result<()> {
        let bad = || RuntimeError::Internal("a sink's saved state does not fit this job".into());
        let wms: Vec<i64> =
            serde_json::from_value(s.values["watermarks"].clone()).map_err(|_| bad())?;
        let segments: Vec<(i64, usize)> =
            serde_json::from_value(s.values["segments"].clone()).map_err(|_| bad())?;
        let open: Vec<usize> =
            serde_json::from_value(s.values["open"].clone()).map_err(|_| bad())?;
        if wms.len() != self.wms.len() || open.len() != self.open.len() {
            return Err(bad());
        }
        self.wms = wms.into_iter().map(Watermark::from_millis).collect();
        self.released = Watermark::from_millis(s.values["released"].as_i64().ok_or_else(bad)?);
        let mut it = s.batches.into_iter();
        for (w, n) in segments {
            let seg = self.segments.entry(Watermark::from_millis(w)).or_default();
            seg.extend(it.by_ref().take(n));
        }
        for (i, n) in open.into_iter().enumerate() {
            self.open[i].extend(it.by_ref().take(n));
        }
        Ok(())
    }
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
        let mut m = Merge {
            wms: vec![Watermark::MIN; n],
            ended: vec![false; n],
            open: vec![Vec::new(); n],
            segments: BTreeMap::new(),
            released: Watermark::MIN,
        };
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
        while m.ended.iter().any(|e| !e) {
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
            }
            match msg {
                Message::Batch(b) if passthrough => write(&b, sink)?,
                // After an input's last watermark no later one orders its rows: they go
                // with the end, and out as soon as every input is there (not held until
                // the end of stream, after the final checkpoint's commit).
                Message::Batch(b) if m.wms[i] == Watermark::MAX => {
                    m.segments.entry(Watermark::MAX).or_default().push(b)
                }
                Message::Batch(b) => m.open[i].push(b),
                Message::Watermark(w) => {
                    let seg = std::mem::take(&mut m.open[i]);
                    m.segments.entry(w).or_default().extend(seg);
                    m.wms[i] = m.wms[i].max(w);
                }
                Message::Barrier(_) => continue,
                Message::EndOfStream => {
                    m.ended[i] = true;
                    let seg = std::mem::take(&mut m.open[i]);
                    m.segments.entry(Watermark::MAX).or_default().extend(seg);
                }
            }
            let min = (0..n)
                .filter(|&i| !m.ended[i])
                .map(|i| m.wms[i])
                .min()
                .unwrap_or(Watermark::MAX);
            if min > m.released || min == Watermark::MAX || m.ended.iter().all(|e| *e) {
                while let Some(entry) = m.segments.first_entry() {
                    if *entry.key() > min {
                        break;
                    }
                    let batches = entry.remove();
                    if !batches.is_empty() {
                        if sluice_types::changelog::is_changelog(&self.schema) {
                            // A changelog keeps its order: each key's changes come from
                            // one input, in order, and must reach the sink so.
                            for b in &batches {
                                write(b, sink)?;
                            }
                        } else {
                            let sorted = sort_all_columns(&self.schema, &batches)?;
                            write(&sorted, sink)?;
                        }
                    }
                }
                if min > m.released {
                    m.released = min;
                    sink.on_watermark(min)?;
                }
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
