//! The writing side of a shuffle: reads one partition of a source topic, decodes it, and
//! writes each row to the shuffle partition of its key (the versioned key hash, as the
//! runtime routes keys), with its source offset; then the partition's progress into
//! every shuffle partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use serde::{Deserialize, Serialize};
use sluice_runtime::{JobMetrics, Positions, Result, RuntimeError, Source, SourcePoll};
use sluice_types::key_hash::{key_hashes, partition_of};
use sluice_types::{ConnectorOptions, Interrupt};

use super::{Frame, Progress, with_offsets};
use crate::kafka::{KafkaSource, producer_config};
use crate::kafka_sink::{CountingProducer, Deliveries};

/// How often a partition's progress is written again although it has not changed (a
/// reader restored from a checkpoint hears from every partition within this time).
const REPEAT_PROGRESS: Duration = Duration::from_secs(1);
/// The largest record a writer sends (Kafka's default `message.max.bytes` is 1 MiB).
const MAX_RECORD: usize = 512 * 1024;

/// Where a writer is, saved after everything before it was delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub position: Positions,
    pub max_event: Option<i64>,
    /// The bounded source was read to its end and the end written to every partition.
    pub finished: bool,
}

/// What the writer needs to know of its table and of the shuffle.
pub struct WriterSpec {
    pub table: String,
    /// The table's options, `partitions` naming the one partition to read.
    pub options: ConnectorOptions,
    pub schema: SchemaRef,
    /// The column rows are routed by.
    pub key: usize,
    /// The event-time column, if the table has a watermark.
    pub event_time: Option<usize>,
    pub idle_timeout: Duration,
    /// The shuffle topic and its partition count.
    pub topic: String,
    pub partitions: usize,
}

pub struct ShuffleWriter {
    spec: WriterSpec,
    source: KafkaSource,
    producer: CountingProducer,
    /// The source partition read (its id in the topic).
    upstream: u32,
    progress: Progress,
    last_record: Instant,
    written: Option<(Progress, Instant)>,
    hashes: Vec<u32>,
}

fn external(table: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::External(format!("table {table}: shuffle: {e}"))
}

impl ShuffleWriter {
    pub fn open(spec: WriterSpec, metrics: Arc<JobMetrics>, interrupt: &Interrupt) -> Result<Self> {
        let source = KafkaSource::open(
            &spec.table,
            &spec.options,
            spec.schema.clone(),
            metrics,
            interrupt,
        )
        .map_err(|e| external(&spec.table, e))?;
        if source.partitions() != 1 {
            return Err(RuntimeError::Internal(format!(
                "a shuffle writer reads one partition, not {}",
                source.partitions()
            )));
        }
        let upstream = source.partition_id(0).unwrap_or_default() as u32;
        let producer: CountingProducer = producer_config(&spec.options)
            .set("linger.ms", "5")
            // In order per partition, also when the producer retries.
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(Deliveries::default())
            .map_err(|e| external(&spec.table, e))?;
        Ok(ShuffleWriter {
            spec,
            source,
            producer,
            upstream,
            progress: Progress::default(),
            last_record: Instant::now(),
            written: None,
            hashes: Vec::new(),
        })
    }

    /// Resumes where a saved point says (before the first step).
    pub fn resume(&mut self, saved: &Saved) -> Result<()> {
        self.progress.max_event = saved.max_event;
        self.progress.end = saved.finished;
        self.source.seek(&saved.position)
    }

    /// Reads once and writes what came; `true` once the bounded source has ended and
    /// its end was written.
    pub fn step(&mut self) -> Result<bool> {
        match self.source.poll()? {
            SourcePoll::Batch { batch, .. } => {
                let offsets = self.source.row_offsets().to_vec();
                self.write_rows(&batch, &offsets)?;
                self.last_record = Instant::now();
                self.progress.idle = false;
            }
            SourcePoll::End => {
                self.progress.end = true;
                self.write_progress(true)?;
                return Ok(true);
            }
            SourcePoll::Idle | SourcePoll::Progress { .. } => {
                if self.last_record.elapsed() >= self.spec.idle_timeout {
                    self.progress.idle = true;
                }
            }
        }
        self.write_progress(false)?;
        Ok(false)
    }

