//! Lookup joins against a real PostgreSQL table: a stream joined to `sensors` (each
//! sensor's own limit) gives what PostgreSQL gives for the same join over the same rows
//! (INNER drops a reading whose sensor the table lacks, LEFT keeps it with NULLs); and a
//! limit edited while the job runs applies once the cache's TTL has passed.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Connection;
use support::{assert_rows_match, read_rows};

fn exec(url: &str, sql: &str) {
    pg::rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    });
}

const READINGS: &[(&str, f64, &str)] = &[
    ("s1", 31.0, "2024-05-01T12:00:00Z"),
    ("s1", 28.0, "2024-05-01T12:00:10Z"),
    ("s2", 26.5, "2024-05-01T12:00:20Z"),
    ("s3", 50.0, "2024-05-01T12:00:30Z"),
    ("s2", 20.0, "2024-05-01T12:00:40Z"),
    ("s4", 41.0, "2024-05-01T12:00:50Z"),
];

#[test]
fn a_stream_joined_to_a_postgres_table_gives_what_postgres_gives() {
    let url = pg::fresh_database("lookup");
    exec(
        &url,
        "CREATE TABLE sensors (sensor_id TEXT PRIMARY KEY, max_temp DOUBLE PRECISION, site TEXT);
         INSERT INTO sensors VALUES ('s1', 30, 'hall'), ('s2', 25, 'roof'), ('s4', 45, 'yard');
         CREATE TABLE readings (sensor_id TEXT, temperature DOUBLE PRECISION, event_time TIMESTAMP);",
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("readings.jsonl");
    let mut text = String::new();
    for (id, t, at) in READINGS {
        text.push_str(&format!(
            "{{\"sensor_id\":\"{id}\",\"temperature\":{t},\"event_time\":\"{at}\"}}\n"
        ));
        exec(
            &url,
            &format!("INSERT INTO readings VALUES ('{id}', {t}, '{at}')"),
        );
    }
    std::fs::write(&input, text).unwrap();
    let tables = format!(
        "CREATE TABLE readings (sensor_id TEXT NOT NULL, temperature DOUBLE, event_time TIMESTAMP NOT NULL,
             WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND)
             WITH (connector = 'file', path = '{}', batch_size = '2');
         CREATE TABLE sensors (sensor_id TEXT NOT NULL, max_temp DOUBLE, site TEXT)
             WITH (connector = 'postgres', url = '{url}', table = 'sensors', 'lookup.cache.ttl' = '1 min');",
        input.display()
    );
    for (name, query) in [
        (
            "alerts (inner)",
            "SELECT r.sensor_id, r.temperature, s.max_temp, s.site FROM readings r
             JOIN sensors s ON r.sensor_id = s.sensor_id WHERE r.temperature > s.max_temp",
        ),
        (
            "all readings (left)",
            "SELECT r.sensor_id, r.temperature, s.max_temp FROM readings r
             LEFT JOIN sensors s ON r.sensor_id = s.sensor_id",
        ),
    ] {
        for parallelism in [1, 3] {
            let out = dir.path().join(format!("out-{parallelism}.jsonl"));
            let _ = std::fs::remove_file(&out);
            let sql = format!(
                "{tables}\nCREATE TABLE out WITH (connector = 'file', path = '{}');\nINSERT INTO out {query};",
                out.display()
            );
            support::run_job(&sql, &[], parallelism);
            let want = pg::pg_rows(&url, query);
            assert!(!want.is_empty());
            assert_rows_match(
                &format!("{name} at parallelism {parallelism}"),
                &read_rows(&out),
                &want,
            );
        }
    }
}

