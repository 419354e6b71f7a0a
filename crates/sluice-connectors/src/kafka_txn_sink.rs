//! Kafka sink, exactly once (`'sink.delivery-guarantee' = 'exactly-once'`): each epoch's
//! rows go to the topic in one Kafka transaction, begun and committed only after the
//! epoch's checkpoint is durable. The same transaction commits an offset equal to the
//! epoch for a consumer group named after the job and sink; after a crash that offset
//! says whether an epoch's transaction committed, as `sluice_sink_progress` does for
//! PostgreSQL. Opening the producer fences any older one with the same transactional id.

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use sluice_runtime::{EpochStore, Result, RuntimeError};
use sluice_types::{ConnectorOptions, Epoch};

use crate::kafka::{client_config, producer_config};
use crate::kafka_sink::{CountingProducer, Deliveries, KeyedRows, RowsError, send_record};

/// How long a transaction call may take before the epoch's commit fails.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

struct Open {
    producer: CountingProducer,
    /// The marker group's metadata: it goes into every transaction.
    group: ConsumerGroupMetadata,
}

pub struct TransactionalKafkaSink {
    table: String,
    topic: String,
    options: ConnectorOptions,
    rows: KeyedRows,
    /// The transactional id and the marker group (both named after job and sink).
    id: String,
    open: Option<Open>,

    /// How long one transaction call may take.
    timeout: Duration,
}

impl TransactionalKafkaSink {
    pub fn new(table: &str, options: &ConnectorOptions) -> Self {
        TransactionalKafkaSink {
            table: table.to_string(),
            topic: options.get("topic").unwrap_or_default().to_string(),
            options: options.clone(),
            rows: KeyedRows::new(table, options),
            id: String::new(),
            open: None,

            timeout: TXN_TIMEOUT,
        }
    }

    fn fail(&self, what: &str, e: &KafkaError) -> RuntimeError {
        RuntimeError::External(format!(
            "table {}: kafka topic {}: {what}: {e}",
            self.table, self.topic
        ))
    }

    fn marker_partition(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        tpl
    }

    /// The newest epoch whose transaction committed, from the marker group's offset.
    fn read_marker(&self, marker: &BaseConsumer) -> Result<Option<u64>> {
        let committed = marker
            .committed_offsets(self.marker_partition(), self.timeout)
            .map_err(|e| self.fail("reading the committed epoch", &e))?;
        Ok(committed.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(n) if n >= 0 => Some(n as u64),
            _ => None,
        }))
    }
}

/// Exactly once through [`sluice_runtime::CommitOnCheckpoint`].
impl EpochStore for TransactionalKafkaSink {
    fn open(&mut self, job: &str, table: &str) -> Result<Option<Epoch>> {
        self.id = self
            .options
            .get("sink.transactional-id-prefix")
            .map_or_else(
                || format!("sluice-{job}-{table}"),
                |p| format!("{p}-{table}"),
            );
        let producer: CountingProducer = producer_config(&self.options)
            .set("transactional.id", &self.id)
            .set("enable.idempotence", "true")
            .set("transaction.timeout.ms", "60000")
            .create_with_context(Deliveries::default())
            .map_err(|e| self.fail("creating a transactional producer", &e))?;
        let marker: BaseConsumer = client_config(&self.options)
            .set("group.id", &self.id)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| self.fail("creating the marker consumer", &e))?;
        let group = marker.group_metadata().ok_or_else(|| {
            RuntimeError::Internal("the marker consumer has no group metadata".into())
        })?;
        // Fences every older producer of this sink (a paused or restarted job's), then
        // proves the broker can commit a transaction: one that re-commits the marker.
        let refused = |e: &KafkaError| {
            RuntimeError::User(format!(
                "table {}: the kafka broker at {} cannot commit transactions ({e}), so \
                 'sink.delivery-guarantee' = 'exactly-once' cannot be kept; use \
                 'sink.delivery-guarantee' = 'at-least-once' (nothing lost; after a crash a row may come twice)",
                self.table,
                self.options.get("bootstrap.servers").unwrap_or_default()
            ))
        };
        producer
            .init_transactions(self.timeout)
            .map_err(|e| refused(&e))?;
        let committed = self.read_marker(&marker)?;
        let mut probe = TopicPartitionList::new();
        probe
            .add_partition_offset(
                &self.topic,
                0,
                Offset::Offset(committed.unwrap_or(0) as i64),
            )
            .map_err(|e| self.fail("marking the epoch", &e))?;
        let proved = producer
            .begin_transaction()
            .and_then(|()| producer.send_offsets_to_transaction(&probe, &group, self.timeout))
            .and_then(|()| producer.commit_transaction(self.timeout));
        if let Err(e) = proved {
            let _ = producer.abort_transaction(self.timeout);
            return Err(refused(&e));
        }
        self.open = Some(Open { producer, group });
        Ok(committed.map(Epoch))
    }

    /// Writes `batches` as epoch `epoch` in one transaction with the epoch's marker.
    fn commit_epoch(&mut self, epoch: Epoch, batches: &[RecordBatch]) -> Result<()> {
        let Some(open) = &self.open else {
            return Err(RuntimeError::Internal(
                "a kafka sink committed before it was opened".into(),
            ));
        };
        let step = |what: &str, e: KafkaError| format!("{what}: {e}");
        let attempt = || -> std::result::Result<(), String> {
            let p = &open.producer;
            p.begin_transaction()
                .map_err(|e| step("beginning a transaction", e))?;
            for b in batches {
                self.rows
                    .each(b, |key, value| send_record(p, &self.topic, key, value))
                    .map_err(|e| match e {
                        RowsError::Kafka(e) => step("sending", e),
                        RowsError::Other(m) => m,
                    })?;
            }
            let mut marker = TopicPartitionList::new();
            marker
                .add_partition_offset(&self.topic, 0, Offset::Offset(epoch.0 as i64))
                .map_err(|e| step("marking the epoch", e))?;
            p.send_offsets_to_transaction(&marker, &open.group, self.timeout)
                .map_err(|e| step("marking the epoch", e))?;
            p.commit_transaction(self.timeout)
                .map_err(|e| step("committing", e))?;
            p.context().check(&self.topic)
        };
        match attempt() {
            Ok(()) => {
                tracing::debug!(table = %self.table, %epoch, "kafka transaction committed");
                Ok(())
            }
            Err(why) => {
                // Nothing of the epoch may stay visible: abort, then fail the job; the
                // restart commits the epoch again from the checkpoint.
                if let Err(abort) = open.producer.abort_transaction(self.timeout) {
                    tracing::warn!(
                        "table {}: aborting the transaction of epoch {epoch}: {abort}",
                        self.table
                    );
                }
                Err(RuntimeError::External(format!(
                    "table {}: kafka topic {}: epoch {epoch}: {why}",
                    self.table, self.topic
                )))
            }
        }
    }

    fn close(&mut self) -> Result<()> {
        self.open = None;
        Ok(())
    }
}

