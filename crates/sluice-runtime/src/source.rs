//! The source side: what a connector implements, and the watermark generator that
//! follows every source.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use std::time::{Duration, Instant};

use sluice_types::Watermark;

use crate::error::{Result, RuntimeError};

/// A source's position: next offset by partition name.
pub type Positions = std::collections::BTreeMap<String, i64>;

/// What a source has now.
#[derive(Debug)]
pub enum SourcePoll {
    /// Rows, all from one partition.
    Batch {
        partition: usize,
        batch: RecordBatch,
    },
    /// Nothing right now (the task re-checks idle partitions and polls again).
    Idle,
    /// A partition's progress as the stage before reported it (a shuffle's markers):
    /// the largest event time it has read, and whether it is idle. A source that
    /// reports progress decides idleness this way alone.
    Progress {
        partition: usize,
        max_event: Option<i64>,
        idle: bool,
    },
    /// A bounded source has ended.
    End,
}

/// A connector that produces rows.
pub trait Source: Send {
    fn schema(&self) -> SchemaRef;

    /// The next batch, or `None` when a bounded source has ended.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>>;

    /// How many partitions the source reads (each has its own watermark).
    fn partitions(&self) -> usize {
        1
    }

    /// Where the source is: per partition, the position of the next record to read
    /// (after every record already returned). Saved in checkpoints.
    fn position(&self) -> Positions {
        Positions::new()
    }

    /// Moves to a position saved by [`Source::position`], before the first poll.
    fn seek(&mut self, position: &Positions) -> Result<()> {
        if position.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Internal(
                "this source cannot resume from a checkpoint".into(),
            ))
        }
    }

    /// Splits off parts of what the source reads (partitions, byte ranges, key ranges)
    /// into sources of their own, so that up to `n` tasks read it side by side: after
    /// the call this source reads its own share, each returned source another. Called
    /// after [`Source::seek`]; the parts' positions together are the source's. The
    /// default splits off nothing.
    fn split(&mut self, _n: usize) -> Result<Vec<Box<dyn Source>>> {
        Ok(Vec::new())
    }

    /// A checkpoint holding `position` is durable (Kafka commits it to its group, for
    /// lag monitoring).
    fn checkpointed(&mut self, _position: &Positions) -> Result<()> {
        Ok(())
    }

    /// The next batch with its partition; sources with partitions override this.
    fn poll(&mut self) -> Result<SourcePoll> {
        Ok(match self.next_batch()? {
            Some(batch) => SourcePoll::Batch {
                partition: 0,
                batch,
            },
            None => SourcePoll::End,
        })
    }
}

/// A source's watermark: per partition the largest event time minus the delay; the
/// source's is the minimum over partitions that are not idle (no data for
/// `idle_timeout`) and not ended, or the maximum when all are idle. It never goes
/// backwards. The parts of a split source share one, each part's partitions numbered
/// after the previous part's.
#[derive(Debug)]
pub struct SourceWatermarks {
    partitions: Vec<WatermarkGenerator>,
    last_active: Vec<Instant>,
    /// Partitions reported idle by the stage before (see [`SourcePoll::Progress`]).
    reported_idle: Vec<bool>,
    /// Partitions whose part of the source has ended.
    ended: Vec<bool>,
    idle_timeout: Duration,
    current: Watermark,
}

impl SourceWatermarks {
    pub fn new(column: usize, delay_ms: i64, partitions: usize, idle_timeout: Duration) -> Self {
        let n = partitions.max(1);
        let now = Instant::now();
        SourceWatermarks {
            partitions: vec![WatermarkGenerator::new(column, delay_ms); n],
            last_active: vec![now; n],
            reported_idle: vec![false; n],
            ended: vec![false; n],
            idle_timeout,
            current: Watermark::MIN,
        }
    }

    /// The source's watermark so far.
    pub fn current(&self) -> Watermark {
        self.current
    }

