//! A node task runs one stateful operator (an aggregate or a join) over its inputs:
//! the operator's watermark is the least of its timed inputs', barriers are aligned,
//! and what the operator puts out goes down every edge that leaves the node.

use std::sync::mpsc::{Receiver, Sender};

use sluice_types::{Message, Watermark};

use crate::error::Result;
use crate::metrics::TaskCounters;
use crate::operator::{Collector, Operator};

use super::JobHandle;
use super::control::{Ack, Part, TaskMsg};
use super::inputs::{Event, Inputs};
use super::tasks::{Head, ack_failed, deliver, head_snapshots};

pub(crate) struct NodeTask {
    pub id: String,
    pub op: Box<dyn Operator>,
    /// Per input, the operator's port it feeds.
    pub ports: Vec<usize>,
    /// Per input, whether it carries event time. Inputs that do not (a table without a
    /// watermark) do not hold the watermark back; they send the greatest one when they
    /// end.
    pub timed: Vec<bool>,
    pub outputs: Vec<Head>,
    pub acks: Sender<Ack>,
    /// Whether checkpoints are kept (`Control::keep_state`).
    pub keep_state: bool,
}

impl NodeTask {
    fn watermark(&self, wms: &[Watermark]) -> Watermark {
        let any_timed = self.timed.iter().any(|t| *t);
        wms.iter()
            .zip(&self.timed)
            .filter(|(_, t)| **t || !any_timed)
            .map(|(w, _)| *w)
            .min()
            .unwrap_or(Watermark::MAX)
    }

    fn emit(&mut self, out: &mut Collector, counters: &TaskCounters) -> Result<()> {
        for m in out.take() {
            if let Message::Batch(b) = &m {
                counters.output(b);
            }
            deliver(&mut self.outputs, m)?;
        }
        Ok(())
    }

    pub fn run(
        mut self,
        rx: Receiver<TaskMsg>,
        handle: &JobHandle,
        counters: &TaskCounters,
    ) -> Result<()> {
        let n = self.ports.len();
        let mut inputs = Inputs::new(n);
        let mut wms = vec![Watermark::MIN; n];
        let mut current = Watermark::MIN;
        let ports = self.ports.iter().max().map_or(0, |p| p + 1);
        let mut port_done = vec![false; ports];
        let mut out = Collector::default();
        loop {
            if handle.is_aborted() {
                return Ok(());
            }
            match inputs.next(&rx, counters) {
                Event::Closed => break,
                Event::Commit(_) => {}
                Event::Aligned(epoch) => {
                    // What goes out at a barrier belongs to the epoch that ends, and the
                    // state is taken after it.
                    self.op.before_barrier(epoch, &mut out)?;
                    self.emit(&mut out, counters)?;
                    let snapshots = if self.keep_state {
                        vec![self.op.snapshot()?]
                    } else {
                        Vec::new()
                    };
                    let mut parts = vec![Part::Task {
                        id: self.id.clone(),
                        snapshots,
                    }];
                    parts.extend(head_snapshots(&mut self.outputs, self.keep_state)?);
                    self.acks
                        .send(Ack { epoch, parts })
                        .map_err(|_| ack_failed())?;
                    self.op.on_barrier(epoch, &mut out)?;
                }
                Event::Data(i, Message::Batch(b)) => {
                    counters.input(&b);
                    self.op.process_port(self.ports[i], b, &mut out)?;
                }
                Event::Data(i, Message::Watermark(w)) => {
                    wms[i] = wms[i].max(w);
                    // Every input of a port at the greatest watermark: that side has
                    // been read to its end (a bounded table).
                    let port = self.ports[i];
                    if !port_done[port]
                        && (0..n).all(|j| self.ports[j] != port || wms[j] == Watermark::MAX)
                    {
                        port_done[port] = true;
                        self.op.on_port_end(port, &mut out)?;
                    }
                    let min = self.watermark(&wms);
                    if min > current {
                        current = min;
                        self.op.on_watermark(min, &mut out)?;
                    }
                }
                Event::Data(_, Message::EndOfStream) => {
                    if inputs.all_ended() {
                        self.op.on_end(&mut out)?;
                        self.emit(&mut out, counters)?;
                        break;
                    }
                }
                Event::Data(_, Message::Barrier(_)) => {}
            }
            self.emit(&mut out, counters)?;
        }
        Ok(())
    }
}
