//! Rows as the sinks receive them, for whoever watches (the console, any client of the
//! live-results endpoint). Each watcher has a bounded queue: what it cannot keep up
//! with is dropped and counted, never waited for, so a slow client never slows a job.
//! The registry belongs to the job, not to one run: watchers stay through restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

/// Batches a watcher may have waiting before more are dropped.
pub const WATCHER_QUEUE: usize = 256;
/// Watchers one job may have at once, over all its sinks.
pub const MAX_WATCHERS: usize = 16;

#[derive(Debug, Default)]
pub struct LiveRows {
    watchers: Mutex<BTreeMap<String, Vec<Watcher>>>,
    count: AtomicUsize,
    /// Rows dropped for watchers too slow to take them, over every watcher.
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Watcher {
    tx: mpsc::Sender<RecordBatch>,
    dropped: Arc<AtomicU64>,
}

/// One watcher's end: the batches, in the order the sink received them, and how many
/// rows were dropped because they were not taken in time.
#[derive(Debug)]
pub struct LiveSubscription {
    pub rows: mpsc::Receiver<RecordBatch>,
    pub dropped: Arc<AtomicU64>,
}

/// Too many watchers already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyWatchers;

impl LiveRows {
    /// Starts watching the sink `sink` (a table's name).
    pub fn subscribe(&self, sink: &str) -> Result<LiveSubscription, TooManyWatchers> {
        let mut w = self.watchers.lock().map_err(|_| TooManyWatchers)?;
        w.values_mut().for_each(|v| v.retain(|x| !x.tx.is_closed()));
        let open: usize = w.values().map(Vec::len).sum();
        if open >= MAX_WATCHERS {
            return Err(TooManyWatchers);
        }
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        w.entry(sink.to_string()).or_default().push(Watcher {
            tx,
            dropped: dropped.clone(),
        });
        self.count.store(open + 1, Ordering::Relaxed);
        Ok(LiveSubscription { rows: rx, dropped })
    }

    /// Hands a batch the sink `sink` received to its watchers; costs one atomic load
    /// when nobody watches.
    pub fn publish(&self, sink: &str, batch: &RecordBatch) {
        if self.count.load(Ordering::Relaxed) == 0 || batch.num_rows() == 0 {
            return;
        }
        let Ok(mut w) = self.watchers.lock() else {
            return;
        };
        let Some(list) = w.get_mut(sink) else {
            return;
        };
        list.retain(|x| match x.tx.try_send(batch.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = batch.num_rows() as u64;
                x.dropped.fetch_add(n, Ordering::Relaxed);
                self.dropped.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        let open: usize = w.values().map(Vec::len).sum();
        self.count.store(open, Ordering::Relaxed);
    }

    /// Rows dropped for slow watchers so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Watchers now.
    pub fn watchers(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    fn batch(v: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(v.to_vec()))]).expect("a batch")
    }

    #[test]
    fn a_watcher_gets_its_sinks_rows_in_order_and_a_slow_one_loses_and_counts_the_rest() {
        let live = LiveRows::default();
        let mut fast = live.subscribe("a").expect("room");
        let mut slow = live.subscribe("a").expect("room");
        let mut other = live.subscribe("b").expect("room");
        for i in 0..(WATCHER_QUEUE as i64 + 10) {
            live.publish("a", &batch(&[i, i]));
            let got = fast.rows.try_recv().expect("the fast watcher keeps up");
            assert_eq!(got, batch(&[i, i]));
        }
        // The slow one took nothing: its queue holds the first batches, the rest dropped.
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 20);
        assert_eq!(live.dropped(), 20);
        assert_eq!(slow.rows.try_recv().expect("the first"), batch(&[0, 0]));
        assert!(other.rows.try_recv().is_err(), "sink b received nothing");
        drop(fast);
        live.publish("a", &batch(&[1]));
        assert_eq!(live.watchers(), 2, "a watcher that left is forgotten");
    }

    #[test]
    fn watchers_are_limited() {
        let live = LiveRows::default();
        let kept: Vec<_> = (0..MAX_WATCHERS)
            .map(|_| live.subscribe("a").expect("room"))
            .collect();
        assert_eq!(live.subscribe("a").err(), Some(TooManyWatchers));
        drop(kept);
        assert!(live.subscribe("a").is_ok(), "room again once they leave");
    }
}
