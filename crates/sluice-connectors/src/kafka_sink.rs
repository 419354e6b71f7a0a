//! Kafka sink: each row as a JSON object (timestamps as RFC 3339 UTC text), keyed by an
//! optional column. Waits and retries while the broker's queue is full or it is away.

use std::time::{Duration, Instant};

use datafusion::arrow::array::Array;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::ClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use sluice_runtime::{Result, RuntimeError, Sink, SinkState};
use sluice_types::ConnectorOptions;
use sluice_types::Epoch;

use crate::error::ConnectorError;
use crate::json::{json_lines, timestamps_as_text};
use crate::kafka::client_config;

/// Counts records librdkafka gave up on (after its own retries, within
/// `message.timeout.ms`), so that none is lost silently.
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// An error if any record could not be delivered.
    pub fn check(&self, topic: &str) -> Result<(), String> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let last = self
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_default();
        Err(format!(
            "{failed} records could not be delivered to kafka topic {topic}: {last}"
        ))
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(e.to_string());
            }
        }
    }
}

/// A producer that counts failed deliveries.
pub type CountingProducer = BaseProducer<Deliveries>;

pub struct KafkaSink {
    table: String,
    topic: String,
    rows: KeyedRows,
    producer: CountingProducer,
}

/// Rows as Kafka records: each a JSON object (timestamps as RFC 3339 UTC text), keyed by
/// an optional column's text.
pub struct KeyedRows {
    table: String,
    key: Option<String>,
}

/// Why a row could not become a record.
pub enum RowsError {
    Kafka(KafkaError),
    Other(String),
}

impl KeyedRows {
    pub fn new(table: &str, key: Option<&str>) -> Self {
        KeyedRows {
            table: table.to_string(),
            key: key.map(str::to_string),
        }
    }

    /// Calls `send` with each row's key and value, in order.
    pub fn each(
        &self,
        batch: &RecordBatch,
        mut send: impl FnMut(Option<&[u8]>, &[u8]) -> Result<(), KafkaError>,
    ) -> Result<(), RowsError> {
        let text = timestamps_as_text(batch).map_err(|e| RowsError::Other(e.to_string()))?;
        let mut buf = Vec::new();
        json_lines(std::slice::from_ref(batch), &mut buf)
            .map_err(|e| RowsError::Other(e.to_string()))?;
        let key_col = match &self.key {
            Some(k) => Some(text.column(text.schema().index_of(k).map_err(|_| {
                RowsError::Other(format!(
                    "table {}: key column {k} is not in the output",
                    self.table
                ))
            })?)),
            None => None,
        };
        let options = FormatOptions::default();
        let formatter = key_col
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .transpose()
            .map_err(|e| RowsError::Other(e.to_string()))?;
        for (row, line) in buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let key = match (&formatter, key_col) {
                (Some(f), Some(c)) if !c.is_null(row) => Some(f.value(row).to_string()),
                _ => None,
            };
            send(key.as_deref().map(str::as_bytes), line).map_err(RowsError::Kafka)?;
        }
        Ok(())
    }
}

impl KafkaSink {
    pub fn open(table: &str, options: &ConnectorOptions) -> Result<Self, ConnectorError> {
        let topic = options.get("topic").unwrap_or_default().to_string();
        let producer: CountingProducer = client_config(options)
            .set("linger.ms", "5")
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(Deliveries::default())
            .map_err(|e| ConnectorError::Io(format!("table {table}: kafka producer: {e}")))?;
        Ok(KafkaSink {
            table: table.to_string(),
            topic,
            rows: KeyedRows::new(table, options.get("key")),
            producer,
        })
    }
}

/// Sends one record, waiting while librdkafka's queue is full.
pub fn send_record(
    producer: &CountingProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<(), KafkaError> {
    let mut warned = Instant::now() - Duration::from_secs(60);
    loop {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                if warned.elapsed() > Duration::from_secs(5) {
                    tracing::info!("kafka topic {topic}: producer queue full, waiting");
                    warned = Instant::now();
                }
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

impl KafkaSink {
    /// Waits until librdkafka has delivered or given up on every queued record; a record
    /// it gave up on fails the job.
    fn flush(&self) -> Result<()> {
        let fail = |e: String| {
            RuntimeError::External(format!(
                "table {}: kafka topic {}: {e}",
                self.table, self.topic
            ))
        };
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| fail(e.to_string()))?;
        self.producer.context().check(&self.topic).map_err(fail)
    }
}

impl Sink for KafkaSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let (producer, topic) = (&self.producer, self.topic.as_str());
        self.rows
            .each(batch, |key, value| send_record(producer, topic, key, value))
            .map_err(|e| match e {
                RowsError::Kafka(e) => RuntimeError::External(format!(
                    "table {}: kafka topic {}: {e}",
                    self.table, self.topic
                )),
                RowsError::Other(m) => RuntimeError::User(m),
            })?;
        self.producer.poll(Duration::ZERO);
        self.producer
            .context()
            .check(&self.topic)
            .map_err(|e| RuntimeError::External(format!("table {}: {e}", self.table)))
    }

    /// At-least-once: every record handed to librdkafka before the barrier is delivered
    /// (or the job fails) before the checkpoint can complete.
    fn pre_commit(&mut self, _epoch: Epoch) -> Result<SinkState> {
        self.flush()?;
        Ok(SinkState::default())
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()
    }
}