    fn write_rows(&mut self, batch: &RecordBatch, offsets: &[i64]) -> Result<()> {
        let table = self.spec.table.clone();
        if batch.num_rows() != offsets.len() {
            return Err(RuntimeError::Internal(format!(
                "table {table}: {} rows but {} offsets",
                batch.num_rows(),
                offsets.len()
            )));
        }
        if let Some(t) = self.spec.event_time
            && let Some(times) = batch
                .column(t)
                .as_primitive_opt::<TimestampMillisecondType>()
            && let Some(max) = arrow::compute::max(times)
        {
            self.progress.max_event = Some(self.progress.max_event.map_or(max, |m| m.max(max)));
        }
        let rows = with_offsets(batch, offsets).map_err(|e| external(&table, e))?;
        let key: [ArrayRef; 1] = [batch.column(self.spec.key).clone()];
        key_hashes(&key, batch.num_rows(), &mut self.hashes).map_err(|e| external(&table, e))?;
        let mut by_partition: Vec<Vec<u32>> = vec![Vec::new(); self.spec.partitions];
        for (row, h) in self.hashes.iter().enumerate() {
            by_partition[partition_of(*h, self.spec.partitions)].push(row as u32);
        }
        for (m, rows_of) in by_partition.into_iter().enumerate() {
            if rows_of.is_empty() {
                continue;
            }
            let part = take_record_batch(&rows, &UInt32Array::from(rows_of))
                .map_err(|e| external(&table, e))?;
            self.send_rows(m, part)?;
        }
        Ok(())
    }

    /// Sends rows to shuffle partition `m`, in halves while a record would be larger
    /// than [`MAX_RECORD`] (brokers refuse records above `message.max.bytes`).
    fn send_rows(&self, m: usize, rows: RecordBatch) -> Result<()> {
        let bytes = Frame::Rows {
            partition: self.upstream,
            batch: rows.clone(),
        }
        .encode()
        .map_err(|e| external(&self.spec.table, e))?;
        if bytes.len() > MAX_RECORD && rows.num_rows() > 1 {
            let half = rows.num_rows() / 2;
            self.send_rows(m, rows.slice(0, half))?;
            return self.send_rows(m, rows.slice(half, rows.num_rows() - half));
        }
        self.send_bytes(m, &bytes)
    }

    /// Writes the partition's progress into every shuffle partition, when it changed, a
    /// while has passed, or `now`.
    fn write_progress(&mut self, now: bool) -> Result<()> {
        let due = match self.written {
            None => true,
            Some((p, at)) => now || p != self.progress || at.elapsed() >= REPEAT_PROGRESS,
        };
        if !due || (self.progress.max_event.is_none() && !self.progress.idle && !self.progress.end)
        {
            return Ok(());
        }
        let frame = Frame::Progress {
            partition: self.upstream,
            progress: self.progress,
        };
        for m in 0..self.spec.partitions {
            self.send(m, &frame)?;
        }
        self.written = Some((self.progress, Instant::now()));
        Ok(())
    }

    fn send(&self, partition: usize, frame: &Frame) -> Result<()> {
        let bytes = frame.encode().map_err(|e| external(&self.spec.table, e))?;
        self.send_bytes(partition, &bytes)
    }

    fn send_bytes(&self, partition: usize, bytes: &[u8]) -> Result<()> {
        let table = &self.spec.table;
        loop {
            let record = BaseRecord::<[u8], [u8]>::to(&self.spec.topic)
                .partition(partition as i32)
                .payload(bytes);
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(external(table, e)),
            }
        }
        self.producer.poll(Duration::ZERO);
        self.producer
            .context()
            .check(&self.spec.topic)
            .map_err(|e| external(table, e))
    }

    /// Waits until everything written is delivered; where the writer then is.
    pub fn save_point(&mut self) -> Result<Saved> {
        let table = &self.spec.table;
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| external(table, e))?;
        self.producer
            .context()
            .check(&self.spec.topic)
            .map_err(|e| external(table, e))?;
        Ok(Saved {
            position: self.source.position(),
            max_event: self.progress.max_event,
            finished: self.progress.end,
        })
    }
}
