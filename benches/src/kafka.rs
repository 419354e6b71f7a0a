//! Kafka end to end: a topic of 3 partitions pre-filled with N generated IoT events, then
//! the rate at which one plain rdkafka consumer fetches it from the broker (the
//! reference), then the job (TUMBLE 5 minutes per location) reading the topic bounded,
//! once into a sink that keeps its rows and once into PostgreSQL exactly once. Both
//! runs' windows must count every event, and PostgreSQL's table must hold the first
//! run's rows (count, readings, a checksum of the averages).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use sluice::engine::{JobRun, RunOptions};

use crate::postgres::{fresh_database, query};
use crate::windowed::CollectSink;
use crate::{cpu_seconds, peak_rss_mib};

const TABLE: &str = "CREATE TABLE iot (sensor_id TEXT NOT NULL, location TEXT NOT NULL,
        temperature DOUBLE, humidity DOUBLE, pressure DOUBLE, battery_level DOUBLE,
        event_time TIMESTAMP NOT NULL,
        WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE)
    WITH (connector = 'kafka', topic = '${TOPIC}', 'bootstrap.servers' = '${BROKERS}',
          scan.bounded.mode = 'latest-offset');";

const QUERY: &str = "INSERT INTO sink SELECT window_start, location, count(*) AS readings,
        avg(temperature) AS avg_t, min(temperature) AS min_t, max(temperature) AS max_t
    FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE) GROUP BY window_start, location;";

/// Reads a topic of `events` records to its end with one plain rdkafka consumer (a
/// record at an offset already read, which the test broker sometimes sends again, is not
/// counted); returns records read and the seconds reading took. Stops after 10 s
/// without a record.
fn drain_topic(brokers: &str, topic: &str, events: usize) -> Result<(u64, f64)> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-bench-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let t0 = Instant::now();
    consumer.assign(&tpl)?;
    let mut last: Vec<i64> = vec![-1; partitions.iter().max().map_or(0, |m| *m as usize + 1)];
    let (mut n, mut quiet) = (0u64, Instant::now());
    while n < events as u64 && quiet.elapsed() < Duration::from_secs(10) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            quiet = Instant::now();
            let seen = &mut last[m.partition() as usize];
            if m.offset() > *seen {
                *seen = m.offset();
                n += 1;
            }
        }
    }
    Ok((n, t0.elapsed().as_secs_f64()))
}

