//! The streaming result of every window kind equals DataFusion running the same
//! aggregation as a batch over the on-time events; late rows are counted, not used.
//! Property-based: random keys, event times with bounded disorder, some late rows;
//! parallelism 1 and 3 must agree with the oracle and with each other byte for byte.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

const T0: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z
const DELAY_MS: i64 = 60_000;
const MAX_DISORDER_MS: i64 = 50_000; // < DELAY_MS: on-time rows are never late
const MAX_STEP_MS: i64 = 20_000;

#[derive(Debug, Clone)]
struct Event {
    key: String,
    value: Option<f64>,
    ts: i64,
    late: bool,
}

/// A stream: base time advancing by up to MAX_STEP_MS, each row up to MAX_DISORDER_MS
/// behind it; every `late_every`-th row far behind the watermark (its windows closed).
fn events(seed: u64, n: usize, keys: usize, late_every: usize) -> Vec<Event> {
    let mut s = seed | 1;
    let mut rnd = move |m: i64| -> i64 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % (m as u64).max(1)) as i64
    };
    let mut base = T0 + rnd(300_000);
    let mut out = Vec::new();
    for i in 0..n {
        base += 1 + rnd(MAX_STEP_MS);
        let key = format!("k{}", rnd(keys as i64));
        let value = (rnd(10) != 0).then(|| (rnd(20_000) as f64) / 100.0 - 50.0);
        if i > 0 && i % late_every == 0 {
            // Behind the watermark by more than any window (5 min) plus slack.
            let ts = base - DELAY_MS - 300_000 - 80_000 - rnd(600_000);
            out.push(Event {
                key,
                value,
                ts,
                late: true,
            });
        } else {
            out.push(Event {
                key,
                value,
                ts: base - rnd(MAX_DISORDER_MS),
                late: false,
            });
        }
    }
    out
}

