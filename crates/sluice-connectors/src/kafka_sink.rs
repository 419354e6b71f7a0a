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
use sluice_types::Epoch;
use sluice_types::{ConnectorOptions, RowKind};

use crate::error::ConnectorError;
use crate::json::{json_lines, timestamps_as_text};
use crate::kafka::producer_config;

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

/// How rows become records: JSON objects (timestamps as RFC 3339 UTC text) keyed by an
/// optional column's text; for an updating result, `'changelog.mode' = 'upsert'` (key:
/// a JSON object of the key columns; value: the row, or no value, a tombstone, for a
/// delete; an update-before is not written, its update-after replaces it), or
/// `format = 'debezium-json'` (value: `{"before", "after", "op"}` with op `c`, `u` or
/// `d`; an update's `-U`/`+U` pair is one `u`).
pub struct KeyedRows {
    table: String,
    key: Vec<String>,
    format: RecordFormat,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RecordFormat {
    Plain,
    Upsert,
    Debezium,
}

/// Why a row could not become a record.
pub enum RowsError {
    Kafka(KafkaError),
    Other(String),
}

/// One JSON line per row of `batch`.
fn lines(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, RowsError> {
    let mut buf = Vec::new();
    json_lines(std::slice::from_ref(batch), &mut buf)
        .map_err(|e| RowsError::Other(e.to_string()))?;
    Ok(buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

impl KeyedRows {
    pub fn new(table: &str, options: &ConnectorOptions) -> Self {
        let format = if options.get("format") == Some("debezium-json") {
            RecordFormat::Debezium
        } else if options.get("changelog.mode") == Some("upsert") {
            RecordFormat::Upsert
        } else {
            RecordFormat::Plain
        };
        KeyedRows {
            table: table.to_string(),
            key: options
                .get("key")
                .unwrap_or_default()
                .split(',')
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect(),
            format,
        }
    }

    fn key_columns(&self, batch: &RecordBatch) -> Result<Vec<usize>, RowsError> {
        self.key
            .iter()
            .map(|k| {
                batch.schema().index_of(k).map_err(|_| {
                    RowsError::Other(format!(
                        "table {}: key column {k} is not in the output",
                        self.table
                    ))
                })
            })
            .collect()
    }

    /// Each row's key: the key column's text (plain, Debezium), or a JSON object of the
    /// key columns (upsert); none without a key.
    fn keys(&self, data: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>, RowsError> {
        let cols = self.key_columns(data)?;
        let n = data.num_rows();
        if cols.is_empty() {
            return Ok(vec![None; n]);
        }
        if self.format == RecordFormat::Upsert {
            let keys = data
                .project(&cols)
                .map_err(|e| RowsError::Other(e.to_string()))?;
            return Ok(lines(&keys)?.into_iter().map(Some).collect());
        }
        let text = timestamps_as_text(data).map_err(|e| RowsError::Other(e.to_string()))?;
        let c = text.column(cols[0]);
        let options = FormatOptions::default();
        let f = ArrayFormatter::try_new(c.as_ref(), &options)
            .map_err(|e| RowsError::Other(e.to_string()))?;
        Ok((0..n)
            .map(|r| (!c.is_null(r)).then(|| f.value(r).to_string().into_bytes()))
            .collect())
    }

    /// Calls `send` with each record's key and value (none: a tombstone), in order.
    pub fn each(
        &self,
        batch: &RecordBatch,
        mut send: impl FnMut(Option<&[u8]>, Option<&[u8]>) -> Result<(), KafkaError>,
    ) -> Result<(), RowsError> {
        let kinds = sluice_types::changelog::kinds_of(batch);
        let data = sluice_types::changelog::data_columns(batch);
        let values = lines(&data)?;
        let keys = self.keys(&data)?;
        let mut send = |key: &Option<Vec<u8>>, value: Option<&[u8]>| {
            send(key.as_deref(), value).map_err(RowsError::Kafka)
        };
        let mut row = 0;
        while row < values.len() {
            let (key, value, kind) = (&keys[row], &values[row], kinds[row]);
            match self.format {
                RecordFormat::Plain => send(key, Some(value))?,
                RecordFormat::Upsert => match kind {
                    RowKind::Insert | RowKind::UpdateAfter => send(key, Some(value))?,
                    RowKind::Delete => send(key, None)?,
                    RowKind::UpdateBefore => {}
                },
                RecordFormat::Debezium => {
                    let json = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                    let next_after = kinds.get(row + 1) == Some(&RowKind::UpdateAfter);
                    let (before, after, op) = match kind {
                        RowKind::Insert => (None, Some(value), "c"),
                        RowKind::UpdateBefore if next_after => {
                            row += 1;
                            (Some(value), Some(&values[row]), "u")
                        }
                        RowKind::UpdateAfter => (None, Some(value), "u"),
                        RowKind::UpdateBefore | RowKind::Delete => (Some(value), None, "d"),
                    };
                    let envelope = format!(
                        "{{\"before\":{},\"after\":{},\"op\":\"{op}\"}}",
                        before.map_or("null".into(), |v| json(v)),
                        after.map_or("null".into(), |v| json(v)),
                    );
                    send(&keys[row], Some(envelope.as_bytes()))?;
                }
            }
            row += 1;
        }
        Ok(())
    }
}

impl KafkaSink {
    pub fn open(table: &str, options: &ConnectorOptions) -> Result<Self, ConnectorError> {
        let topic = options.get("topic").unwrap_or_default().to_string();
        let producer: CountingProducer = producer_config(options)
            .set("linger.ms", "5")
            .set("max.in.flight.requests.per.connection", "1")
            .create_with_context(Deliveries::default())
            .map_err(|e| ConnectorError::Io(format!("table {table}: kafka producer: {e}")))?;
        Ok(KafkaSink {
            table: table.to_string(),
            topic,
            rows: KeyedRows::new(table, options),
            producer,
        })
    }
}

/// Sends one record (no value: a tombstone), waiting while librdkafka's queue is full.
pub fn send_record(
    producer: &CountingProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(), KafkaError> {
    let mut warned = Instant::now() - Duration::from_secs(60);
    loop {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(v) = value {
            record = record.payload(v);
        }
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
