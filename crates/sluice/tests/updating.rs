//! Updating results into a real PostgreSQL (SLUICE_TEST_DATABASE_URL): a GROUP BY
//! without a window over generated IoT readings (some sent twice, as at-least-once
//! producers do) is upserted into a keyed table, straight through at parallelism 1 and
//! 3 and again killed with SIGKILL at random moments and restored; the table must equal
//! the same query asked of the same events as a batch (DataFusion). With `state.ttl`,
//! groups that go quiet are deleted from the table and the state stays flat.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::compute::concat_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use pg::{fresh_database, pg_rows};
use sluice_runtime::Source;

const COLUMNS: &str = "sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
    humidity DOUBLE, pressure DOUBLE, battery_level DOUBLE, event_time TIMESTAMP NOT NULL,
    reading_id BIGINT NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE";

const GENERATOR: &[(&str, &str)] = &[
    ("profile", "iot"),
    ("keys", "40"),
    ("seed", "7"),
    ("disorder", "30s"),
    ("duplicate_fraction", "0.05"),
    ("start_time", "2024-05-01T00:00:00Z"),
    ("speedup", "600"),
];

/// Per location: readings (duplicates included), distinct readings, hottest and lowest
/// battery; per sensor: its readings and its last reading's time.
const PER_LOCATION: &str =
    "SELECT location, count(*) AS readings, count(DISTINCT reading_id) AS distinct_readings,
       max(temperature) AS max_temperature, min(battery_level) AS min_battery
FROM iot GROUP BY location";

/// The generator's options: GENERATOR with `limit`, `rate` and any of `more` (which
/// replace those of the same name).
fn options(limit: u64, rate: u64, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut o: Vec<(String, String)> = GENERATOR
        .iter()
        .filter(|(k, _)| !more.iter().any(|(m, _)| m == k))
        .chain(more)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    o.push(("limit".into(), limit.to_string()));
    o.push(("rate".into(), rate.to_string()));
    o
}

fn with(limit: u64, rate: u64, more: &[(&str, &str)]) -> String {
    let mut w: Vec<String> = options(limit, rate, more)
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect();
    w.push("connector = 'generator'".into());
    w.push("batch_size = '200'".into());
    w.join(", ")
}

fn options_with_connector(limit: u64, rate: u64, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut o = options(limit, rate, more);
    o.push(("connector".into(), "generator".into()));
    o
}

fn job(limit: u64, rate: u64) -> String {
    format!(
        "SET checkpoint_interval = '100ms';
         CREATE TABLE iot ({COLUMNS}) WITH ({});
         CREATE TABLE location_counts WITH (connector = 'postgres', url = '${{DB}}',
             table = 'location_counts', primary_key = 'location');
         INSERT INTO location_counts {PER_LOCATION};",
        with(limit, rate, &[])
    )
}

/// The query as a batch over the events the generator makes with these options (event
/// times, and so values, follow the rate and speed-up).
fn oracle(limit: u64, rate: u64, more: &[(&str, &str)], sql: &str) -> Vec<String> {
    let mut options = sluice_types::ConnectorOptions::default();
    for (k, v) in options_with_connector(limit, rate, more) {
        options.insert(&k, v, sluice_types::Position::default());
    }
    let opts = sluice_connectors::generator::GeneratorOptions::parse(&options).unwrap();
    let schema = opts.profile.schema();
    let mut g =
        sluice_connectors::generator::GeneratorSource::new("iot", opts, schema.clone()).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = g.next_batch().unwrap() {
        batches.push(b);
    }
    let all = concat_batches(&schema, &batches).unwrap();
    let ctx = SessionContext::new();
    ctx.register_table(
        "iot",
        Arc::new(MemTable::try_new(schema, vec![vec![all]]).unwrap()),
    )
    .unwrap();
    pg::rt().block_on(support::batch_rows(&ctx, sql))
}

fn table(db: &str) -> Vec<String> {
    pg_rows(
        db,
        "SELECT location, readings, distinct_readings, max_temperature, min_battery FROM location_counts",
    )
}

#[test]
fn a_group_by_without_a_window_upserted_equals_the_batch_query() {
    const EVENTS: u64 = 20_000;
    let want = oracle(EVENTS, 0, &[], PER_LOCATION);
    assert!(want.len() > 3, "the oracle has rows");
    for parallelism in [1, 3] {
        let db = fresh_database("upsert");
        let d = db.clone();
        let graph =
            sluice::plan_with_env(&job(EVENTS, 0), &move |k| (k == "DB").then(|| d.clone()))
                .unwrap();
        assert!(
            graph.explain().contains("-> updating"),
            "explain says the aggregate is updating:\n{}",
            graph.explain()
        );
        let options = sluice::engine::RunOptions {
            parallelism,
            ..Default::default()
        };
        sluice::engine::JobRun::build(&graph, &options)
            .unwrap()
            .run()
            .unwrap();
        support::assert_rows_match(
            &format!("location_counts at parallelism {parallelism}"),
            &table(&db),
            &want,
        );
    }
}

