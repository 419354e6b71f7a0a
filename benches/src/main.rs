//! Sluice benchmark runner. Scenarios:
//!
//! - `arrow`: pre-built Arrow batches (default 10 M events, 1,000 keys) through
//!   `TUMBLE(5 minutes)` with count/avg/min/max into a blackhole;
//! - `json`: the same job reading JSON lines from a file (both check every window
//!   against the one computed from the events directly);
//! - `decode`: JSON lines of generated IoT readings to Arrow, by arrow-json, by Sluice's
//!   decoder (checked against arrow-json's rows) and, for scale, by two SIMD JSON parsers
//!   that build nothing (default 4 M lines);
//! - `generator-iot`, `generator-user_activity`: the built-in generators alone at rate 0
//!   (as fast as possible);
//! - `generated`: the IoT generator (rate 0, 1,000 sensors) → the same TUMBLE job →
//!   blackhole, generation included, checked against the windows of the same events;
//! - `kafka` (needs a broker in SLUICE_KAFKA_BROKERS, e.g. from `scripts/kafka.sh start`,
//!   and PostgreSQL as for `postgres`): a topic pre-filled with N generated IoT events
//!   (3 partitions), the broker's own fetch rate to one plain consumer, then the job
//!   (TUMBLE 5 min per location, `--parallelism P`, a source task per share of the
//!   partitions) reading the topic bounded into a sink that keeps its rows, and again into
//!   PostgreSQL; both checked against the topic's events.
//!
//! - `postgres` (a PostgreSQL server in SLUICE_BENCH_DATABASE_URL, default the local
//!   one): the PostgreSQL sink, append, upsert (10 k keys and a key per row) and a
//!   changelog, beside `COPY` from a file in text and binary (default 1 M rows), each
//!   table's contents checked;
//!
//! - `nexmark` (`--queries q0,q5`, default all; `--input json` to read JSON-lines files
//!   of the events instead of the Nexmark source): Nexmark's queries, each at parallelism
//!   1 and 2 (or `--parallelism P`) over N events (default 10 M) in a process of its own,
//!   checked against the batch oracle; prints a table;
//!
//! - `updating`: `GROUP BY` without a window over 1 M keys (count, sum, avg, min, max)
//!   over N events (default 10 M), checked key by key;
//!
//! - `distributed` (a broker in SLUICE_KAFKA_BROKERS, PostgreSQL as for `postgres`): N
//!   generated events (default 4 M, 4 partitions keyed by sensor) through windows per
//!   sensor into PostgreSQL, by one process, one `--distributed` worker and two, each
//!   run's table checked against the first's;
//!
//! - `latency` (PostgreSQL as for `postgres`): the IoT generator paced at 8,000 events/s
//!   of wall time → 300 ms windows → PostgreSQL, checkpoints every second; how long
//!   after the watermark passes a window's end its rows are visible (p50/p90/p99/max),
//!   every row then checked (default 320 k events, 40 s);
//!
//! - `key-hash`: routing rows to tasks by key, Sluice's key hash beside the one it
//!   replaced, in nanoseconds per row;
//!
//! - `checkpoint`: the memory of 1 M keys of open window state (peak RSS less the empty
//!   job's, per key), the final checkpoint of them (time, size), and the time from
//!   restarting the job on it to its first processed event;
//!
//! Prints one JSON object per scenario: events, wall seconds, CPU seconds, events per
//! second per core (events / CPU seconds), and peak RSS.
//!
//! `cargo run --release -p sluice-benches -- [arrow|json|all] [--events N] [--parallelism P]`

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::Source;

mod checkpoint;
mod decode;
mod distributed;
mod generated;
mod kafka;
mod key_hash;
mod latency;
mod nexmark;
mod postgres;
mod updating;
mod windowed;

const JOB: &str = "CREATE TABLE iot (
    sensor_id TEXT NOT NULL,
    temperature DOUBLE,
    event_time TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE
) WITH (connector = 'file', path = '${INPUT}');
CREATE TABLE sink WITH (connector = 'blackhole');
INSERT INTO sink
SELECT window_start, window_end, sensor_id,
       count(*) AS readings, avg(temperature) AS avg_t, min(temperature) AS min_t, max(temperature) AS max_t
FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id;";

