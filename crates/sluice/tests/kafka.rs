//! Kafka in and out against a real Kafka-protocol broker over TCP (started by
//! `scripts/test.sh`, address in SLUICE_KAFKA_BROKERS): generator → topic → windowed job
//! equals the batch oracle over the events read back; an idle partition does not stop
//! windows from closing; malformed records are counted and dead-lettered with their
//! offsets; the Kafka sink's records, read back by a second client, are the job's output.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/iot.rs"]
mod iot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::json::ReaderBuilder;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use iot::IOT_COLUMNS;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluice::engine::{JobRun, RunOptions};

fn topic(name: &str) -> String {
    support::unique_topic(name)
}

/// One record read back: (partition, offset, key, value).
type Record = (i32, i64, Option<Vec<u8>>, Vec<u8>);

/// Every record of a topic, per partition in offset order.
fn read_back(topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", support::brokers())
        .set("group.id", format!("reader-{topic}"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    // Read until every partition has reported its end and nothing more came for a
    // moment (the broker's listed end offsets are not trusted: the in-memory test
    // broker lists the last batch's first offset).
    let mut at_end = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while (at_end.len() < parts.len() || last.elapsed() < Duration::from_millis(1500))
        && Instant::now() < deadline
    {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last = Instant::now();
                at_end.remove(&m.partition());
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    assert_eq!(
        at_end.len(),
        parts.len(),
        "could not read the whole topic back"
    );
    out.sort_by_key(|r| (r.0, r.1));
    out
}

fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", support::brokers())
        .create()
        .unwrap()
}

/// Runs a job at parallelism 2.
fn run_sql(sql: &str, vars: &[(&str, String)]) -> sluice_runtime::MetricsSnapshot {
    support::run_job(sql, vars, 2)
}

/// A new 3-partition topic holding 30,000 generated IoT events (unpaced).
fn generated_topic(name: &str, options: &[(&str, &str)]) -> String {
    let t = topic(name);
    let mut all = vec![("rate", "0")];
    all.extend_from_slice(options);
    support::generate_topic("iot", &t, 3, &all, 30_000);
    t
}

#[test]
fn generator_to_three_partitions_to_tumble_matches_batch_oracle() {
    let t = generated_topic(
        "iot",
        &[("speedup", "60"), ("start_time", "2024-05-01T00:00:00Z")],
    );

    let records = read_back(&t);
    assert_eq!(records.len(), 30000);
    let partitions: std::collections::BTreeSet<i32> = records.iter().map(|r| r.0).collect();
    assert_eq!(
        partitions.len(),
        3,
        "keyed records spread over the partitions"
    );
    // Each record is in the partition Kafka's Java client would choose for its key, the
    // one Sluice's key hash gives the key column: a stage keyed by it follows the topic.
    for (partition, offset, key, _) in &records {
        let key = key.as_deref().expect("generated records are keyed");
        let hash = (sluice_types::key_hash::murmur2(key) as u32) & 0x7fff_ffff;
        assert_eq!(
            sluice_types::key_hash::partition_of(hash, 3),
            *partition as usize,
            "the record at {partition}:{offset} with key {}",
            String::from_utf8_lossy(key)
        );
        let column: datafusion::arrow::array::ArrayRef =
            Arc::new(datafusion::arrow::array::StringArray::from(vec![
                String::from_utf8_lossy(key).into_owned(),
            ]));
        let mut routed = Vec::new();
        sluice_types::key_hash::key_hashes(&[column], 1, &mut routed).unwrap();
        assert_eq!(routed, vec![hash]);
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let sql = format!(
        "CREATE TABLE iot ({IOT_COLUMNS}) WITH (connector = 'kafka', topic = '${{TOPIC}}',
            'bootstrap.servers' = '${{BROKERS}}', format = 'json', scan.startup.mode = 'earliest',
            scan.bounded.mode = 'latest-offset');
         CREATE TABLE out WITH (connector = 'file', path = '${{OUT}}');
         INSERT INTO out SELECT window_start, window_end, location, count(*) AS n,
                avg(temperature) AS avg_t, min(battery_level) AS min_b
         FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE) GROUP BY window_start, window_end, location;"
    );
    let m = run_sql(
        &sql,
        &[
            ("TOPIC", t.clone()),
            ("BROKERS", support::brokers()),
            ("OUT", out.display().to_string()),
        ],
    );
    assert_eq!(m.events_in, 30000);
    assert_eq!(m.late, 0);

    // The oracle: the same aggregation as a batch over the records read back.
    let schema = Arc::new(
        sluice_connectors::generator::Profile::Iot
            .schema()
            .as_ref()
            .clone(),
    );
    let mut lines = Vec::new();
    for (_, _, _, v) in &records {
        lines.extend_from_slice(v);
        lines.push(b'\n');
    }
    let batches: Vec<_> = ReaderBuilder::new(schema.clone())
        .build(std::io::Cursor::new(lines))
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 30000);
    let ctx = SessionContext::new();
    ctx.register_table(
        "iot",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let expected = rt.block_on(support::batch_rows(
        &ctx,
        "SELECT date_bin(INTERVAL '5 minutes', event_time) AS window_start,
                date_bin(INTERVAL '5 minutes', event_time) + INTERVAL '5 minutes' AS window_end,
                location, count(*) AS n, avg(temperature) AS avg_t, min(battery_level) AS min_b
         FROM iot GROUP BY 1, 2, location",
    ));
    assert!(!expected.is_empty());
    assert_eq!(support::read_rows(&out), expected);
}

#[test]
fn an_idle_partition_does_not_stop_windows_from_closing() {
    let t = topic("idle");
    sluice::generate::ensure_topic(&support::brokers(), &t, 2).unwrap();
    let p = producer();
    // Twenty minutes of event time, all into partition 0; partition 1 stays empty.
    let t0 = 1_714_521_600_000i64;
    for i in 0..1200 {
        let v = format!(
            "{{\"sensor_id\":\"s{}\",\"location\":\"lab\",\"temperature\":20.0,\"battery_level\":50.0,\"event_time\":{}}}",
            i % 3,
            t0 + i * 1000
        );
        p.send(BaseRecord::<(), str>::to(&t).payload(&v).partition(0))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let sql =
        "CREATE TABLE iot (sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
            battery_level DOUBLE, event_time TIMESTAMP NOT NULL,
            WATERMARK FOR event_time AS event_time - INTERVAL '1' MINUTE)
         WITH (connector = 'kafka', topic = '${TOPIC}', 'bootstrap.servers' = '${BROKERS}',
               idle_timeout = '1s');
         CREATE TABLE out WITH (connector = 'file', path = '${OUT}');
         INSERT INTO out SELECT window_start, count(*) AS n
         FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE) GROUP BY window_start;";
    let vars: HashMap<String, String> = [
        ("TOPIC", t.clone()),
        ("BROKERS", support::brokers()),
        ("OUT", out.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let graph = sluice::plan_with_env(sql, &move |k| vars.get(k).cloned()).unwrap();
    let run = JobRun::build(
        &graph,
        &RunOptions {
            parallelism: 1,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let handle = run.handle.clone();
    let job = std::thread::spawn(move || run.run());
    // Unbounded: wait for the closed windows (the first three of four) to be written.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let written = std::fs::read_to_string(&out).unwrap_or_default();
        if written.lines().count() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    handle.stop();
    job.join().unwrap().unwrap();
    let rows = std::fs::read_to_string(&out).unwrap();
    assert!(
        rows.lines().count() >= 3,
        "windows closed despite the idle partition: {rows}"
    );
    assert!(
        rows.contains("\"window_start\":\"2024-05-01T00:00:00.000Z\",\"n\":300"),
        "{rows}"
    );
}

#[test]
fn malformed_records_are_counted_and_dead_lettered_with_offsets() {
    let t = topic("bad");
    sluice::generate::ensure_topic(&support::brokers(), &t, 1).unwrap();
    let p = producer();
    let good = |i: i64| {
        format!(
            "{{\"id\":\"r{i}\",\"v\":{i},\"ts\":{}}}",
            1_714_521_600_000 + i
        )
    };
    let bad = [
        "not json at all".to_string(),
        "{\"id\":\"x\",\"v\":\"seven\",\"ts\":1714521600000}".to_string(),
        "{\"v\":1,\"ts\":1714521600000}".to_string(),
    ];
    // One partition, written in order: a record's offset is its index.
    let mut bad_offsets = Vec::new();
    for i in 0..30i64 {
        let v = if i % 10 == 5 {
            bad[(i / 10) as usize].clone()
        } else {
            good(i)
        };
        if i % 10 == 5 {
            bad_offsets.push(i);
        }
        p.send(BaseRecord::<(), str>::to(&t).payload(&v).partition(0))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let sql = "CREATE TABLE r (id TEXT NOT NULL, v BIGINT, ts TIMESTAMP NOT NULL)
         WITH (connector = 'kafka', topic = '${TOPIC}', 'bootstrap.servers' = '${BROKERS}',
               scan.bounded.mode = 'latest-offset', bad_data = 'dead_letter', 'dead_letter.path' = '${DEAD}');
         CREATE TABLE out WITH (connector = 'file', path = '${OUT}');
         INSERT INTO out SELECT id, v FROM r;";
    let m = run_sql(
        sql,
        &[
            ("TOPIC", t.clone()),
            ("BROKERS", support::brokers()),
            ("OUT", out.display().to_string()),
            ("DEAD", dead.display().to_string()),
        ],
    );
    assert_eq!(m.bad, 3);
    assert_eq!(m.events_in, 27);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 27);
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 3);
    for (letter, (raw, offset)) in letters.iter().zip(bad.iter().zip(&bad_offsets)) {
        assert_eq!(letter["raw"], serde_json::Value::String(raw.clone()));
        assert_eq!(letter["offset"], *offset);
        assert_eq!(letter["partition"], 0);
        assert_eq!(letter["topic"], serde_json::Value::String(t.clone()));
        assert!(!letter["error"].as_str().unwrap().is_empty());
    }
}

#[test]
fn kafka_sink_output_read_back_by_a_second_client_equals_the_jobs_output() {
    let t = topic("alerts");
    sluice::generate::ensure_topic(&support::brokers(), &t, 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alerts.jsonl");
    let sql =
        "CREATE TABLE iot (sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
            event_time TIMESTAMP NOT NULL)
         WITH (connector = 'generator', profile = 'iot', rate = '0', limit = '50000',
               start_time = '2024-05-01T12:00:00Z');
         CREATE TABLE alerts_topic WITH (connector = 'kafka', topic = '${TOPIC}',
               'bootstrap.servers' = '${BROKERS}', key = 'entity');
         CREATE TABLE alerts_file WITH (connector = 'file', path = '${OUT}');
         INSERT INTO alerts_topic SELECT event_time AS alert_time, 'high_temperature' AS kind,
                sensor_id AS entity, temperature AS value FROM iot WHERE temperature > 30;
         INSERT INTO alerts_file SELECT event_time AS alert_time, 'high_temperature' AS kind,
                sensor_id AS entity, temperature AS value FROM iot WHERE temperature > 30;";
    run_sql(
        sql,
        &[
            ("TOPIC", t.clone()),
            ("BROKERS", support::brokers()),
            ("OUT", out.display().to_string()),
        ],
    );
    let expected = support::read_rows(&out);
    assert!(!expected.is_empty());
    let records = read_back(&t);
    for (_, _, key, value) in &records {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        assert_eq!(
            key.as_deref(),
            v["entity"].as_str().map(str::as_bytes),
            "keyed by entity"
        );
    }
    let mut got: Vec<String> = records
        .iter()
        .map(|r| support::normalize(std::str::from_utf8(&r.3).unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, expected);
}

/// Starts or stops a private broker on `port` with the project's script, keeping its
/// topics in a SQLite file so that they survive a restart.
fn produce_to(brokers: &str, topic: &str, from: i64, n: i64) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for i in from..from + n {
        let v = format!(
            "{{\"id\":\"r{i}\",\"ts\":{}}}",
            1_714_521_600_000 + i * 1000
        );
        p.send(BaseRecord::<(), str>::to(topic).payload(&v).partition(0))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_broker_outage_makes_the_job_wait_and_go_on_when_it_returns() {
    let port = support::free_port();
    let state = tempfile::tempdir().unwrap();
    let brokers = format!("127.0.0.1:{port}");
    support::private_broker("start", port, state.path());
    let t = topic("outage");
    sluice::generate::ensure_topic(&brokers, &t, 1).unwrap();
    produce_to(&brokers, &t, 0, 100);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let sql = "CREATE TABLE r (id TEXT NOT NULL, ts TIMESTAMP NOT NULL)
         WITH (connector = 'kafka', topic = '${TOPIC}', 'bootstrap.servers' = '${BROKERS}');
         CREATE TABLE out WITH (connector = 'file', path = '${OUT}');
         INSERT INTO out SELECT id FROM r;";
    let vars: HashMap<String, String> = [
        ("TOPIC", t.clone()),
        ("BROKERS", brokers.clone()),
        ("OUT", out.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let graph = sluice::plan_with_env(sql, &move |k| vars.get(k).cloned()).unwrap();
    let run = JobRun::build(
        &graph,
        &RunOptions {
            parallelism: 1,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let handle = run.handle.clone();
    let job = std::thread::spawn(move || run.run());
    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while handle.metrics.snapshot().events_in < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        handle.metrics.snapshot().events_in
    };
    assert_eq!(wait_for(100), 100);

    // The broker goes away: the job waits instead of failing.
    support::private_broker("stop", port, state.path());
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !job.is_finished(),
        "the job must wait for the broker, not stop"
    );

    // It comes back with its topics; new records flow on from where the job was.
    support::private_broker("start", port, state.path());
    produce_to(&brokers, &t, 100, 50);
    assert_eq!(
        wait_for(150),
        150,
        "the job goes on when the broker returns"
    );
    handle.stop();
    job.join().unwrap().unwrap();
    support::private_broker("stop", port, state.path());
    let ids: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 150, "nothing lost, nothing doubled");
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 150);
}

/// The sensor ids a Kafka source reads from `partition` after resuming it at `offset`.
fn ids_after_resume(topic: &str, partition: usize, offset: i64) -> Vec<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use sluice_runtime::{Positions, Source, SourcePoll};
    let mut options = sluice_types::ConnectorOptions::default();
    for (k, v) in [
        ("connector", "kafka".to_string()),
        ("topic", topic.to_string()),
        ("bootstrap.servers", support::brokers()),
        ("scan.bounded.mode", "latest-offset".to_string()),
    ] {
        options.insert(k, v, sluice_types::Position::default());
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "sensor_id",
        DataType::Utf8,
        false,
    )]));
    let mut source = sluice_connectors::kafka::KafkaSource::open(
        "r",
        &options,
        schema,
        Arc::new(sluice_runtime::JobMetrics::default()),
        &sluice_types::Interrupt::new(),
    )
    .unwrap();
    source
        .seek(&Positions::from([(partition.to_string(), offset)]))
        .unwrap();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the source did not end");
        match source.poll().unwrap() {
            SourcePoll::Batch {
                batch,
                partition: p,
            } if p == partition => ids.extend(
                batch
                    .column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap().to_string()),
            ),
            SourcePoll::Batch { .. } | SourcePoll::Idle | SourcePoll::Progress { .. } => {}
            SourcePoll::End => break,
        }
    }
    ids
}

