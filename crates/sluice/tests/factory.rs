//! Factory monitoring over real services: factory readings in a Kafka topic (the test
//! broker), thresholds in PostgreSQL looked up by the alert job (`sql/factory_alerts.sql`
//! with the Kafka and PostgreSQL catalogs), alerts upserted into PostgreSQL. A threshold
//! edited while the job runs applies to the readings sent once the lookup cache's TTL
//! has passed; the readings before it keep the old one. A broker stopped and started
//! under the job loses no alert, in PostgreSQL or in the alerts topic.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use rdkafka::ClientConfig;
use sluice_connectors::generator::{GeneratorOptions, GeneratorSource, SENSOR_TYPES};
use sluice_runtime::Source;
use sqlx::{Connection, Row};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn exec(url: &str, sql: &str) {
    pg::rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    });
}

/// (alert id, level) of every alert in PostgreSQL.
fn alerts(url: &str) -> BTreeSet<(String, String)> {
    pg::rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("SELECT alert_id, level FROM factory_alerts")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
            .collect()
    })
}

/// The alerts a batch of readings gives with a temperature warning level of
/// `temperature_warning` (the other levels as `sql/schema.sql` sets them).
fn oracle(batches: &[RecordBatch], temperature_warning: f64) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for b in batches {
        let types = b.column_by_name("sensor_type").unwrap().as_string::<i32>();
        let values = b
            .column_by_name("value")
            .unwrap()
            .as_primitive::<Float64Type>();
        let ids = b
            .column_by_name("reading_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let s = SENSOR_TYPES
                .iter()
                .find(|s| s.name == types.value(i))
                .unwrap();
            let warning = if s.name == "temperature" {
                temperature_warning
            } else {
                s.warning
            };
            let v = values.value(i);
            if v >= warning {
                let level = if v >= s.critical {
                    "critical"
                } else {
                    "warning"
                };
                out.insert((format!("alert-{}", ids.value(i)), level.to_string()));
            }
        }
    }
    out
}

fn wait_for(url: &str, want: &BTreeSet<(String, String)>, what: &str) {
    let t0 = Instant::now();
    loop {
        let got = alerts(url);
        if &got == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: {} alerts in PostgreSQL, {} expected; missing {:?}; unexpected {:?}",
            got.len(),
            want.len(),
            want.difference(&got).take(5).collect::<Vec<_>>(),
            got.difference(want).take(5).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The alert job (`sql/factory_alerts.sql`, Kafka and PostgreSQL catalogs) running on
/// `brokers` and a fresh database with the schema; a factory generator whose readings
/// the test sends in parts; a producer.
struct Factory {
    db: String,
    brokers: String,
    readings: String,
    alert_events: String,
    handle: sluice_runtime::JobHandle,
    job: std::thread::JoinHandle<anyhow::Result<()>>,
    generator: GeneratorSource,
    _data: tempfile::TempDir,
}

impl Factory {
    fn start(name: &str, brokers: &str, ttl: &str) -> Self {
        let db = pg::fresh_database(name);
        exec(
            &db,
            &std::fs::read_to_string(repo().join("sql/schema.sql")).unwrap(),
        );
        let (readings, alert_events) = (
            support::unique_topic("factory_readings"),
            support::unique_topic("factory_alerts"),
        );
        sluice::generate::ensure_topic(brokers, &readings, 1).unwrap();
        sluice::generate::ensure_topic(brokers, &alert_events, 1).unwrap();
        let vars = [
            ("KAFKA_BROKERS", brokers.to_string()),
            ("DATABASE_URL", db.clone()),
            ("FACTORY_READINGS_TOPIC", readings.clone()),
            ("FACTORY_ALERTS_TOPIC", alert_events.clone()),
            ("THRESHOLDS_TTL", ttl.to_string()),
        ];
        let sql = format!(
            "SET checkpoint_interval = '200ms';\n{}",
            std::fs::read_to_string(repo().join("sql/factory_alerts.sql")).unwrap()
        );
        let data = tempfile::tempdir().unwrap();
        let rules = sluice_types::JobRules::submitted(
            data.path().to_path_buf(),
            vars.iter().map(|(k, _)| k.to_string()).collect(),
        );
        let run = support::build_job_with_catalogs(
            &sql,
            &support::sql_catalogs(&["kafka", "postgres"]),
            &vars,
            1,
            &rules,
        );
        let handle = run.handle.clone();
        let job = std::thread::spawn(move || run.run());

        // Readings of 10 machines, 2 % of them faults.
        let mut options = sluice_types::ConnectorOptions::default();
        for (k, v) in [
            ("connector", "generator"),
            ("profile", "factory"),
            ("keys", "10"),
            ("seed", "3"),
            ("rate", "0"),
            ("anomaly_fraction", "0.02"),
            ("batch_size", "1000"),
            ("start_time", "2024-05-01T00:00:00Z"),
        ] {
            options.insert(k, v.to_string(), sluice_types::Position::default());
        }
        let opts = GeneratorOptions::parse(&options).unwrap();
        let schema = opts.profile.schema();
        let generator = GeneratorSource::new("factory_readings", opts, schema).unwrap();
        Factory {
            db,
            brokers: brokers.to_string(),
            readings,
            alert_events,
            handle,
            job,
            generator,
            _data: data,
        }
    }

    /// The next 3,000 readings, sent to the readings topic.
    fn send_part(&mut self) -> Vec<RecordBatch> {
        let part: Vec<RecordBatch> = (0..3)
            .map(|_| self.generator.next_batch().unwrap().unwrap())
            .collect();
        // As JSON, keyed by machine, as `sluice generate` sends them.
        let mut text = Vec::new();
        sluice_runtime::output::json_lines(&part, &mut text).unwrap();
        support::send_json_lines(
            &self.brokers,
            &self.readings,
            std::str::from_utf8(&text).unwrap(),
            "machine_id",
        );
        part
    }

    fn finish(self) {
        self.handle.stop();
        self.job.join().unwrap().unwrap();
    }
}

/// The keys of every record in `topic` (the alert ids the job sent).
fn topic_keys(brokers: &str, topic: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", support::unique_topic("factory-check"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut keys = Vec::new();
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).to_string());
            quiet = Instant::now();
        }
    }
    keys
}