const KEYS: usize = 1000;
const BATCH: usize = 8192;
const T0: i64 = 1_714_564_800_000;

/// Events 1 ms apart in event time, round-robin over the keys, a little disorder.
fn event(i: usize) -> (usize, f64, i64) {
    let key = (i * 7919) % KEYS;
    let temp = 15.0 + ((i * 31) % 2000) as f64 / 100.0;
    let ts = T0 + i as i64 - ((i * 13) % 5000) as i64;
    (key, temp, ts)
}

pub(crate) struct MemorySource {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: std::vec::IntoIter<RecordBatch>,
}

impl Source for MemorySource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn next_batch(&mut self) -> sluice_runtime::Result<Option<RecordBatch>> {
        Ok(self.batches.next())
    }
}

fn build_batches(schema: &SchemaRef, events: usize) -> Result<Vec<RecordBatch>> {
    let names: Vec<String> = (0..KEYS).map(|k| format!("sensor-{k:04}")).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < events {
        let n = BATCH.min(events - i);
        let (mut ids, mut temps, mut times) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for j in i..i + n {
            let (k, t, ts) = event(j);
            ids.push(names[k].as_str());
            temps.push(t);
            times.push(ts);
        }
        out.push(RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Float64Array::from(temps)),
                Arc::new(TimestampMillisecondArray::from(times)),
            ],
        )?);
        i += n;
    }
    Ok(out)
}

/// User plus system CPU time of the whole process, threads included.
#[allow(unsafe_code)]
pub(crate) fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return f64::NAN;
    }
    // SAFETY: initialised by the successful call above.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// Runs a job to its end: its final counters, wall seconds and the process's CPU seconds.
pub(crate) fn timed_run(job: JobRun) -> Result<(sluice_runtime::MetricsSnapshot, f64, f64)> {
    let metrics = job.handle.metrics.clone();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    job.run()?;
    let wall = t0.elapsed().as_secs_f64();
    Ok((metrics.snapshot(), wall, cpu_seconds() - cpu0))
}

pub(crate) fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn run(scenario: &str, events: usize, parallelism: usize) -> Result<()> {
    let dir = std::env::temp_dir().join("sluice-bench");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("iot.jsonl");
    let path = input.display().to_string();
    let graph = sluice::plan_with_env(JOB, &|k| (k == "INPUT").then(|| path.clone()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let schema = graph.sources[0].schema.clone();
    let batches = build_batches(&schema, events)?;
    if scenario == "json" {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input)?);
        for b in &batches {
            let b = sluice_connectors::timestamps_as_text(b)?;
            let mut lw = datafusion::arrow::json::LineDelimitedWriter::new(&mut w);
            lw.write(&b)?;
            lw.finish()?;
        }
        w.flush()?;
    } else {
        std::fs::write(&input, b"")?;
    }
    let options = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    let rows = Arc::new(std::sync::Mutex::new(Vec::new()));
    let collect = rows.clone();
    let mut job = JobRun::build_with_sinks(&graph, &options, &|_| {
        Some(Box::new(windowed::CollectSink(collect.clone())) as Box<dyn sluice_runtime::Sink>)
    })
    .context("building the job")?;
    if scenario == "arrow" {
        job.spec.sources[0].source = Box::new(MemorySource {
            schema,
            batches: batches.into_iter(),
        });
    } else {
        drop(batches);
    }
    let (snap, wall, cpu) = timed_run(job)?;
    let rows = rows
        .lock()
        .map_err(|_| anyhow::anyhow!("the sink panicked"))?;
    let windows =
        windowed::check(&rows, windowed::oracle(events)).context("the job's rows are wrong")?;
    println!(
        "{}",
        windowed::report(scenario, windows, &snap, parallelism, (wall, cpu))
    );
    Ok(())
}

/// The built-in generator with `options` (as a table's `WITH` gives them), making
/// `schema` (the profile's own when `None`).
pub(crate) fn generator(
    options: &[(&str, String)],
    schema: Option<SchemaRef>,
) -> Result<sluice_connectors::generator::GeneratorSource> {
    use sluice_connectors::generator::{GeneratorOptions, GeneratorSource};
    let mut o = sluice_types::ConnectorOptions::default();
    for (k, v) in options {
        o.insert(k, v.clone(), sluice_types::Position::default());
    }
    let opts = GeneratorOptions::parse(&o).map_err(|p| anyhow::anyhow!(p.message))?;
    let schema = schema.unwrap_or_else(|| opts.profile.schema());
    GeneratorSource::new("bench", opts, schema).map_err(|e| anyhow::anyhow!(e))
}

