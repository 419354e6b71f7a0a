//! The reading side of a shuffle: one partition of a job's shuffle topic as the job's
//! source. Rows come out under the source partition they were read from (each has its
//! own watermark, from the progress its writer reports); rows already taken are dropped.

use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_runtime::{Positions, Result, RuntimeError, Source, SourcePoll};
use sluice_types::ConnectorOptions;

use super::{Frame, Taken, Taking};
use crate::kafka::client_config;

/// How far before a saved offset a resume starts reading (records): some brokers answer
/// a fetch in the middle of a record batch with the next batch (see `KafkaSource::seek`).
const LOOKBACK: i64 = 1_000;

/// Which shuffle partition a task reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleRead {
    pub topic: String,
    pub partition: i32,
    /// How many partitions the source topic has (each reports its progress).
    pub upstream: usize,
}

pub struct ShuffleSource {
    table: String,
    read: ShuffleRead,
    schema: SchemaRef,
    consumer: BaseConsumer,
    /// The next offset of the shuffle partition to take.
    next: i64,
    /// A resume in progress: the offset it read from, for as long as the first record
    /// has not come.
    resume_from: Option<i64>,
    low: i64,
    taken: Taken,
    last_error: Option<Instant>,
}

fn external(table: &str, topic: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::External(format!("table {table}: shuffle topic {topic}: {e}"))
}

impl ShuffleSource {
    pub fn open(
        table: &str,
        options: &ConnectorOptions,
        schema: SchemaRef,
        read: ShuffleRead,
    ) -> Result<Self> {
        let consumer: BaseConsumer = client_config(options)
            .set("group.id", format!("sluice-shuffle-{table}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| external(table, &read.topic, e))?;
        let mut source = ShuffleSource {
            table: table.to_string(),
            taken: Taken::new(read.upstream),
            read,
            schema,
            consumer,
            next: 0,
            resume_from: None,
            low: 0,
            last_error: None,
        };
        source.assign(0)?;
        Ok(source)
    }

    fn assign(&mut self, from: i64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.read.topic, self.read.partition, Offset::Offset(from))
            .and_then(|()| self.consumer.assign(&tpl))
            .map_err(|e| external(&self.table, &self.read.topic, e))
    }

    fn take(&mut self, offset: i64, payload: &[u8]) -> Result<Option<SourcePoll>> {
        let fail = |e: String| {
            RuntimeError::User(format!(
                "table {}: shuffle topic {} partition {} offset {offset}: {e} (another job's, or this job's before its table changed: remove the topic and the job's checkpoints)",
                self.table, self.read.topic, self.read.partition
            ))
        };
        let frame = Frame::decode(payload).map_err(|e| fail(e.to_string()))?;
        Ok(match self.taken.take(frame, &self.schema).map_err(fail)? {
            Taking::Rows { partition, batch } => Some(SourcePoll::Batch { partition, batch }),
            Taking::Nothing => None,
            Taking::Progress {
                partition,
                progress,
            } => Some(SourcePoll::Progress {
                partition,
                max_event: progress.max_event,
                idle: progress.idle || progress.end,
            }),
        })
    }
}

impl Source for ShuffleSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.read.upstream
    }

    fn next_batch(&mut self) -> Result<Option<arrow::record_batch::RecordBatch>> {
        loop {
            match self.poll()? {
                SourcePoll::Batch { batch, .. } => return Ok(Some(batch)),
                SourcePoll::End => return Ok(None),
                SourcePoll::Idle | SourcePoll::Progress { .. } => {}
            }
        }
    }

    /// The next shuffle offset, and per source partition the offset after the highest
    /// taken (`from.<p>`) and whether it ended (`ended.<p>`).
    fn position(&self) -> Positions {
        let mut p = Positions::new();
        p.insert("next".into(), self.next);
        for (i, h) in self.taken.highest.iter().enumerate() {
            if let Some(h) = h {
                p.insert(format!("from.{i}"), h + 1);
            }
            if self.taken.ended[i] {
                p.insert(format!("ended.{i}"), 1);
            }
        }
        p
    }

    fn seek(&mut self, position: &Positions) -> Result<()> {
        self.next = position.get("next").copied().unwrap_or(0);
        for i in 0..self.read.upstream {
            self.taken.highest[i] = position.get(&format!("from.{i}")).map(|o| o - 1);
            self.taken.ended[i] = position.contains_key(&format!("ended.{i}"));
        }
        let (low, _) = self
            .consumer
            .fetch_watermarks(
                &self.read.topic,
                self.read.partition,
                Duration::from_secs(30),
            )
            .map_err(|e| external(&self.table, &self.read.topic, e))?;
        self.low = low;
        let from = (self.next - LOOKBACK).max(low).min(self.next);
        self.resume_from = (from < self.next).then_some(from);
        self.assign(from)
    }

    fn poll(&mut self) -> Result<SourcePoll> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(200) {
            if self.taken.all_ended() {
                return Ok(SourcePoll::End);
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    if self
                        .last_error
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                    {
                        tracing::warn!(table = %self.table, "shuffle topic {}: {e}; waiting for the broker", self.read.topic);
                        self.last_error = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Ok(msg)) => {
                    let offset = msg.offset();
                    // The broker skipped past the saved offset: read from further back.
                    if let Some(from) = self.resume_from.take()
                        && offset > self.next
                        && from > self.low
                    {
                        let wider = (from - 4 * (self.next - from)).max(self.low);
                        drop(msg);
                        self.resume_from = Some(wider);
                        self.assign(wider)?;
                        continue;
                    }
                    if offset < self.next {
                        continue;
                    }
                    self.next = offset + 1;
                    let payload = msg.payload().unwrap_or_default().to_vec();
                    drop(msg);
                    if let Some(out) = self.take(offset, &payload)? {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(SourcePoll::Idle)
    }
}