#[test]
fn a_resume_in_the_middle_of_a_record_batch_reads_each_later_record_once() {
    // Generated events travel in large record batches, so these offsets fall inside
    // one: the broker must not skip the rest of that batch (tansu does), nor may a
    // record come twice (tansu repeats a partition's last batch on some fetches).
    let t = generated_topic("resume", &[("seed", "5")]);
    let records = read_back(&t);
    for partition in [0usize, 2] {
        let all: Vec<(i64, String)> = records
            .iter()
            .filter(|r| r.0 == partition as i32)
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.3).unwrap();
                (r.1, v["sensor_id"].as_str().unwrap().to_string())
            })
            .collect();
        let n = all.len() as i64;
        for offset in [n / 3 + 7, n - 10] {
            let want: Vec<String> = all
                .iter()
                .filter(|(o, _)| *o >= offset)
                .map(|(_, id)| id.clone())
                .collect();
            let got = ids_after_resume(&t, partition, offset);
            assert_eq!(
                got.len(),
                want.len(),
                "partition {partition} resumed at offset {offset} of {n}"
            );
            assert_eq!(got, want, "partition {partition} resumed at {offset}");
        }
    }
}

/// An at-least-once Kafka sink (the default) under SIGKILL at random moments: every
/// alert of the oracle reaches the topic (some may come twice), and nothing else does.
/// `SLUICE_LONG=1` kills 25 times.
#[test]
fn an_at_least_once_kafka_sink_killed_at_random_loses_nothing() {
    let kills: u64 = if std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1") {
        25
    } else {
        5
    };
    let events = 100_000 + kills * 45_000;
    let (rate, speedup) = ("60000", "6000");
    let t = topic("alerts-alo");
    sluice::generate::ensure_topic(&support::brokers(), &t, 2).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    let generator: Vec<String> = iot::GENERATOR
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect();
    std::fs::write(
        &file,
        format!(
            "SET checkpoint_interval = '200ms';
             CREATE TABLE iot ({cols}) WITH (connector = 'generator', profile = 'iot',
                 rate = '{rate}', speedup = '{speedup}', limit = '{events}', batch_size = '500',
                 {generator});
             CREATE TABLE alerts WITH (connector = 'kafka', topic = '{t}',
                 'bootstrap.servers' = '{brokers}', key = 'sensor_id',
                 'sink.delivery-guarantee' = 'at-least-once');
             INSERT INTO alerts {alerts} FROM iot WHERE temperature > 30 OR battery_level < 20;",
            cols = IOT_COLUMNS,
            alerts = iot::ALERTS,
            generator = generator.join(", "),
            brokers = support::brokers(),
        ),
    )
    .unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(dir.path())
            .args(["run", file.to_str().unwrap()])
            .env("SLUICE_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut seed: u64 = 0xca1f;
    for k in 0..kills {
        let after = support::random_pause(&mut seed, 250, 650);
        let mut child = run();
        std::thread::sleep(after);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before kill {k}; the test needs a longer stream"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut last = run();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = last.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the job did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let (_, want) = iot::oracle(events, rate, speedup);
    let records = read_back(&t);
    let mut got: Vec<String> = records
        .iter()
        .map(|r| support::normalize(std::str::from_utf8(&r.3).unwrap()))
        .collect();
    got.sort();
    let delivered = got.len();
    got.dedup();
    let mut want_distinct = want.clone();
    want_distinct.dedup();
    support::assert_rows_match("alerts topic (distinct records)", &got, &want_distinct);
    assert!(delivered >= want.len(), "{delivered} < {}", want.len());
}

/// The test broker (tansu 0.6) cannot commit transactions: an exactly-once Kafka sink is
/// refused when the job starts, with the option to use instead, and nothing is written.
#[test]
fn an_exactly_once_sink_on_a_broker_without_transactions_is_refused_at_start() {
    let t = topic("alerts-eo");
    sluice::generate::ensure_topic(&support::brokers(), &t, 1).unwrap();
    let sql = format!(
        "CREATE TABLE iot (sensor_id TEXT NOT NULL, temperature DOUBLE)
         WITH (connector = 'generator', profile = 'iot', rate = '0', limit = '1000');
         CREATE TABLE alerts WITH (connector = 'kafka', topic = '{t}',
             'bootstrap.servers' = '{}', 'sink.delivery-guarantee' = 'exactly-once');
         INSERT INTO alerts SELECT sensor_id, temperature FROM iot;",
        support::brokers()
    );
    let graph = sluice::plan_with_env(&sql, &|_| None).unwrap();
    let run = JobRun::build(&graph, &RunOptions::default()).unwrap();
    let err = run.run_typed().unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), sluice_types::ErrorKind::User, "{msg}");
    assert!(
        msg.contains("cannot commit transactions")
            && msg.contains("'sink.delivery-guarantee' = 'at-least-once'"),
        "{msg}"
    );
    assert!(read_back(&t).is_empty(), "nothing was written");
}