/// Events per second per core of a generator profile at rate 0, nothing downstream.
fn run_generator(profile: &str, events: usize) -> Result<()> {
    let mut source = generator(
        &[
            ("profile", profile.to_string()),
            ("rate", "0".into()),
            ("limit", events.to_string()),
            ("start_time", "2024-05-01T00:00:00Z".into()),
            ("batch_size", "8192".into()),
        ],
        None,
    )?;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut n = 0usize;
    while let Some(b) = source.next_batch()? {
        n += b.num_rows();
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("generator-{profile}"),
            "events": n,
            "wall_s": (wall * 1000.0).round() / 1000.0,
            "cpu_s": (cpu * 100.0).round() / 100.0,
            "events_per_s_per_core": (n as f64 / cpu).round(),
            "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut scenario = "all".to_string();
    let mut events: Option<usize> = None;
    let mut parallelism_given: Option<usize> = None;
    let mut queries: Option<String> = None;
    let mut one_query: Option<String> = None;
    let mut input = nexmark::Input::Generated;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--events" => events = Some(it.next().context("--events N")?.parse()?),
            "--parallelism" => {
                parallelism_given = Some(it.next().context("--parallelism P")?.parse()?)
            }
            "--queries" => queries = Some(it.next().context("--queries q0,q5")?.clone()),
            "--input" => input = nexmark::Input::parse(it.next().context("--input json")?)?,
            "nexmark-one" => one_query = Some(it.next().context("nexmark-one QUERY")?.clone()),
            s => scenario = s.to_string(),
        }
    }
    let parallelism = parallelism_given.unwrap_or(1);
    if let Some(q) = one_query {
        return nexmark::run_one(&q, events.unwrap_or(10_000_000), parallelism, input);
    }
    let scenarios: Vec<&str> = match scenario.as_str() {
        "all" => vec!["arrow", "json", "generator-iot", "generator-user_activity"],
        s => vec![s],
    };
    for s in scenarios {
        match s {
            "postgres" => {
                postgres::run_postgres(events.unwrap_or(1_000_000))?;
                continue;
            }
            "decode" => {
                decode::run_decode(events.unwrap_or(4_000_000))?;
                continue;
            }
            "checkpoint-state" => {
                checkpoint::run_state(events.unwrap_or(1_000_000))?;
                continue;
            }
            "checkpoint" => {
                checkpoint::run_checkpoint(events.unwrap_or(1_000_000))?;
                continue;
            }
            "updating" => {
                updating::run_updating(events.unwrap_or(10_000_000))?;
                continue;
            }
            "distributed" => {
                distributed::run_distributed(events.unwrap_or(4_000_000))?;
                continue;
            }
            "key-hash" => {
                key_hash::run_key_hash(events.unwrap_or(10_000_000))?;
                continue;
            }
            "generated" => {
                generated::run_generated(events.unwrap_or(10_000_000), parallelism)?;
                continue;
            }
            "latency" => {
                latency::run_latency(events.unwrap_or(320_000))?;
                continue;
            }
            "nexmark" => {
                let ps = parallelism_given.map_or(vec![1, 2], |p| vec![p]);
                nexmark::run_all(events.unwrap_or(10_000_000), queries.as_deref(), &ps, input)?;
                continue;
            }
            _ => {}
        }
        let events = events.unwrap_or(10_000_000);
        match s.strip_prefix("generator-") {
            Some(profile) => run_generator(profile, events)?,
            None if s == "kafka" => kafka::run_kafka(events, parallelism)?,
            None if matches!(s, "arrow" | "json") => run(s, events, parallelism)?,
            None => anyhow::bail!(
                "unknown scenario '{s}' (arrow, json, generator-<profile>, generated, decode, \
                 postgres, checkpoint, updating, kafka, distributed, key-hash, latency, nexmark, \
                 nexmark-one <query>)"
            ),
        }
    }
    Ok(())
}