/// Fills a new `topic` of `partitions` with `events` generated IoT events, as fast as the
/// broker takes them (event time from 2024-05-01, 60 s per 1,000 events); `extra` are more
/// generator options.
pub(crate) fn fill_iot_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    events: usize,
    extra: &[(&str, &str)],
) -> Result<()> {
    let mut options: Vec<(String, String)> = [
        ("rate", "0".to_string()),
        ("limit", events.to_string()),
        ("speedup", "60".to_string()),
        ("start_time", "2024-05-01T00:00:00Z".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    options.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let args = sluice::generate::GenerateArgs {
        profile: "iot".into(),
        brokers: brokers.into(),
        topic: topic.into(),
        partitions,
        options,
    };
    sluice::generate::run(&args, Arc::new(std::sync::atomic::AtomicBool::new(false)))?;
    Ok(())
}

/// Windows, readings and the sum of averages (rounded to 6 places per row) of rows
/// with the query's columns.
fn summary(batches: &[RecordBatch]) -> Result<(usize, i64, f64)> {
    let (mut rows, mut readings, mut avgs) = (0, 0, 0.0);
    for b in batches {
        let n = b.column(2).as_primitive::<Int64Type>();
        let a = b.column(3).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            rows += 1;
            readings += n.value(r);
            if !a.is_null(r) {
                avgs += (a.value(r) * 1e6).round() / 1e6;
            }
        }
    }
    Ok((rows, readings, avgs))
}

/// Runs the query from the topic into `sink`; events read, wall and CPU seconds.
fn run_job(
    graph_sql: &str,
    vars: &[(&str, String)],
    parallelism: usize,
    rows: Option<Arc<Mutex<Vec<RecordBatch>>>>,
) -> Result<(u64, f64, f64)> {
    let graph = sluice::plan_with_env(graph_sql, &|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let options = RunOptions {
        parallelism,
        name: "bench-kafka".into(),
        ..RunOptions::default()
    };
    let job = match rows {
        Some(rows) => JobRun::build_with_sinks(&graph, &options, &|_| {
            Some(Box::new(CollectSink(rows.clone())) as Box<dyn sluice_runtime::Sink>)
        })?,
        None => JobRun::build(&graph, &options)?,
    };
    let metrics = job.handle.metrics.clone();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    job.run()?;
    Ok((
        metrics.snapshot().events_in,
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
    ))
}

pub fn run_kafka(events: usize, parallelism: usize) -> Result<()> {
    let brokers = std::env::var("SLUICE_KAFKA_BROKERS")
        .context("SLUICE_KAFKA_BROKERS: start a broker with scripts/kafka.sh start")?;
    let topic = format!("bench-iot-{}", std::process::id());
    let t0 = Instant::now();
    fill_iot_topic(&brokers, &topic, 3, events, &[])?;
    let fill_s = t0.elapsed().as_secs_f64();
    let (read, fetch_s) = drain_topic(&brokers, &topic, events)?;
    let broker_rate = read as f64 / fetch_s;

    let url = fresh_database("sluice_bench_kafka")?;
    let vars = [
        ("TOPIC", topic.clone()),
        ("BROKERS", brokers.clone()),
        ("URL", url.clone()),
    ];
    let rows = Arc::new(Mutex::new(Vec::new()));
    let blackhole = format!("{TABLE}\nCREATE TABLE sink WITH (connector = 'blackhole');\n{QUERY}");
    let (n1, wall1, cpu1) = run_job(&blackhole, &vars, parallelism, Some(rows.clone()))?;
    let kept = summary(
        &rows
            .lock()
            .map_err(|_| anyhow::anyhow!("the sink panicked"))?,
    )?;
    if n1 != read || kept.1 != read as i64 {
        bail!(
            "the job read {n1} events and counted {} in its windows; the topic holds {read}",
            kept.1
        );
    }
    let pg = format!(
        "{TABLE}\nCREATE TABLE sink WITH (connector = 'postgres', url = '${{URL}}', table = 'kafka_windows');\n{QUERY}"
    );
    let (n2, wall2, cpu2) = run_job(&pg, &vars, parallelism, None)?;
    let got = query(
        &url,
        "SELECT count(*), sum(readings), sum(round(avg_t::numeric, 6)) FROM kafka_windows",
    )?;
    let want = format!("{}|{}|", kept.0, kept.1);
    let avgs: f64 = got
        .rsplit('|')
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or(f64::NAN);
    if n2 != read || !got.starts_with(&want) || (avgs - kept.2).abs() > 1e-3 {
        bail!(
            "PostgreSQL holds {got} (windows|readings|sum of averages); the first run made {}|{}|{:.6}",
            kept.0,
            kept.1,
            kept.2
        );
    }
    let share = |n: u64, wall: f64| ((n as f64 / wall) / broker_rate * 1000.0).round() / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "scenario": "kafka",
            "parallelism": parallelism,
            "events": read,
            "windows": kept.0,
            "fill_events_per_s": (events as f64 / fill_s).round(),
            "broker_fetch_events_per_s": broker_rate.round(),
            "job_events_per_s": (n1 as f64 / wall1).round(),
            "job_events_per_s_per_core": (n1 as f64 / cpu1).round(),
            "job_share_of_broker_rate": share(n1, wall1),
            "postgres_events_per_s": (n2 as f64 / wall2).round(),
            "postgres_events_per_s_per_core": (n2 as f64 / cpu2).round(),
            "postgres_share_of_broker_rate": share(n2, wall2),
            "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
