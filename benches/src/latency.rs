//! Latency: how long after the job's watermark passes a window's end that window's rows
//! are visible in PostgreSQL. The IoT generator paced at 8,000 events/s of wall time
//! (event time = wall time, no disorder, 1,000 sensors) → `TUMBLE(300 ms)` per sensor →
//! the exactly-once PostgreSQL sink, checkpoints every second (window ends fall at every
//! phase of the checkpoints, 0.1 s apart over 3 s). One thread watches the
//! job's watermark and polls the table every 2 ms; a window's latency is the moment its
//! rows were first seen less the moment the watermark first reached its end. Prints
//! p50/p90/p99/max, then checks every row against the same events generated again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
use sluice::checkpoints::CheckpointOptions;
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::Source;

use crate::postgres::{fresh_database, query};

/// Events per second of wall time, and of event time: 0.125 ms apart, so the same
/// times come out of an unpaced generator at speed-up 0.125 (the oracle).
const RATE: u64 = 8_000;
const WINDOW_MS: i64 = 300;
/// As the job sets it.
const CHECKPOINT_INTERVAL: &str = "1s";

const SQL: &str = "SET checkpoint_interval = '1s';
CREATE TABLE iot (
    sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE, humidity DOUBLE,
    pressure DOUBLE, battery_level DOUBLE, event_time TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time
) WITH (connector = 'generator', profile = 'iot', keys = '1000', seed = '7',
    rate = '${RATE}', speedup = '${SPEEDUP}', limit = '${LIMIT}', start_time = '${START}',
    disorder = '0s', late_fraction = '0', duplicate_fraction = '0');
CREATE TABLE latency_windows WITH (connector = 'postgres', url = '${URL}', table = 'latency_windows');
INSERT INTO latency_windows
SELECT window_start, window_end, sensor_id, count(*) AS readings, avg(temperature) AS avg_t
FROM TUMBLE(iot, event_time, INTERVAL '300' MILLISECOND)
GROUP BY window_start, window_end, sensor_id;";

/// What the watcher saw: when the watermark first reached each value it took, and when
/// each window end's rows first appeared in the table (wall-clock milliseconds).
#[derive(Default)]
struct Seen {
    watermarks: Vec<(i64, f64)>,
    visible: BTreeMap<i64, f64>,
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Watches `metrics`' watermark and the table at `url` until `done`.
fn watch(
    metrics: Arc<sluice_runtime::JobMetrics>,
    url: String,
    done: Arc<AtomicBool>,
) -> Result<Seen> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        let mut seen = Seen::default();
        let mut last_end = 0i64;
        let mut last_wm = i64::MIN;
        while !done.load(Ordering::Relaxed) {
            let wm = metrics.snapshot().watermark.millis();
            if wm > last_wm {
                seen.watermarks.push((wm, wall_ms()));
                last_wm = wm;
            }
            // The table appears when the sink opens; until then the query fails.
            let ends: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT (extract(epoch FROM window_end) * 1000)::int8 \
                 FROM latency_windows WHERE window_end > to_timestamp($1 / 1000.0) AT TIME ZONE 'UTC'",
            )
            .bind(last_end as f64)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
            let now = wall_ms();
            for e in ends {
                seen.visible.entry(e).or_insert(now);
                last_end = last_end.max(e);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(seen)
    })
}

/// The same events, generated again unpaced: readings and the sum of temperatures per
/// (window start, sensor).
fn oracle(events: usize, start: &str) -> Result<HashMap<(i64, String), (i64, f64)>> {
    let mut source = crate::generator(
        &[
            ("profile", "iot".to_string()),
            ("keys", "1000".into()),
            ("seed", "7".into()),
            ("rate", "0".into()),
            // Unpaced, event time advances `speedup` ms an event: 1,000 / RATE ms.
            ("speedup", (1000.0 / RATE as f64).to_string()),
            ("limit", events.to_string()),
            ("start_time", start.to_string()),
            ("disorder", "0s".into()),
            ("late_fraction", "0".into()),
            ("duplicate_fraction", "0".into()),
        ],
        None,
    )?;
    let schema = source.schema();
    let col = |name: &str| schema.index_of(name).context("the iot schema");
    let (id, temp, time) = (col("sensor_id")?, col("temperature")?, col("event_time")?);
    let mut out: HashMap<(i64, String), (i64, f64)> = HashMap::new();
    while let Some(b) = source.next_batch()? {
        let ids = b.column(id).as_string::<i32>();
        let temps = b.column(temp).as_primitive::<Float64Type>();
        let times = b.column(time).as_primitive::<TimestampMillisecondType>();
        for r in 0..b.num_rows() {
            let w = times.value(r).div_euclid(WINDOW_MS) * WINDOW_MS;
            let e = out.entry((w, ids.value(r).to_string())).or_default();
            e.0 += 1;
            if !temps.is_null(r) {
                e.1 += temps.value(r);
            }
        }
    }
    Ok(out)
}