#[test]
fn an_edited_threshold_applies_to_readings_sent_after_the_lookup_ttl() {
    let mut f = Factory::start("factory_ttl", &support::brokers(), "300ms");

    // Before the edit: the thresholds as the schema sets them.
    let before = f.send_part();
    let mut want = oracle(&before, 75.0);
    assert!(want.len() > 20, "{} alerts before the edit", want.len());
    wait_for(&f.db, &want, "before the edit");

    // Temperatures from 65 °C on now warn; after the cache's TTL, readings sent meet it.
    exec(
        &f.db,
        "UPDATE sensor_thresholds SET warning = 65 WHERE sensor_type = 'temperature'",
    );
    std::thread::sleep(Duration::from_millis(1_000));
    let after = f.send_part();
    let new = oracle(&after, 65.0);
    assert!(
        new.len() > oracle(&after, 75.0).len() + 50,
        "the edit should make many more alerts"
    );
    want.extend(new);
    wait_for(&f.db, &want, "after the edit and the TTL");
    let db = f.db.clone();
    f.finish();
    // Nothing more came: the alerts are exactly the oracle's.
    assert_eq!(alerts(&db), want);
}

#[test]
fn the_broker_stopped_and_started_under_the_job_loses_no_alert() {
    let port = support::free_port();
    let state = tempfile::tempdir().unwrap();
    let brokers = format!("127.0.0.1:{port}");
    support::private_broker("start", port, state.path());
    let mut f = Factory::start("factory_drill", &brokers, "1 min");
    let mut want = oracle(&f.send_part(), 75.0);
    wait_for(&f.db, &want, "before the outage");

    // The broker goes away under the running job, for a few seconds; the job waits.
    support::private_broker("stop", port, state.path());
    std::thread::sleep(Duration::from_secs(3));
    assert!(!f.job.is_finished(), "the job must wait for the broker");
    support::private_broker("start", port, state.path());

    want.extend(oracle(&f.send_part(), 75.0));
    wait_for(&f.db, &want, "after the outage");
    let (brokers, topic) = (f.brokers.clone(), f.alert_events.clone());
    f.finish();
    // The alert events in Kafka: every alert, each id at least once (the test broker
    // has no transactions: at least once, keyed by id).
    let keys: BTreeSet<String> = topic_keys(&brokers, &topic).into_iter().collect();
    let ids: BTreeSet<String> = want.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(keys, ids, "the alert topic holds every alert");
    support::private_broker("stop", port, state.path());
}
