//! An updating result at scale: `GROUP BY` without a window over 1 M keys with count,
//! sum, avg, min and max, over N events (default 10 M) from pre-built Arrow batches, a
//! checkpoint barrier every second (each changed key goes out once per barrier). The
//! changelog goes into an in-memory table (a `+I`/`+U` row replaces its key's, a
//! `-U`/`-D` takes it out) that is checked against the aggregates computed directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Result, bail};
use datafusion::arrow::array::{
    AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::Sink;

use crate::{MemorySource, peak_rss_mib, timed_run};

const KEYS: usize = 1_000_000;
const BATCH: usize = 8192;

const JOB: &str = "SET checkpoint_interval = '1s';
CREATE TABLE readings (
    sensor_id TEXT NOT NULL,
    value BIGINT NOT NULL,
    event_time TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '1' MINUTE
) WITH (connector = 'file', path = '/dev/null');
CREATE TABLE totals WITH (connector = 'blackhole');
INSERT INTO totals
SELECT sensor_id, count(*) AS n, sum(value) AS total, avg(value) AS mean, min(value) AS low, max(value) AS high
FROM readings GROUP BY sensor_id;";

/// Event i: key (i · 7919) mod 1 M, value (i · 31) mod 1000.
fn event(i: usize) -> (usize, i64) {
    ((i * 7919) % KEYS, ((i * 31) % 1000) as i64)
}

/// The final row per key, as the changelog leaves it: (n, total, mean, low, high).
type Table = HashMap<String, (i64, i64, f64, i64, i64)>;

struct TableSink(Arc<Mutex<Table>>);

impl Sink for TableSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> sluice_runtime::Result<()> {
        let kinds = sluice_types::changelog::kinds_of(batch);
        let key = batch.column(0).as_string::<i32>();
        let int = |c: usize| batch.column(c).as_primitive::<Int64Type>();
        let (n, total, low, high) = (int(1), int(2), int(4), int(5));
        let mean = batch.column(3).as_primitive::<Float64Type>();
        let mut table = self.0.lock().map_err(|_| {
            sluice_runtime::RuntimeError::Internal("the table's lock is poisoned".into())
        })?;
        for (i, kind) in kinds.iter().enumerate() {
            let k = key.value(i).to_string();
            if kind.is_retraction() {
                table.remove(&k);
            } else {
                table.insert(
                    k,
                    (
                        n.value(i),
                        total.value(i),
                        mean.value(i),
                        low.value(i),
                        high.value(i),
                    ),
                );
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> sluice_runtime::Result<()> {
        Ok(())
    }
}

pub fn run_updating(events: usize) -> Result<()> {
    let graph = sluice::plan_with_env(JOB, &|_| None).map_err(|e| anyhow::anyhow!(e))?;
    let schema = graph.sources[0].schema.clone();
    let names: Vec<String> = (0..KEYS).map(|k| format!("sensor-{k:07}")).collect();
    let mut batches = Vec::new();
    let mut i = 0;
    while i < events {
        let n = BATCH.min(events - i);
        let (keys, values): (Vec<&str>, Vec<i64>) = (i..i + n)
            .map(|j| {
                let (k, v) = event(j);
                (names[k].as_str(), v)
            })
            .unzip();
        batches.push(RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(values)),
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    (i..i + n).map(|j| 1_714_521_600_000 + j as i64),
                )),
            ],
        )?);
        i += n;
    }
    let table = Arc::new(Mutex::new(Table::new()));
    let sink_table = table.clone();
    let mut job = JobRun::build_with_sinks(&graph, &RunOptions::default(), &|_| {
        Some(Box::new(TableSink(sink_table.clone())) as Box<dyn Sink>)
    })?;
    job.spec.sources[0].source = Box::new(MemorySource {
        schema,
        batches: batches.into_iter(),
    });
    let (snap, wall, cpu) = timed_run(job)?;
    let peak = peak_rss_mib();

    // The expected table, computed directly.
    let mut want: HashMap<usize, (i64, i64, i64, i64)> = HashMap::new();
    for j in 0..events {
        let (k, v) = event(j);
        let e = want.entry(k).or_insert((0, 0, i64::MAX, i64::MIN));
        e.0 += 1;
        e.1 += v;
        e.2 = e.2.min(v);
        e.3 = e.3.max(v);
    }
    let got = table
        .lock()
        .map_err(|_| anyhow::anyhow!("the table's lock is poisoned"))?;
    if got.len() != want.len() {
        bail!("{} keys in the result, {} expected", got.len(), want.len());
    }
    for (k, (n, total, low, high)) in &want {
        let Some(&(gn, gt, gm, gl, gh)) = got.get(&names[*k]) else {
            bail!("{} is missing", names[*k]);
        };
        let mean = *total as f64 / *n as f64;
        if (gn, gt, gl, gh) != (*n, *total, *low, *high) || (gm - mean).abs() > 1e-9 * mean.abs() {
            bail!(
                "{}: got ({gn}, {gt}, {gm}, {gl}, {gh}), expected ({n}, {total}, {mean}, {low}, {high})",
                names[*k]
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "scenario": "updating",
            "events": snap.events_in,
            "keys": got.len(),
            "changelog_rows": snap.rows_out,
            "wall_s": (wall * 1000.0).round() / 1000.0,
            "cpu_s": (cpu * 100.0).round() / 100.0,
            "events_per_s": (snap.events_in as f64 / wall).round(),
            "events_per_s_per_core": (snap.events_in as f64 / cpu).round(),
            "peak_rss_mib": (peak * 10.0).round() / 10.0,
            "checked": "every key's count, sum, avg, min and max equal the direct computation",
        })
    );
    Ok(())
}