/// An updating result (per sensor and 10-minute slot, slots deleted after `state.ttl`)
/// written three ways by one job: to a Kafka topic as upserts (a tombstone per delete),
/// to one as Debezium envelopes, and to a changelog file. Each topic read back and
/// replayed gives the table the file's changelog gives, deletes included.
#[test]
fn an_updating_result_into_kafka_as_upserts_and_debezium_replays_to_the_same_table() {
    let (upserts, debezium) = (topic("upserts"), topic("debezium"));
    for t in [&upserts, &debezium] {
        sluice::generate::ensure_topic(&support::brokers(), t, 2).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("changes.jsonl");
    let query = "SELECT sensor_id, date_bin(INTERVAL '10 minutes', event_time) AS slot,
                        count(*) AS readings, max(temperature) AS hottest
                 FROM iot GROUP BY sensor_id, date_bin(INTERVAL '10 minutes', event_time)";
    let sql = format!(
        "SET checkpoint_interval = '50ms';
         SET state.ttl = '30 minutes';
         CREATE TABLE iot ({IOT_COLUMNS}) WITH (connector = 'generator', profile = 'iot',
               keys = '20', rate = '20000', speedup = '12000', limit = '20000',
               start_time = '2024-05-01T12:00:00Z');
         CREATE TABLE upserts WITH (connector = 'kafka', topic = '${{UPSERTS}}',
               'bootstrap.servers' = '${{BROKERS}}', 'changelog.mode' = 'upsert', key = 'sensor_id, slot');
         CREATE TABLE debezium WITH (connector = 'kafka', topic = '${{DEBEZIUM}}',
               'bootstrap.servers' = '${{BROKERS}}', format = 'debezium-json', key = 'sensor_id');
         CREATE TABLE changes WITH (connector = 'file', path = '${{OUT}}', 'changelog.mode' = 'all');
         INSERT INTO upserts {query};
         INSERT INTO debezium {query};
         INSERT INTO changes {query};"
    );
    run_sql(
        &sql,
        &[
            ("UPSERTS", upserts.clone()),
            ("DEBEZIUM", debezium.clone()),
            ("BROKERS", support::brokers()),
            ("OUT", out.display().to_string()),
        ],
    );
    let want = support::replayed(&out);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("\"op\":\"-D\"") && text.contains("\"op\":\"+U\""),
        "the changelog has updates and deletes"
    );

    // Upserts: per key, the last value; a tombstone removes the key.
    let mut table: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut tombstones = 0;
    for (_, _, key, value) in read_back(&upserts) {
        let key = key.expect("every upsert record has a key");
        let k: serde_json::Value = serde_json::from_slice(&key).unwrap();
        assert!(k["sensor_id"].is_string() && k["slot"].is_string(), "{k}");
        if value.is_empty() {
            tombstones += 1;
            table.remove(&key);
        } else {
            table.insert(key, value);
        }
    }
    assert!(tombstones > 0, "deletes are tombstones");
    let mut got: Vec<String> = table
        .values()
        .map(|v| support::normalize(std::str::from_utf8(v).unwrap()))
        .collect();
    got.sort();
    support::assert_rows_match("the upsert topic, replayed", &got, &want);

    // Debezium: `before` taken out, `after` put in.
    let mut rows: Vec<String> = Vec::new();
    let mut ops = std::collections::BTreeSet::new();
    for (_, _, _, value) in read_back(&debezium) {
        let v: serde_json::Value = serde_json::from_slice(&value).unwrap();
        ops.insert(v["op"].as_str().unwrap().to_string());
        if !v["before"].is_null() {
            let before = support::normalize(&v["before"].to_string());
            let at = rows
                .iter()
                .position(|r| *r == before)
                .unwrap_or_else(|| panic!("a before that is not there: {before}"));
            rows.swap_remove(at);
        }
        if !v["after"].is_null() {
            rows.push(support::normalize(&v["after"].to_string()));
        }
    }
    assert_eq!(
        ops.into_iter().collect::<Vec<_>>(),
        vec!["c", "d", "u"],
        "creates, updates and deletes"
    );
    rows.sort();
    support::assert_rows_match("the debezium topic, replayed", &rows, &want);
}