    /// Per partition in `own`, the largest event time seen (`None` elsewhere); and the
    /// source's watermark: a part's share of [`SourceWatermarks::state`].
    pub fn state_of(&self, own: std::ops::Range<usize>) -> (Vec<Option<i64>>, Option<i64>) {
        let (mut max, current) = self.state();
        for (i, m) in max.iter_mut().enumerate() {
            if !own.contains(&i) {
                *m = None;
            }
        }
        (max, current)
    }

    /// The partitions of a part that has ended no longer hold the watermark back.
    pub fn end(&mut self, partitions: std::ops::Range<usize>) {
        let n = self.ended.len();
        for p in partitions.start.min(n)..partitions.end.min(n) {
            self.ended[p] = true;
        }
    }

    /// Per partition, the largest event time seen; and the source's watermark.
    pub fn state(&self) -> (Vec<Option<i64>>, Option<i64>) {
        (
            self.partitions.iter().map(|g| g.max_event).collect(),
            (self.current != Watermark::MIN).then(|| self.current.millis()),
        )
    }

    /// Puts back what [`SourceWatermarks::state`] returned.
    pub fn restore(&mut self, max_events: &[Option<i64>], current: Option<i64>) {
        self.grow(max_events.len());
        for (g, m) in self.partitions.iter_mut().zip(max_events) {
            g.max_event = *m;
            if let Some(m) = m {
                g.current = Watermark::from_max_event_time(*m, g.delay_ms);
            }
        }
        if let Some(c) = current {
            self.current = Watermark::from_millis(c);
        }
    }

    /// Observes a partition's batch.
    pub fn observe(&mut self, partition: usize, batch: &RecordBatch) -> Result<()> {
        self.grow(partition + 1);
        self.partitions[partition].observe(batch)?;
        self.last_active[partition] = Instant::now();
        self.reported_idle[partition] = false;
        Ok(())
    }

    /// Takes a partition's progress as the stage before reported it: its largest event
    /// time so far (never moving back) and whether it is idle.
    pub fn report(&mut self, partition: usize, max_event: Option<i64>, idle: bool) {
        self.grow(partition + 1);
        if let Some(m) = max_event {
            self.partitions[partition].see_max(m);
        }
        self.last_active[partition] = Instant::now();
        self.reported_idle[partition] = idle;
    }

    fn grow(&mut self, n: usize) {
        if n > self.partitions.len() {
            let g = self.partitions[0].fresh();
            self.partitions.resize(n, g);
            self.last_active.resize(n, Instant::now());
            self.reported_idle.resize(n, false);
            self.ended.resize(n, false);
        }
    }

    /// One partition's own watermark, once it has seen an event time.
    pub fn partition_watermark(&self, partition: usize) -> Option<i64> {
        let g = self.partitions.get(partition)?;
        g.max_event.map(|_| g.current().millis())
    }