/// Killed with SIGKILL at random moments and restored: after every kill each row is a
/// location the oracle has, with counts no greater than its final ones (running counts
/// only grow); at the end the table equals the oracle.
#[test]
fn killed_and_restored_the_upserted_table_equals_the_batch_query() {
    let long = std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1");
    let kills: u64 = if long { 20 } else { 3 };
    let events: u64 = if long { 400_000 } else { 60_000 };
    // Paced so that the stream outlasts the kills (each run lasts at most ~1 s).
    let rate = events / (2 * kills);
    let want = oracle(events, rate, &[], PER_LOCATION);
    let db = fresh_database("upsert_killed");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, job(events, rate)).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "run",
                "--name",
                "job",
                "--parallelism",
                "2",
                "--checkpoint-dir",
            ])
            .arg(&checkpoints)
            .arg(&file)
            .env("DB", &db)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let final_counts: std::collections::BTreeMap<String, f64> = want
        .iter()
        .map(|r| (location_of(r), readings_of(r)))
        .collect();
    let mut seed: u64 = 0x0ddba11;
    for k in 0..kills {
        let after = support::random_pause(&mut seed, 300, 700);
        let mut child = spawn();
        std::thread::sleep(after);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before kill {k}; the test needs a longer stream"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for row in table(&db) {
            let loc = location_of(&row);
            let Some(&max) = final_counts.get(&loc) else {
                panic!("after kill {k}: a location the oracle lacks: {row}");
            };
            assert!(
                readings_of(&row) <= max,
                "after kill {k}: more readings than the final count ({max}): {row}"
            );
        }
    }
    let out = spawn().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the last run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    support::assert_rows_match("location_counts after the kills", &table(&db), &want);
}

fn field<'a>(row: &'a str, name: &str) -> &'a str {
    row.split(',')
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {row}"))
}

fn location_of(row: &str) -> String {
    field(row, "location").to_string()
}

fn readings_of(row: &str) -> f64 {
    field(row, "readings").parse().unwrap()
}

/// Five hours of event time in 1.5 s of the stream.
const FAST_TIME: &[(&str, &str)] = &[("speedup", "12000")];

/// `SET state.ttl`: a group unchanged while the watermark moved that far is deleted from
/// the table, and the state holds only the recent groups however many keys go by.
#[test]
fn groups_that_go_quiet_are_deleted_downstream_and_the_state_stays_flat() {
    const EVENTS: u64 = 30_000;
    let db = fresh_database("upsert_ttl");
    // Each sensor's readings per 10 minutes of event time is a new group; after the
    // TTL of 30 minutes a group has had no row for long and is deleted.
    let sql = format!(
        "SET checkpoint_interval = '50ms';
         SET state.ttl = '30 minutes';
         CREATE TABLE iot ({COLUMNS}) WITH ({});
         CREATE TABLE recent WITH (connector = 'postgres', url = '${{DB}}', table = 'recent',
             primary_key = 'sensor_id, slot');
         INSERT INTO recent
         SELECT sensor_id, date_bin(INTERVAL '10 minutes', event_time) AS slot, count(*) AS readings
         FROM iot GROUP BY sensor_id, date_bin(INTERVAL '10 minutes', event_time);",
        with(EVENTS, 20_000, FAST_TIME)
    );
    let d = db.clone();
    let graph = sluice::plan_with_env(&sql, &move |k| (k == "DB").then(|| d.clone())).unwrap();
    let run = sluice::engine::JobRun::build(
        &graph,
        &sluice::engine::RunOptions {
            parallelism: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let metrics = run.handle.metrics.clone();
    let watcher = std::thread::spawn(move || {
        let mut most = 0;
        for _ in 0..400 {
            most = most.max(metrics.snapshot().state_keys_held);
            std::thread::sleep(Duration::from_millis(10));
        }
        most
    });
    run.run().unwrap();
    let most_held = watcher.join().unwrap();
    let all_groups = oracle(
        EVENTS,
        20_000,
        FAST_TIME,
        "SELECT sensor_id, date_bin(INTERVAL '10 minutes', event_time) AS slot FROM iot GROUP BY 1, 2",
    )
    .len() as u64;
    let left = pg_rows(&db, "SELECT sensor_id FROM recent").len() as u64;
    assert!(
        all_groups > 400,
        "the stream has many groups ({all_groups})"
    );
    assert!(
        most_held < all_groups / 3,
        "the state held at most {most_held} groups of {all_groups}"
    );
    assert!(
        left < all_groups / 3 && left > 0,
        "the table keeps only recent groups: {left} of {all_groups}"
    );
}
