//! The loop of source tasks: read, stamp watermarks, run the heads of the edges that
//! leave the source, inject barriers.

use std::ops::Range;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_state::SourceState;
use sluice_types::{Epoch, Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::Chain;
use crate::source::{Source, SourcePoll, SourceWatermarks};

use super::control::{Ack, Control, Part};
use super::{JobHandle, Route};

/// The head of an edge, run by its producer's task: the edge's stateless steps and
/// where their output goes.
pub(crate) struct Head {
    pub id: String,
    pub chain: Chain,
    pub route: Route,
}

pub(crate) struct SourceTask {
    /// The source's index in the job.
    pub index: usize,
    /// The task's index among all source tasks.
    pub task: usize,
    pub name: String,
    pub source: Box<dyn Source>,
    /// The source's watermark, shared by the parts of a split source.
    pub watermarks: Option<Arc<Mutex<SourceWatermarks>>>,
    /// This part's partitions, as the shared watermark numbers them.
    pub own: Range<usize>,
    /// The watermark last sent downstream.
    pub emitted: Watermark,
    pub heads: Vec<Head>,
    pub ctl: Arc<Control>,
    pub acks: Sender<Ack>,
    /// The last epoch injected.
    pub injected: u64,
}

/// Every head's chain state, for a checkpoint (none where no checkpoint is kept).
pub(crate) fn head_snapshots(heads: &mut [Head], keep_state: bool) -> Result<Vec<Part>> {
    heads
        .iter_mut()
        .map(|h| {
            Ok(Part::Task {
                id: h.id.clone(),
                snapshots: if keep_state {
                    h.chain.snapshot()?
                } else {
                    Vec::new()
                },
            })
        })
        .collect()
}

/// Sends one message down every edge.
pub(crate) fn deliver(heads: &mut [Head], msg: Message) -> Result<()> {
    for h in heads.iter_mut() {
        for m in h.chain.push(msg.clone())? {
            h.route.send(m)?;
        }
    }
    Ok(())
}

pub(crate) fn ack_failed() -> RuntimeError {
    RuntimeError::Stopped("the checkpoint coordinator")
}

impl SourceTask {
    fn deliver(&mut self, msg: Message) -> Result<()> {
        deliver(&mut self.heads, msg)
    }

    /// The shared watermark, locked.
    fn shared(&self) -> Result<Option<MutexGuard<'_, SourceWatermarks>>> {
        self.watermarks
            .as_ref()
            .map(|w| {
                w.lock()
                    .map_err(|_| RuntimeError::Internal("a source part panicked".into()))
            })
            .transpose()
    }

    fn inject(&mut self, epoch: Epoch) -> Result<()> {
        // This part's partitions, and the watermark it has sent (what the operators
        // after it have seen).
        let (max_event_times, _) = self
            .shared()?
            .map_or((Vec::new(), None), |g| g.state_of(self.own.clone()));
        let watermark = (self.watermarks.is_some() && self.emitted != Watermark::MIN)
            .then(|| self.emitted.millis());
        let mut parts = vec![Part::Source {
            index: self.index,
            state: SourceState {
                name: self.name.clone(),
                offsets: self.source.position(),
                max_event_times,
                watermark,
            },
        }];
        parts.extend(head_snapshots(&mut self.heads, self.ctl.keep_state)?);
        self.acks
            .send(Ack { epoch, parts })
            .map_err(|_| ack_failed())?;
        self.deliver(Message::Barrier(epoch))
    }

    pub fn run(mut self, handle: &JobHandle) -> Result<()> {
        let mut ended = false;
        let counters = handle.metrics.task(&format!("source {}", self.name));
        loop {
            if handle.is_aborted() {
                break;
            }
            while self.injected < self.ctl.requested() {
                self.injected += 1;
                self.inject(Epoch(self.injected))?;
            }
            if let Some(p) = self.ctl.take_durable(self.task)
                && let Err(e) = self.source.checkpointed(&p)
            {
                tracing::warn!("source {}: {e}", self.name);
            }
            if ended {
                if self.ctl.finishing() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            if handle.is_stopping() {
                ended = true;
                self.ctl
                    .ended_sources
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                continue;
            }
            match self.source.poll()? {
                SourcePoll::End => {
                    if let Some(mut g) = self.shared()? {
                        g.end(self.own.clone());
                    }
                    self.deliver(Message::Watermark(Watermark::MAX))?;
                    ended = true;
                    self.ctl
                        .ended_sources
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
                SourcePoll::Idle => {}
                SourcePoll::Progress {
                    partition,
                    max_event,
                    idle,
                } => {
                    let partition = self.own.start + partition;
                    if let Some(mut g) = self.shared()? {
                        g.report(partition, max_event, idle);
                        if let Some(wm) = g.partition_watermark(partition) {
                            handle
                                .metrics
                                .set_partition_watermark(&self.name, partition, wm);
                        }
                    }
                }
                SourcePoll::Batch { partition, batch } => {
                    let bytes = counters.input(&batch);
                    handle
                        .metrics
                        .add_source_batch(batch.num_rows() as u64, bytes);
                    let partition = self.own.start + partition;
                    if let Some(mut g) = self.shared()? {
                        g.observe(partition, &batch)?;
                        if let Some(wm) = g.partition_watermark(partition) {
                            handle
                                .metrics
                                .set_partition_watermark(&self.name, partition, wm);
                        }
                    }
                    self.deliver(Message::Batch(batch))?;
                }
            }
            let now = self.shared()?.map(|mut g| {
                g.advance(Instant::now());
                g.current()
            });
            if let Some(w) = now.filter(|w| *w > self.emitted) {
                self.emitted = w;
                handle.metrics.observe_watermark(w);
                self.deliver(Message::Watermark(w))?;
            }
        }
        self.deliver(Message::EndOfStream)
    }
}
