//! The check of the `arrow`, `json` and `generated` scenarios: the job's rows, collected
//! by a sink that keeps them, against the windows computed directly from the same events.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};

use crate::{KEYS, event};

/// Keeps every row it is given.
pub(crate) struct CollectSink(pub(crate) Arc<Mutex<Vec<RecordBatch>>>);

impl sluice_runtime::Sink for CollectSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> sluice_runtime::Result<()> {
        if let Ok(mut rows) = self.0.lock() {
            rows.push(batch.clone());
        }
        Ok(())
    }

    fn finish(&mut self) -> sluice_runtime::Result<()> {
        Ok(())
    }
}

/// Per (window start, sensor): readings, sum, min, max.
#[derive(Default)]
pub(crate) struct Windows(BTreeMap<(i64, String), (i64, f64, f64, f64)>);

const WINDOW_MS: i64 = 5 * 60 * 1000;

impl Windows {
    /// Counts one event (sensor, temperature, event time in ms).
    pub(crate) fn add(&mut self, sensor: &str, t: f64, ts: i64) {
        let start = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        let w = self.0.entry((start, sensor.to_string())).or_insert((
            0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ));
        w.0 += 1;
        w.1 += t;
        w.2 = w.2.min(t);
        w.3 = w.3.max(t);
    }
}

/// The result of the `arrow` and `json` jobs computed from the events themselves.
pub(crate) fn oracle(events: usize) -> Windows {
    let names: Vec<String> = (0..KEYS).map(|k| format!("sensor-{k:04}")).collect();
    let mut out = Windows::default();
    for i in 0..events {
        let (k, t, ts) = event(i);
        out.add(&names[k], t, ts);
    }
    out
}

/// Checks the rows (window_start, window_end, sensor_id, readings, avg_t, min_t, max_t)
/// against the oracle: every window once, counts, minima and maxima exact, averages to
/// 1e-9 (the sum's order differs).
pub(crate) fn check(rows: &[RecordBatch], want: Windows) -> Result<usize> {
    let mut want = want.0;
    let mut seen = 0;
    for b in rows {
        let start = b.column(0).as_primitive::<TimestampMillisecondType>();
        let sensor = b.column(2).as_string::<i32>();
        let count = b.column(3).as_primitive::<Int64Type>();
        let (avg, min, max) = (
            b.column(4).as_primitive::<Float64Type>(),
            b.column(5).as_primitive::<Float64Type>(),
            b.column(6).as_primitive::<Float64Type>(),
        );
        for r in 0..b.num_rows() {
            let key = (start.value(r), sensor.value(r).to_string());
            let (n, sum, lo, hi) = want
                .remove(&key)
                .with_context(|| format!("window {key:?}: not expected, or twice"))?;
            let mean = sum / n as f64;
            ensure!(
                count.value(r) == n
                    && min.value(r) == lo
                    && max.value(r) == hi
                    && (avg.value(r) - mean).abs() <= 1e-9 * mean.abs().max(1.0),
                "window {key:?}: ({}, {}, {}, {}), expected ({n}, {mean}, {lo}, {hi})",
                count.value(r),
                avg.value(r),
                min.value(r),
                max.value(r)
            );
            seen += 1;
        }
    }
    ensure!(want.is_empty(), "{} windows missing", want.len());
    Ok(seen)
}

/// What a windowed scenario prints: its checked windows, events, rates and peak RSS.
pub(crate) fn report(
    scenario: &str,
    windows: usize,
    snap: &sluice_runtime::MetricsSnapshot,
    parallelism: usize,
    (wall, cpu): (f64, f64),
) -> serde_json::Value {
    serde_json::json!({
        "scenario": scenario,
        "checked": format!("{windows} windows equal to the oracle's"),
        "events": snap.events_in,
        "rows_out": snap.rows_out,
        "parallelism": parallelism,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "cpu_s": (cpu * 100.0).round() / 100.0,
        "events_per_s": (snap.events_in as f64 / wall).round(),
        "events_per_s_per_core": (snap.events_in as f64 / cpu).round(),
        "peak_rss_mib": (crate::peak_rss_mib() * 10.0).round() / 10.0,
    })
}
