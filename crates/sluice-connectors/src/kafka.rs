//! Kafka source: reads a topic's partitions, assigned explicitly (the offsets are
//! Sluice's, not the broker's auto-commit), decodes JSON values straight into Arrow per
//! partition, follows the table's `bad_data` policy, and in `scan.bounded.mode =
//! 'latest-offset'` ends at the end offsets seen at start. At parallelism above 1 its
//! partitions are split over several consumers, each on a task of its own. Broker
//! outages are retried with backoff and logged; librdkafka reconnects by itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_runtime::{JobMetrics, Positions, Result, RuntimeError, Source, SourcePoll};
use sluice_types::{Backoff, ConnectorOptions, Interrupt};

use crate::dead_letter::DeadLetters;
use crate::error::ConnectorError;
use crate::file_source::BadData;
use crate::json::JsonDecoder;

mod options;

pub use options::{
    REFUSED_CLIENT_PROPERTIES, SINK_OPTIONS, SOURCE_OPTIONS, check_client_properties, check_sink,
    check_source, client_config, exactly_once, listed_partitions, producer_config,
};

/// librdkafka reports reaching a partition's end as an error; that is expected here.
/// Logs librdkafka's errors and reports consumer lag from its statistics.
pub struct SourceContext {
    table: String,
    metrics: Arc<JobMetrics>,
}