/// Fails unless the table holds exactly the oracle's windows.
fn check(url: &str, events: usize, start: &str) -> Result<usize> {
    let want = oracle(events, start)?;
    let text = query(
        url,
        "SELECT (extract(epoch FROM window_start) * 1000)::int8, sensor_id, readings, \
         coalesce(avg_t, 'NaN') FROM latency_windows",
    )?;
    let mut rows = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let [w, sensor, n, avg] = f[..] else {
            bail!("unexpected row {line}");
        };
        let key = (w.parse::<i64>()?, sensor.to_string());
        let (count, sum) = want
            .get(&key)
            .with_context(|| format!("a window the events do not have: {line}"))?;
        let avg: f64 = avg.parse()?;
        let want_avg = sum / *count as f64;
        if n.parse::<i64>()? != *count || (avg - want_avg).abs() > 1e-6 * want_avg.abs().max(1.0) {
            bail!("{line}: the events give {count} readings averaging {want_avg}");
        }
        rows += 1;
    }
    if rows != want.len() {
        bail!("{rows} rows in the table, the events make {}", want.len());
    }
    Ok(rows)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

pub fn run_latency(events: usize) -> Result<()> {
    let url = fresh_database("sluice_bench_latency")?;
    // Event time is wall time: the stream starts now, at the generator's rate.
    let start_ms = wall_ms() as i64;
    let start = sluice_types::format_millis(start_ms);
    let vars: Vec<(&str, String)> = vec![
        ("RATE", RATE.to_string()),
        ("SPEEDUP", "1".into()),
        ("LIMIT", events.to_string()),
        ("START", start.clone()),
        ("URL", url.clone()),
    ];
    let graph = sluice::plan_with_env(SQL, &|k| {
        vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let dir = std::env::temp_dir().join(format!("sluice-bench-latency-{}", std::process::id()));
    let options = RunOptions {
        parallelism: 1,
        checkpoints: Some(CheckpointOptions::new(dir.clone(), "latency")),
        name: "latency".into(),
        ..RunOptions::default()
    };
    let job = JobRun::build(&graph, &options).context("building the job")?;
    let metrics = job.handle.metrics.clone();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (m, u, d) = (metrics.clone(), url.clone(), done.clone());
        std::thread::spawn(move || watch(m, u, d))
    };
    eprintln!(
        "latency: {events} events at {RATE}/s ({} s), windows of {WINDOW_MS} ms, checkpoints every {CHECKPOINT_INTERVAL}…",
        events as u64 / RATE
    );
    let t0 = Instant::now();
    let ran = job.run();
    // The last windows' rows: give the watcher a moment to see the final commit.
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, Ordering::Relaxed);
    let seen = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the watcher panicked"))??;
    ran?;
    let wall = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);

    // Windows the watermark closed while the stream ran (not the end of input's flush).
    let last_event = start_ms + (events as i64 - 1) * 1000 / RATE as i64;
    let mut latencies: Vec<f64> = Vec::new();
    for (&end, &visible) in &seen.visible {
        if end > last_event {
            continue;
        }
        let Some(&(_, passed)) = seen.watermarks.iter().find(|(wm, _)| *wm >= end) else {
            continue;
        };
        latencies.push(visible - passed);
    }
    latencies.sort_by(f64::total_cmp);
    let rows = check(&url, events, &start).context("the table's rows are wrong")?;
    if latencies.len() < 10 {
        bail!("only {} windows were seen closing", latencies.len());
    }
    let r = |x: f64| (x * 10.0).round() / 10.0;
    println!(
        "{}",
        serde_json::json!({
            "scenario": "latency",
            "events": events,
            "wall_s": (wall * 1000.0).round() / 1000.0,
            "checkpoint_interval": CHECKPOINT_INTERVAL,
            "window_ms": WINDOW_MS,
            "windows": latencies.len(),
            "rows_checked": rows,
            "latency_ms_min": r(latencies[0]),
            "latency_ms_p50": r(percentile(&latencies, 0.5)),
            "latency_ms_p90": r(percentile(&latencies, 0.9)),
            "latency_ms_p99": r(percentile(&latencies, 0.99)),
            "latency_ms_max": r(latencies[latencies.len() - 1]),
        })
    );
    Ok(())
}