/// Against librdkafka's mock cluster, which takes the transaction calls but writes no
/// commit or abort markers, keeps no transactional offset commits and fences no older
/// producer: what a `read_committed` consumer sees, the marker read back after a restart
/// and fencing need a broker with transactions, which this machine does not have. What is
/// checked: when the sink sends, and that a failed commit aborts and fails the job (which
/// epochs a restore commits is `not_committed`, tested with the runtime).
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::StringArray;
    use rdkafka::ClientConfig;
    use rdkafka::Message;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use sluice_types::Position;

    use sluice_runtime::{CommitOnCheckpoint, Sink};

    use super::*;

    fn sink(servers: &str) -> CommitOnCheckpoint<TransactionalKafkaSink> {
        CommitOnCheckpoint::new(TransactionalKafkaSink::new("t", &options(servers)))
    }

    fn options(servers: &str) -> ConnectorOptions {
        let mut o = ConnectorOptions::default();
        for (k, v) in [
            ("connector", "kafka"),
            ("topic", "out"),
            ("bootstrap.servers", servers),
            ("sink.delivery-guarantee", "exactly-once"),
        ] {
            o.insert(k, v.to_string(), Position::default());
        }
        o
    }

    fn rows(ids: &[&str]) -> RecordBatch {
        RecordBatch::try_from_iter([(
            "id",
            Arc::new(StringArray::from(ids.to_vec())) as datafusion::arrow::array::ArrayRef,
        )])
        .unwrap()
    }

    /// Every record in the topic (read uncommitted: the mock writes no markers).
    fn records(servers: &str) -> Vec<String> {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("group.id", "reader")
            .set("enable.partition.eof", "true")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("out", 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        loop {
            match c.poll(Duration::from_secs(5)) {
                Some(Ok(m)) => out.push(String::from_utf8_lossy(m.payload().unwrap()).to_string()),
                Some(Err(KafkaError::PartitionEOF(_))) | None => return out,
                Some(Err(e)) => panic!("{e}"),
            }
        }
    }

    fn cluster() -> (
        MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        String,
    ) {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("out", 1, 1).unwrap();
        let servers = mock.bootstrap_servers();
        (mock, servers)
    }

    #[test]
    fn an_epoch_is_sent_in_its_transaction_only_after_its_checkpoint() {
        let (_mock, servers) = cluster();
        let mut sink = sink(&servers);
        sink.open("job", "t").unwrap();
        sink.write_batch(&rows(&["a", "b"])).unwrap();
        let saved = sink.pre_commit(Epoch(1)).unwrap();
        assert_eq!(
            saved.pending.len(),
            1,
            "the checkpoint holds epoch 1's rows"
        );
        assert!(
            records(&servers).is_empty(),
            "nothing is sent before the commit"
        );
        sink.commit(Epoch(1)).unwrap();
        assert_eq!(sink.committed(), Some(1));
        sink.write_batch(&rows(&["c"])).unwrap();
        sink.pre_commit(Epoch(2)).unwrap();
        assert_eq!(
            records(&servers).len(),
            2,
            "epoch 2 waits for its checkpoint"
        );
        sink.commit(Epoch(2)).unwrap();
        assert_eq!(sink.committed(), Some(2));
        assert_eq!(
            records(&servers),
            vec![r#"{"id":"a"}"#, r#"{"id":"b"}"#, r#"{"id":"c"}"#]
        );
    }

    #[test]
    fn a_failed_commit_is_aborted_and_fails_the_job() {
        let (mock, servers) = cluster();
        let mut store = TransactionalKafkaSink::new("t", &options(&servers));
        store.timeout = Duration::from_secs(3);
        let mut sink = CommitOnCheckpoint::new(store);
        sink.open("job", "t").unwrap();
        sink.write_batch(&rows(&["x"])).unwrap();
        sink.pre_commit(Epoch(1)).unwrap();
        mock.request_errors(
            RDKafkaApiKey::TxnOffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED],
        );
        let err = sink.commit(Epoch(1)).unwrap_err();
        assert!(
            matches!(err, RuntimeError::External(_)) && err.to_string().contains("epoch 1"),
            "{err}"
        );
        assert!(
            sink.committed().is_none_or(|c| c < 1),
            "epoch 1 did not commit"
        );
    }
}