fn write_events(path: &std::path::Path, events: &[Event]) {
    let mut text = String::new();
    for (i, e) in events.iter().enumerate() {
        // Event time alternately as epoch milliseconds and as RFC 3339 text.
        let time = if i % 2 == 0 {
            e.ts.to_string()
        } else {
            format!("\"{}\"", sluice_types::format_millis(e.ts))
        };
        let value = e.value.map_or("null".to_string(), |v| v.to_string());
        text.push_str(&format!(
            "{{\"k\":\"{}\",\"v\":{},\"event_time\":{}}}\n",
            e.key, value, time
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn oracle_context(events: &[Event]) -> SessionContext {
    let on_time: Vec<&Event> = events.iter().filter(|e| !e.late).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Float64, true),
        Field::new("ts", DataType::Int64, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                on_time.iter().map(|e| e.key.clone()),
            )),
            Arc::new(Float64Array::from(
                on_time.iter().map(|e| e.value).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                on_time.iter().map(|e| e.ts).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                on_time.iter().map(|e| e.ts).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

const AGGS: &str =
    "count(*) AS n, count(v) AS nv, sum(v) AS s, avg(v) AS a, min(v) AS mn, max(v) AS mx";

fn job_sql(from: &str) -> String {
    format!(
        "CREATE TABLE events (
            k TEXT NOT NULL,
            v DOUBLE,
            event_time TIMESTAMP NOT NULL,
            WATERMARK FOR event_time AS event_time - INTERVAL '60' SECOND
        ) WITH (connector = 'file', path = '${{INPUT}}', batch_size = '${{BATCH}}');
        CREATE TABLE out WITH (connector = 'file', path = '${{OUTPUT}}');
        INSERT INTO out
        SELECT window_start, window_end, k, {AGGS}
        FROM {from}
        GROUP BY window_start, window_end, k;"
    )
}

fn oracle_sql(kind: &str) -> String {
    match kind {
        "tumble" => format!(
            "SELECT to_timestamp_millis((ts / 300000) * 300000) AS window_start,
                    to_timestamp_millis((ts / 300000) * 300000 + 300000) AS window_end, k, {AGGS}
             FROM events GROUP BY 1, 2, k"
        ),
        // HOP(slide 1 min, size 5 min): a row is in the 5 windows whose start is a
        // whole minute in (ts - 5 min, ts].
        "hop" => format!(
            "SELECT to_timestamp_millis(ws) AS window_start, to_timestamp_millis(ws + 300000) AS window_end, k, {AGGS}
             FROM (SELECT e.k, e.v, (e.ts / 60000) * 60000 - o.i * 60000 AS ws, e.ts
                   FROM events e CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS o(i))
             WHERE ws + 300000 > ts
             GROUP BY ws, k"
        ),
        // SESSION(gap 2 min): a new session starts where the gap to the previous event
        // of the key is 2 minutes or more.
        "session" => format!(
            "WITH marked AS (
                SELECT k, v, ts, CASE WHEN ts - lag(ts) OVER (PARTITION BY k ORDER BY ts) < 120000 THEN 0 ELSE 1 END AS fresh
                FROM events),
             numbered AS (
                SELECT k, v, ts, sum(fresh) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS sid
                FROM marked)
             SELECT to_timestamp_millis(min(ts)) AS window_start, to_timestamp_millis(max(ts) + 120000) AS window_end, k, {AGGS}
             FROM numbered GROUP BY k, sid"
        ),
        _ => unreachable!(),
    }
}

fn from_clause(kind: &str) -> &'static str {
    match kind {
        "tumble" => "TUMBLE(events, event_time, INTERVAL '5' MINUTE)",
        "hop" => "HOP(events, event_time, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)",
        "session" => "SESSION(events, event_time, INTERVAL '2' MINUTE)",
        _ => unreachable!(),
    }
}

fn check(kind: &str, seed: u64, n: usize, keys: usize, late_every: usize, batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let evs = events(seed, n, keys, late_every);
    write_events(&input, &evs);
    let expected_late = evs.iter().filter(|e| e.late).count() as u64;

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let expected = rt.block_on(support::batch_rows(
        &oracle_context(&evs),
        &oracle_sql(kind),
    ));
    assert!(!expected.is_empty());

    let sql = job_sql(from_clause(kind));
    let mut outputs = Vec::new();
    for parallelism in [1, 3] {
        let output = dir.path().join(format!("out-{parallelism}.jsonl"));
        let vars = [
            ("INPUT", input.display().to_string()),
            ("OUTPUT", output.display().to_string()),
            ("BATCH", batch.to_string()),
        ];
        let metrics = support::run_job(&sql, &vars, parallelism);
        let got = support::read_rows(&output);
        assert_eq!(
            got, expected,
            "{kind} at parallelism {parallelism} differs from the batch oracle"
        );
        assert_eq!(metrics.late, expected_late, "{kind}: late rows counted");
        assert_eq!(metrics.events_in, evs.len() as u64);
        outputs.push(std::fs::read(&output).unwrap());
    }
    assert_eq!(
        outputs[0], outputs[1],
        "{kind}: output differs between parallelism 1 and 3"
    );
}

/// Aggregates beyond the basic five: statistics, distinct counts, exact median,
/// HyperLogLog, booleans and FILTER, all through DataFusion's accumulators.
const MORE_AGGS: &str =
    "stddev(v) AS sd, var_pop(v) AS vp, median(v) AS med, count(DISTINCT v) AS cd,
    approx_distinct(k) AS ad, bool_or(v > 40) AS any_high, sum(v) FILTER (WHERE v > 0) AS pos_sum";

fn check_more_aggregates(seed: u64, n: usize, keys: usize, late_every: usize, batch: usize) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.jsonl");
    let evs = events(seed, n, keys, late_every);
    write_events(&input, &evs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let expected = rt.block_on(support::batch_rows(
        &oracle_context(&evs),
        &format!(
            "SELECT to_timestamp_millis((ts / 300000) * 300000) AS window_start, k, {MORE_AGGS}
             FROM events GROUP BY 1, k"
        ),
    ));
    let sql = format!(
        "CREATE TABLE events (k TEXT NOT NULL, v DOUBLE, event_time TIMESTAMP NOT NULL,
            WATERMARK FOR event_time AS event_time - INTERVAL '60' SECOND
         ) WITH (connector = 'file', path = '${{INPUT}}', batch_size = '${{BATCH}}');
         CREATE TABLE out WITH (connector = 'file', path = '${{OUTPUT}}');
         INSERT INTO out SELECT window_start, k, {MORE_AGGS}
         FROM TUMBLE(events, event_time, INTERVAL '5' MINUTE) GROUP BY window_start, k;"
    );
    for parallelism in [1, 3] {
        let output = dir.path().join(format!("out-{parallelism}.jsonl"));
        let vars = [
            ("INPUT", input.display().to_string()),
            ("OUTPUT", output.display().to_string()),
            ("BATCH", batch.to_string()),
        ];
        support::run_job(&sql, &vars, parallelism);
        assert_eq!(
            support::read_rows(&output),
            expected,
            "more aggregates at parallelism {parallelism}"
        );
    }
}

fn config() -> Config {
    Config {
        cases: 6,
        rng_seed: RngSeed::Fixed(0x5_1u64 << 40 | 0x1CE),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tumble_matches_batch_oracle(seed in any::<u64>(), n in 20usize..400, keys in 1usize..6, late_every in 4usize..40, batch in 1usize..64) {
        check("tumble", seed, n, keys, late_every, batch);
    }

    #[test]
    fn hop_matches_batch_oracle(seed in any::<u64>(), n in 20usize..400, keys in 1usize..6, late_every in 4usize..40, batch in 1usize..64) {
        check("hop", seed, n, keys, late_every, batch);
    }

    #[test]
    fn more_aggregates_match_batch_oracle(seed in any::<u64>(), n in 20usize..400, keys in 1usize..6, late_every in 4usize..40, batch in 1usize..64) {
        check_more_aggregates(seed, n, keys, late_every, batch);
    }

    #[test]
    fn session_matches_batch_oracle(seed in any::<u64>(), n in 20usize..400, keys in 1usize..6, late_every in 4usize..40, batch in 1usize..64) {
        check("session", seed, n, keys, late_every, batch);
    }
}