impl rdkafka::ClientContext for SourceContext {
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for (&p, part) in &topic.partitions {
                if p >= 0 && part.consumer_lag >= 0 {
                    self.metrics.set_lag(&self.table, p, part.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::warn!("kafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for SourceContext {}

pub struct KafkaSource {
    table: String,
    topic: String,
    consumer: BaseConsumer<SourceContext>,
    /// Partition ids, in the order the runtime numbers them.
    partitions: Vec<i32>,
    index: HashMap<i32, usize>,
    schema: SchemaRef,
    decoder: JsonDecoder,
    batch_size: usize,
    bad_data: BadData,
    dead_letters: Option<DeadLetters>,
    metrics: Arc<JobMetrics>,
    /// End offsets (exclusive) in bounded mode, as listed at start.
    end: Option<Vec<i64>>,
    /// Whether the consumer has reached the end of each partition since its last record.
    at_eof: Vec<bool>,
    /// Next offset to read, per partition.
    next: Vec<i64>,
    /// Offset after the last record returned in a batch, per partition.
    emitted: Vec<i64>,
    pending: Vec<Vec<(i64, Vec<u8>)>>,
    /// The offset of each row of the batch last returned (a shuffle carries them).
    row_offsets: Vec<i64>,
    last_error: Option<Instant>,
    /// First offset per partition, as listed at start.
    low: Vec<i64>,
    /// Per partition, a resume in progress: read from `from`, drop records before
    /// `target` (see [`KafkaSource::seek`]).
    resume: Vec<Option<Resume>>,
    /// What the source was opened with, to open its parts when split.
    options: ConnectorOptions,
    interrupt: Interrupt,
    /// The positions of the last seek, for the parts of a split.
    sought: Option<Positions>,
}

#[derive(Debug, Clone, Copy)]
struct Resume {
    target: i64,
    from: i64,
}

/// How far before a saved offset a resume starts reading (records, per partition).
const RESUME_LOOKBACK: i64 = 10_000;
/// How far it may widen when the broker still skips the saved offset.
const RESUME_LOOKBACK_MAX: i64 = 1_000_000;

fn kafka_err(topic: &str, e: KafkaError) -> ConnectorError {
    ConnectorError::Io(format!("kafka topic {topic}: {e}"))
}

/// Pauses between attempts while the broker is away.
const RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));

/// Retries `f` with backoff until `deadline` or until the job is stopped, logging each miss.
fn with_retry<T>(
    what: &str,
    deadline: Duration,
    interrupt: &Interrupt,
    mut f: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let wait = RETRY.pause(attempt);
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() + wait < deadline => {
                tracing::warn!("{what}: {e}; retrying in {:.1}s", wait.as_secs_f64());
                if !interrupt.sleep(wait) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

impl KafkaSource {
    pub fn open(
        table: &str,
        options: &ConnectorOptions,
        schema: SchemaRef,
        metrics: Arc<JobMetrics>,
        interrupt: &Interrupt,
    ) -> Result<Self, ConnectorError> {
        check_source(options)
            .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
        let topic = options.get("topic").unwrap_or_default().to_string();
        let mut config = client_config(options);
        config
            .set(
                "group.id",
                options
                    .get("group.id")
                    .map_or_else(|| format!("sluice-{table}"), str::to_string),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // Statistics carry each partition's consumer lag, for /metrics.
            .set("statistics.interval.ms", "2000")
            // An offset that no longer exists (retention, a broker that lost its data)
            // resumes from the earliest record rather than skipping to the end.
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<SourceContext> = config
            .create_with_context(SourceContext {
                table: table.to_string(),
                metrics: metrics.clone(),
            })
            .map_err(|e| kafka_err(&topic, e))?;
        let timeout = Duration::from_secs(10);
        let metadata = with_retry(
            &format!("kafka topic {topic}: reading metadata"),
            Duration::from_secs(60),
            interrupt,
            || {
                let m = consumer.fetch_metadata(Some(&topic), timeout)?;
                match m.topics().first() {
                    Some(t) if !t.partitions().is_empty() => {
                        Ok(t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                    }
                    _ => Err(KafkaError::MetadataFetch(
                        rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                    )),
                }
            },
        )
        .map_err(|e| {
            ConnectorError::Config(format!(
                "table {table}: kafka topic {topic} cannot be read: {e}"
            ))
        })?;
        let mut partitions = metadata;
        partitions.sort();
        if let Some(list) = options.get("partitions") {
            let wanted = listed_partitions(list)
                .map_err(|m| ConnectorError::Config(format!("table {table}: {m}")))?;
            if let Some(p) = wanted.iter().find(|p| !partitions.contains(p)) {
                return Err(ConnectorError::Config(format!(
                    "table {table}: kafka topic {topic} has no partition {p} (it has {})",
                    partitions.len()
                )));
            }
            partitions.retain(|p| wanted.contains(p));
        }
        if let Some(k) = options.get("key.fields")
            && schema.index_of(k.trim()).is_err()
        {
            return Err(ConnectorError::Config(format!(
                "table {table}: key.fields names {k}, which is not one of its columns"
            )));
        }
        let bounded = options.get("scan.bounded.mode") == Some("latest-offset");
        let startup = options.get("scan.startup.mode").unwrap_or("earliest");
        let mut tpl = TopicPartitionList::new();
        let mut next = Vec::new();
        let mut end = Vec::new();
        let mut lows = Vec::new();
        for &p in &partitions {
            let (low, high) = with_retry(
                "kafka: reading offsets",
                Duration::from_secs(60),
                interrupt,
                || consumer.fetch_watermarks(&topic, p, timeout),
            )
            .map_err(|e| kafka_err(&topic, e))?;
            let offset = match startup {
                "latest" => Offset::Offset(high),
                "group-offsets" => Offset::Stored,
                _ => Offset::Beginning,
            };
            tpl.add_partition_offset(&topic, p, offset)
                .map_err(|e| kafka_err(&topic, e))?;
            next.push(if startup == "latest" { high } else { low });
            end.push(high);
            lows.push(low);
        }
        tracing::debug!(table, ?partitions, ?next, ?end, "kafka source assignment");
        consumer.assign(&tpl).map_err(|e| kafka_err(&topic, e))?;
        let batch_size = options
            .get("batch_size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(8192);
        let (bad_data, dead_letters) = BadData::open(table, options)?;
        let decoder = JsonDecoder::new(schema.clone(), batch_size)
            .map_err(|e| ConnectorError::Config(format!("table {table}: {e}")))?;
        let index = partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i))
            .collect();
        let n = partitions.len();
        Ok(KafkaSource {
            table: table.to_string(),
            topic,
            consumer,
            partitions,
            index,
            schema,
            decoder,
            batch_size,
            bad_data,
            dead_letters,
            metrics,
            end: bounded.then_some(end),
            at_eof: vec![false; n],
            emitted: next.clone(),
            next,
            pending: vec![Vec::new(); n],
            row_offsets: Vec::new(),
            last_error: None,
            low: lows,
            resume: vec![None; n],
            options: options.clone(),
            interrupt: interrupt.clone(),
            sought: None,
        })
    }

    /// Bounded mode ends once every partition has been read past the end offset listed
    /// at start and the consumer has then reached its end. (Some brokers list an end
    /// offset short of the last record batch; reading on to the partition's end keeps
    /// those records.)
    fn finished(&self) -> bool {
        match &self.end {
            Some(end) => (0..end.len())
                .all(|i| self.next[i] >= end[i] && self.at_eof[i] && self.pending[i].is_empty()),
            None => false,
        }
    }

    /// During a resume, whether the first record at or after the saved offset is one to
    /// keep; widens the lookback (and drops it) when the broker skipped past the offset.
    fn resumed(&mut self, slot: usize, offset: i64) -> Result<bool> {
        let Some(r) = self.resume[slot] else {
            return Ok(true);
        };
        let low = self.low[slot];
        if offset > r.target && r.from > low && r.target - r.from < RESUME_LOOKBACK_MAX {
            let from = (r.target - 2 * (r.target - r.from)).max(low);
            self.consumer
                .seek(
                    &self.topic,
                    self.partitions[slot],
                    Offset::Offset(from),
                    Duration::from_secs(10),
                )
                .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))?;
            self.resume[slot] = Some(Resume {
                target: r.target,
                from,
            });
            return Ok(false);
        }
        if offset > r.target {
            tracing::warn!(
                table = %self.table,
                "kafka topic {} partition {}: resuming at offset {}, the first record is at {offset}: offsets between hold no records (compacted or deleted)",
                self.topic,
                self.partitions[slot],
                r.target
            );
        }
        self.resume[slot] = None;
        Ok(true)
    }

    /// Decodes a partition's pending records into one batch.
    fn decode(&mut self, slot: usize) -> Result<Option<RecordBatch>> {
        let records = std::mem::take(&mut self.pending[slot]);
        if let Some((last, _)) = records.last() {
            self.emitted[slot] = last + 1;
        }
        let slices: Vec<&[u8]> = records.iter().map(|(_, v)| v.as_slice()).collect();
        let (batch, bad) = self
            .decoder
            .decode_lines(&slices)
            .map_err(|e| RuntimeError::Internal(format!("json decoder: {e}")))?;
        let partition = self.partitions[slot];
        for b in &bad {
            let (offset, raw) = &records[b.index];
            match self.bad_data {
                BadData::Fail => {
                    return Err(RuntimeError::User(format!(
                        "table {}: kafka topic {} partition {partition} offset {offset}: {} (set bad_data = 'drop' or 'dead_letter' to go on)",
                        self.table, self.topic, b.error
                    )));
                }
                BadData::Drop => {}
                BadData::DeadLetter => {
                    if let Some(dl) = self.dead_letters.as_mut() {
                        dl.write(raw, &b.error, &self.topic, partition as i64, *offset)?;
                    }
                }
            }
        }
        let mut skipped: Vec<usize> = bad.iter().map(|b| b.index).collect();
        skipped.sort_unstable();
        let mut skipped = skipped.into_iter().peekable();
        self.row_offsets.clear();
        for (i, (offset, _)) in records.iter().enumerate() {
            if skipped.next_if_eq(&i).is_none() {
                self.row_offsets.push(*offset);
            }
        }
        self.metrics.add_bad_records(bad.iter().map(|b| {
            let (offset, raw) = &records[b.index];
            sluice_runtime::BadRecord::new(
                &self.table,
                &self.topic,
                partition as i64,
                *offset,
                &b.error,
                raw,
            )
        }));
        Ok(batch)
    }
}

impl KafkaSource {
    /// Reads only the partitions `keep` from now on, each where it was.
    fn retain(&mut self, keep: &[i32]) -> Result<()> {
        let slots: Vec<usize> = (0..self.partitions.len())
            .filter(|&s| keep.contains(&self.partitions[s]))
            .collect();
        fn pick<T: Clone>(v: &[T], slots: &[usize]) -> Vec<T> {
            slots.iter().map(|&s| v[s].clone()).collect()
        }
        self.partitions = pick(&self.partitions, &slots);
        self.end = self.end.as_ref().map(|e| pick(e, &slots));
        self.at_eof = pick(&self.at_eof, &slots);
        self.next = pick(&self.next, &slots);
        self.emitted = pick(&self.emitted, &slots);
        self.pending = pick(&self.pending, &slots);
        self.low = pick(&self.low, &slots);
        self.resume = pick(&self.resume, &slots);
        self.index = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, i))
            .collect();
        // Not resumed from a checkpoint, a group's offsets are still the broker's to say.
        let stored =
            self.sought.is_none() && self.options.get("scan.startup.mode") == Some("group-offsets");
        let mut tpl = TopicPartitionList::new();
        for (slot, &p) in self.partitions.iter().enumerate() {
            let from = match self.resume[slot] {
                _ if stored => Offset::Stored,
                Some(r) => Offset::Offset(r.from),
                None => Offset::Offset(self.next[slot]),
            };
            tpl.add_partition_offset(&self.topic, p, from)
                .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))
    }

    /// The offset of each row of the batch [`Source::poll`] returned last, in order.
    pub fn row_offsets(&self) -> &[i64] {
        &self.row_offsets
    }

    /// The topic's partition id of the runtime's partition `slot`.
    pub fn partition_id(&self, slot: usize) -> Option<i32> {
        self.partitions.get(slot).copied()
    }
}

impl Source for KafkaSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partitions(&self) -> usize {
        self.partitions.len()
    }