#[test]
fn a_limit_edited_while_the_job_runs_applies_after_the_cache_ttl() {
    let url = pg::fresh_database("lookup_ttl");
    let mut limits = String::from("CREATE TABLE limits (k BIGINT PRIMARY KEY, lim BIGINT);");
    for k in 0..10 {
        limits.push_str(&format!("INSERT INTO limits VALUES ({k}, {});", k * 10));
    }
    exec(&url, &limits);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    // 2,000 bids a second for 4 seconds; the cache keeps a row for 300 ms.
    let sql = format!(
        "CREATE TABLE bid (auction BIGINT NOT NULL, date_time TIMESTAMP NOT NULL,
             WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
             WITH (connector = 'nexmark', table = 'bid', events = '8000', rate = '2000', event_rate = '2000');
         CREATE TABLE limits (k BIGINT NOT NULL, lim BIGINT)
             WITH (connector = 'postgres', url = '{url}', table = 'limits', 'lookup.cache.ttl' = '300ms');
         CREATE TABLE out WITH (connector = 'file', path = '{}');
         INSERT INTO out SELECT b.auction, b.date_time, l.k, l.lim
         FROM bid b JOIN limits l ON b.auction % 10 = l.k;",
        out.display()
    );
    let run = support::build_job(&sql, &[], 1);
    let job = std::thread::spawn(move || run.run());
    std::thread::sleep(Duration::from_millis(1500));
    exec(&url, "UPDATE limits SET lim = lim + 1000");
    job.join().unwrap().unwrap();

    // Per key, in event order: old limits, then (once the TTL has passed) new ones, never
    // back to the old.
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 8000 * 46 / 50, "every bid meets its limit");
    let mut by_key: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for r in &rows {
        by_key.entry(r["k"].as_i64().unwrap()).or_default().push((
            r["date_time"].as_str().unwrap().to_string(),
            r["lim"].as_i64().unwrap(),
        ));
    }
    let (mut old, mut new) = (0, 0);
    for (k, mut seen) in by_key {
        seen.sort();
        let mut switched = false;
        for (_, lim) in seen {
            if lim == k * 10 + 1000 {
                switched = true;
                new += 1;
            } else {
                assert_eq!(lim, k * 10, "key {k}");
                assert!(!switched, "key {k} went back to its old limit");
                old += 1;
            }
        }
    }
    assert!(
        old > 500 && new > 500,
        "{old} rows before the edit, {new} after"
    );
}

#[test]
fn the_reference_job_alerts_on_each_sensors_own_limit() {
    let url = pg::fresh_database("sensor_limits");
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    exec(
        &url,
        &std::fs::read_to_string(repo.join("sql/schema.sql")).unwrap(),
    );
    exec(
        &url,
        "CREATE TABLE readings_copy (sensor_id TEXT, location TEXT, temperature DOUBLE PRECISION, event_time TIMESTAMPTZ)",
    );
    // The reference job, plus a copy of every reading for PostgreSQL to join as a batch.
    let sql = format!(
        "{}\nCREATE TABLE readings_copy WITH (connector = 'postgres', url = '{url}', table = 'readings_copy');
         INSERT INTO readings_copy SELECT sensor_id, location, temperature, event_time FROM iot_sensors;",
        std::fs::read_to_string(repo.join("sql/iot_sensor_limits.sql")).unwrap()
    );
    let vars = [
        ("DATABASE_URL", url.clone()),
        ("IOT_RATE", "0".to_string()),
        ("IOT_LIMIT", "20000".to_string()),
        ("START_TIME", "2024-05-01T06:00:00Z".to_string()),
    ];
    let catalogs = support::sql_catalogs(&["generators", "postgres"]);
    support::run_job_with_catalogs(
        &sql,
        &catalogs,
        &vars,
        2,
        &sluice_types::JobRules::trusted(),
    );
    let got = pg::pg_rows(
        &url,
        "SELECT alert_time, kind, entity, location, value, threshold FROM iot_alerts",
    );
    let want = pg::pg_rows(
        &url,
        "SELECT r.event_time AS alert_time, 'over_sensor_limit' AS kind, r.sensor_id AS entity,
                r.location, r.temperature AS value, s.max_temp AS threshold
         FROM readings_copy r JOIN sensors s ON r.sensor_id = s.sensor_id
         WHERE r.temperature > s.max_temp",
    );
    assert!(want.len() > 20, "the stream has alerts: {}", want.len());
    assert_rows_match("iot_alerts", &got, &want);
}
