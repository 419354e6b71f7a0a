//! Barrier alignment over a task's inputs: once an input has delivered the barrier of
//! an epoch, its later messages wait until every other input (that has not ended) has
//! delivered it too; then the task snapshots, consistent with the sources' offsets.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use sluice_types::{Epoch, Message};

use super::control::TaskMsg;
use crate::metrics::TaskCounters;

/// What a task does next.
pub(crate) enum Event {
    /// A batch, watermark or end of stream on input `i`.
    Data(usize, Message),
    /// Every live input has delivered this epoch's barrier.
    Aligned(Epoch),
    /// The coordinator says this epoch is durable (sinks only).
    Commit(Epoch),
    /// Every sender is gone.
    Closed,
}

pub(crate) struct Inputs {
    at_barrier: Vec<Option<Epoch>>,
    queued: Vec<VecDeque<Message>>,
    ended: Vec<bool>,
}

impl Inputs {
    pub fn new(n: usize) -> Self {
        Inputs {
            at_barrier: vec![None; n],
            queued: vec![VecDeque::new(); n],
            ended: vec![false; n],
        }
    }

    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// The next event; `queue` counts the messages taken off the task's queue.
    pub fn next(&mut self, rx: &Receiver<TaskMsg>, queue: &TaskCounters) -> Event {
        let n = self.ended.len();
        loop {
            let ready =
                (0..n).find(|&i| self.at_barrier[i].is_none() && !self.queued[i].is_empty());
            let (i, msg) = match ready.and_then(|i| self.queued[i].pop_front().map(|m| (i, m))) {
                Some(x) => x,
                None => match rx.recv() {
                    Ok(TaskMsg::Commit(e)) => return Event::Commit(e),
                    Ok(TaskMsg::Data(i, msg)) => {
                        queue.queued.fetch_sub(1, Ordering::Relaxed);
                        if self.at_barrier[i].is_some() {
                            self.queued[i].push_back(msg);
                            continue;
                        }
                        (i, msg)
                    }
                    Err(_) => return Event::Closed,
                },
            };
            match msg {
                Message::Barrier(e) => {
                    self.at_barrier[i] = Some(e);
                    let aligned = (0..n).all(|j| self.ended[j] || self.at_barrier[j] == Some(e));
                    if aligned {
                        self.at_barrier.iter_mut().for_each(|b| *b = None);
                        return Event::Aligned(e);
                    }
                }
                Message::EndOfStream => {
                    self.ended[i] = true;
                    return Event::Data(i, Message::EndOfStream);
                }
                other => return Event::Data(i, other),
            }
        }
    }
}