    /// The source's watermark if it advanced.
    pub fn advance(&mut self, now: Instant) -> Option<Watermark> {
        let live = |i: &usize| !self.ended[*i];
        let active: Vec<Watermark> = (0..self.partitions.len())
            .filter(live)
            .filter(|&i| {
                !self.reported_idle[i]
                    && now.duration_since(self.last_active[i]) < self.idle_timeout
            })
            .map(|i| self.partitions[i].current())
            .collect();
        let candidate = if active.is_empty() {
            let mut open = (0..self.partitions.len()).filter(live).peekable();
            if open.peek().is_some() {
                open.map(|i| self.partitions[i].current()).max()
            } else {
                self.partitions
                    .iter()
                    .map(WatermarkGenerator::current)
                    .max()
            }
        } else {
            active.into_iter().min()
        }?;
        if candidate > self.current {
            self.current = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

/// Largest event time seen minus the declared delay, never going backwards.
#[derive(Debug, Clone)]
pub struct WatermarkGenerator {
    column: usize,
    delay_ms: i64,
    max_event: Option<i64>,
    current: Watermark,
}

impl WatermarkGenerator {
    pub fn new(column: usize, delay_ms: i64) -> Self {
        WatermarkGenerator {
            column,
            delay_ms,
            max_event: None,
            current: Watermark::MIN,
        }
    }

    /// Observes a batch; returns the new watermark if it advanced.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<Option<Watermark>> {
        let col = batch.column(self.column);
        let times = col
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal(format!("event time is {}", col.data_type())))?;
        let Some(max) = datafusion::arrow::compute::max(times) else {
            return Ok(None);
        };
        Ok(self.see_max(max))
    }

    /// Takes `max` as an event time seen; returns the new watermark if it advanced.
    pub fn see_max(&mut self, max: i64) -> Option<Watermark> {
        let max = self.max_event.map_or(max, |m| m.max(max));
        self.max_event = Some(max);
        let wm = Watermark::from_max_event_time(max, self.delay_ms);
        (wm > self.current).then(|| {
            self.current = wm;
            wm
        })
    }

    pub fn current(&self) -> Watermark {
        self.current
    }

    /// A generator for the same column and delay that has seen nothing.
    pub fn fresh(&self) -> Self {
        WatermarkGenerator::new(self.column, self.delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn batch(times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(TimestampMillisecondArray::from(times.to_vec()))],
        )
        .unwrap()
    }

    #[test]
    fn an_ended_part_does_not_hold_the_others_back() {
        // Two parts of a split source, one partition each, sharing the watermark.
        let mut w = SourceWatermarks::new(0, 1_000, 2, Duration::from_secs(3600));
        w.observe(0, &batch(&[10_000])).unwrap();
        w.observe(1, &batch(&[50_000])).unwrap();
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(9_000))
        );
        assert_eq!(w.state_of(1..2), (vec![None, Some(50_000)], Some(9_000)));
        // Part 0 reads on past part 1, then part 1 ends: part 0 alone leads.
        w.observe(0, &batch(&[80_000])).unwrap();
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(49_000))
        );
        w.end(1..2);
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(79_000))
        );
        assert_eq!(w.current(), Watermark::from_millis(79_000));
    }

    #[test]
    fn minimum_over_partitions_then_idle_partitions_do_not_hold_back() {
        let mut w = SourceWatermarks::new(0, 1_000, 2, Duration::from_millis(200));
        let t0 = Instant::now();
        w.observe(0, &batch(&[10_000])).unwrap();
        // Partition 1 has seen nothing and is not idle yet: nothing is known.
        assert_eq!(w.advance(t0), None);
        w.observe(1, &batch(&[5_000])).unwrap();
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(4_000))
        );
        w.observe(0, &batch(&[20_000])).unwrap();
        assert_eq!(w.advance(Instant::now()), None, "held back by partition 1");
        // Partition 1 goes quiet; partition 0 keeps going.
        std::thread::sleep(Duration::from_millis(250));
        w.observe(0, &batch(&[30_000])).unwrap();
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(29_000))
        );
        // Partition 1 comes back behind: the watermark does not go backwards.
        w.observe(1, &batch(&[6_000])).unwrap();
        assert_eq!(w.advance(Instant::now()), None);
    }

    #[test]
    fn reported_progress_holds_until_every_partition_reports_and_idles_only_when_told() {
        // As a shuffle's reader: no wall-clock idleness.
        let mut w = SourceWatermarks::new(0, 1_000, 3, Duration::MAX);
        w.report(0, Some(10_000), false);
        w.report(1, Some(8_000), false);
        assert_eq!(
            w.advance(Instant::now()),
            None,
            "partition 2 has not reported"
        );
        w.report(2, None, true);
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(7_000))
        );
        // A report that goes back changes nothing; rows seen count as well.
        w.report(1, Some(5_000), false);
        w.observe(1, &batch(&[12_000])).unwrap();
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(9_000))
        );
        // Partition 2 wakes up behind the others: it holds the watermark from now on.
        w.report(2, Some(9_500), false);
        w.report(0, Some(20_000), false);
        w.report(1, Some(20_000), false);
        assert_eq!(w.advance(Instant::now()), None);
        w.report(2, Some(30_000), false);
        assert_eq!(
            w.advance(Instant::now()),
            Some(Watermark::from_millis(19_000))
        );
    }
}