    fn position(&self) -> Positions {
        self.partitions
            .iter()
            .zip(&self.emitted)
            .map(|(p, o)| (p.to_string(), *o))
            .collect()
    }

    /// Resumes each partition at its saved offset. Reading starts up to
    /// [`RESUME_LOOKBACK`] records earlier and drops what comes before the offset:
    /// Kafka answers a fetch in the middle of a record batch with the whole batch, but
    /// some Kafka-protocol brokers (tansu 0.6) answer it with the next batch, which would
    /// silently skip the rest of the batch holding the saved offset. If the first record
    /// read is still past the offset, the lookback widens; a gap that remains (a
    /// compacted topic) is reported.
    fn seek(&mut self, position: &Positions) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (slot, &p) in self.partitions.iter().enumerate() {
            let Some(&offset) = position.get(&p.to_string()) else {
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(self.next[slot]))
                    .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))?;
                continue;
            };
            let from = (offset - RESUME_LOOKBACK).max(self.low[slot]).min(offset);
            tpl.add_partition_offset(&self.topic, p, Offset::Offset(from))
                .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))?;
            self.resume[slot] = (from < offset).then_some(Resume {
                target: offset,
                from,
            });
            self.next[slot] = offset;
            self.emitted[slot] = offset;
            self.pending[slot].clear();
            self.at_eof[slot] = false;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))?;
        tracing::debug!(table = %self.table, ?position, "kafka source resumed");
        self.sought = Some(position.clone());
        Ok(())
    }

    /// One consumer per share of the partitions (round robin over up to `n` parts),
    /// each resumed where the last seek put its partitions. A table with dead letters
    /// keeps one consumer (one writer of its dead-letter file).
    fn split(&mut self, n: usize) -> Result<Vec<Box<dyn Source>>> {
        let parts = n.min(self.partitions.len());
        if parts < 2 || self.dead_letters.is_some() {
            return Ok(Vec::new());
        }
        let mut opened = Vec::new();
        for part in 1..parts {
            let share: Vec<String> = self
                .partitions
                .iter()
                .skip(part)
                .step_by(parts)
                .map(i32::to_string)
                .collect();
            let mut options = self.options.clone();
            options.insert(
                "partitions",
                share.join(","),
                sluice_types::Position::default(),
            );
            let mut source = KafkaSource::open(
                &self.table,
                &options,
                self.schema.clone(),
                self.metrics.clone(),
                &self.interrupt,
            )
            .map_err(RuntimeError::from)?;
            if let Some(p) = &self.sought {
                source.seek(p)?;
            }
            opened.push(Box::new(source) as Box<dyn Source>);
        }
        // This consumer keeps the first share.
        let keep: Vec<i32> = self.partitions.iter().step_by(parts).copied().collect();
        self.retain(&keep)?;
        Ok(opened)
    }

    /// Commits the checkpoint's offsets to the consumer group, so that the usual Kafka
    /// tools show this job's lag. Sluice itself restores from its checkpoints.
    fn checkpointed(&mut self, position: &Positions) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in position {
            if let Ok(p) = p.parse::<i32>()
                && self.index.contains_key(&p)
            {
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(*o))
                    .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))?;
            }
        }
        self.consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Async)
            .map_err(|e| RuntimeError::External(kafka_err(&self.topic, e).to_string()))
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            match self.poll()? {
                SourcePoll::Batch { batch, .. } => return Ok(Some(batch)),
                SourcePoll::End => return Ok(None),
                SourcePoll::Idle | SourcePoll::Progress { .. } => {}
            }
        }
    }

    fn poll(&mut self) -> Result<SourcePoll> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(200) {
            if self.finished() {
                return Ok(SourcePoll::End);
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(&slot) = self.index.get(&p) {
                        self.at_eof[slot] = true;
                    }
                }
                Some(Err(e)) => {
                    // Broker trouble: librdkafka retries; say so, at most every 5 s.
                    if self
                        .last_error
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
                    {
                        tracing::warn!(table = %self.table, "kafka topic {}: {e}; waiting for the broker", self.topic);
                        self.last_error = Some(Instant::now());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(Ok(msg)) => {
                    let Some(&slot) = self.index.get(&msg.partition()) else {
                        continue;
                    };
                    let offset = msg.offset();
                    let payload = msg.payload().unwrap_or_default().to_vec();
                    drop(msg);
                    // A record before the next offset was read already, or precedes a
                    // resume's offset: some brokers send a record batch again (tansu
                    // 0.6 repeats the last batch of a partition), and a replayed record
                    // would be counted twice.
                    if offset < self.next[slot] || !self.resumed(slot, offset)? {
                        continue;
                    }
                    self.at_eof[slot] = false;
                    self.next[slot] = offset + 1;
                    self.pending[slot].push((offset, payload));
                    if self.pending[slot].len() >= self.batch_size
                        && let Some(batch) = self.decode(slot)?
                    {
                        return Ok(SourcePoll::Batch {
                            partition: slot,
                            batch,
                        });
                    }
                }
            }
        }
        // Flush the partition with the most pending records.
        if let Some(slot) = (0..self.pending.len())
            .filter(|&s| !self.pending[s].is_empty())
            .max_by_key(|&s| self.pending[s].len())
            && let Some(batch) = self.decode(slot)?
        {
            return Ok(SourcePoll::Batch {
                partition: slot,
                batch,
            });
        }
        if self.finished() {
            return Ok(SourcePoll::End);
        }
        Ok(SourcePoll::Idle)
    }
}
