//! The job server over real HTTP: `sluice serve` as a process, driven through its REST
//! API and the CLI. Jobs write to a real PostgreSQL (SLUICE_TEST_DATABASE_URL).
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/server.rs"]
mod server;

use std::process::Command;
use std::time::{Duration, Instant};

use pg::{fresh_database, pg_rows};
use serde_json::json;
use server::{Server, TOKEN, job, status, submit, wait_state};
use sluice::client::{Client, Refusal};

/// Per-location 5-minute aggregates of a paced IoT generator (60,000 events/s, event
/// time 6,000 times faster), written to `db`.
fn job_sql(db: &str, events: u64) -> String {
    format!(
        "SET checkpoint_interval = '200ms';
         SET parallelism = '2';
         CREATE TABLE iot (sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
             battery_level DOUBLE, event_time TIMESTAMP NOT NULL,
             WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE)
         WITH (connector = 'generator', profile = 'iot', keys = '50', seed = '11',
               disorder = '30s', start_time = '2024-05-01T00:00:00Z', rate = '60000',
               speedup = '6000', limit = '{events}', batch_size = '500');
         CREATE TABLE metrics WITH (connector = 'postgres', url = '{db}',
             table = 'sensor_metrics_5m', primary_key = 'window_start, location');
         INSERT INTO metrics
         SELECT window_start, location, count(*) AS readings, avg(temperature) AS avg_t,
                min(battery_level) AS min_battery
         FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE)
         GROUP BY window_start, window_end, location;"
    )
}

fn rows(db: &str) -> Vec<String> {
    pg_rows(
        db,
        "SELECT to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS w, location, readings, avg_t, min_battery FROM sensor_metrics_5m",
    )
}

#[test]
fn submit_stop_resume_beside_a_straight_job_gives_the_same_table() {
    const EVENTS: u64 = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();
    let (straight_db, resumed_db) = (
        fresh_database("srv_straight"),
        fresh_database("srv_resumed"),
    );

    // Two jobs side by side.
    let a = submit(&c, "straight", &job_sql(&straight_db, EVENTS));
    assert!(
        ["starting", "running"].contains(&a["state"].as_str().unwrap()),
        "{a}"
    );
    assert!(a["id"].as_str().is_some_and(|id| !id.is_empty()));
    submit(&c, "resumed", &job_sql(&resumed_db, EVENTS));
    wait_state(&c, "resumed", &["running"], Duration::from_secs(30));
    let listed = c.call("GET", "/api/v1/jobs", None).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // Events flow, then a stop takes a final checkpoint.
    let t0 = Instant::now();
    while job(&c, "resumed")["events_in"].as_u64().unwrap() < 20_000 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no events flow");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = c.call("POST", "/api/v1/jobs/resumed/stop", None).unwrap();
    assert!(["stopping", "stopped"].contains(&stopping["state"].as_str().unwrap()));
    let stopped = wait_state(&c, "resumed", &["stopped"], Duration::from_secs(30));
    let epoch = stopped["last_checkpoint"]["epoch"].as_u64().unwrap();
    assert!(epoch > 0, "{stopped}");
    let read = stopped["events_in"].as_u64().unwrap();
    assert!(read < EVENTS, "stopped midway: {read}");
    assert_eq!(
        status(c.call("POST", "/api/v1/jobs/resumed/stop", None)),
        409,
        "a stopped job cannot be stopped"
    );

    // Resume (newest checkpoint) and let both finish.
    c.call("POST", "/api/v1/jobs/resumed/resume", None).unwrap();
    wait_state(&c, "straight", &["finished"], Duration::from_secs(60));
    let done = wait_state(&c, "resumed", &["finished"], Duration::from_secs(60));
    assert!(
        done["events_in"].as_u64().unwrap() < EVENTS,
        "the resumed run read only the rest: {done}"
    );
    let want = rows(&straight_db);
    assert!(want.len() > 50, "the straight job wrote its windows");
    support::assert_rows_match("sensor_metrics_5m", &rows(&resumed_db), &want);

    // Deleting: a finished job goes; an unknown one is 404.
    assert_eq!(status(c.call("DELETE", "/api/v1/jobs/straight", None)), 200);
    assert_eq!(status(c.call("GET", "/api/v1/jobs/straight", None)), 404);
}

#[test]
fn a_killed_server_resumes_its_jobs_when_it_comes_back() {
    const EVENTS: u64 = 240_000;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let server = Server::start(dir.path(), port);
    let c = server.client();
    let db = fresh_database("srv_killed");
    submit(&c, "iot", &job_sql(&db, EVENTS));
    let t0 = Instant::now();
    while job(&c, "iot")["last_checkpoint"]["epoch"]
        .as_u64()
        .unwrap_or(0)
        < 2
    {
        assert!(t0.elapsed() < Duration::from_secs(30), "no checkpoints");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();

    let server = Server::start(dir.path(), port);
    let c = server.client();
    let back = job(&c, "iot");
    assert!(
        ["starting", "running", "finished"].contains(&back["state"].as_str().unwrap()),
        "{back}"
    );
    let done = wait_state(&c, "iot", &["finished"], Duration::from_secs(60));
    assert!(
        done["events_in"].as_u64().unwrap() < EVENTS,
        "resumed, not restarted: {done}"
    );

    // The same job straight through, for comparison.
    let straight = fresh_database("srv_killed_straight");
    submit(&c, "straight", &job_sql(&straight, EVENTS));
    wait_state(&c, "straight", &["finished"], Duration::from_secs(60));
    support::assert_rows_match("sensor_metrics_5m", &rows(&db), &rows(&straight));
}

#[test]
fn refusals_get_their_status_and_metrics_are_prometheus_text_that_moves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();

    // Without the token: 401 everywhere.
    let anonymous = Client::new(&server.url, None);
    assert_eq!(status(anonymous.call("GET", "/api/v1/jobs", None)), 401);
    assert!(anonymous.metrics().unwrap_err().to_string().contains("401"));
    let wrong = Client::new(&server.url, Some("nope".into()));
    assert_eq!(status(wrong.call("GET", "/api/v1/health", None)), 401);

    // Invalid SQL: 400 with a position, from validate and from submit.
    let bad_sql = "CREATE TABLE t (a INT) WITH (connector = 'generator');\nSELEC 1;";
    let e = c
        .call("POST", "/api/v1/validate", Some(&json!({ "sql": bad_sql })))
        .unwrap_err();
    let r = e.downcast_ref::<Refusal>().unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["line"], 2, "{}", r.body);
    assert!(r.body["column"].as_u64().is_some(), "{}", r.body);
    assert_eq!(
        status(c.call(
            "POST",
            "/api/v1/jobs",
            Some(&json!({ "name": "x", "sql": bad_sql }))
        )),
        400
    );
    // Malformed bodies and names: 400; unknown jobs and endpoints: 404.
    assert_eq!(
        status(c.call("POST", "/api/v1/jobs", Some(&json!({ "sql": "x" })))),
        400
    );
    assert_eq!(
        status(c.call(
            "POST",
            "/api/v1/jobs",
            Some(&json!({ "name": "../x", "sql": "x" }))
        )),
        400
    );
    assert_eq!(status(c.call("GET", "/api/v1/jobs/nobody", None)), 404);
    assert_eq!(
        status(c.call("POST", "/api/v1/jobs/nobody/stop", None)),
        404
    );
    assert_eq!(status(c.call("GET", "/api/v1/nothing", None)), 404);

    // A long job; a duplicate name is 409; deleting it while it runs is 409.
    let db = fresh_database("srv_metrics");
    submit(&c, "long", &job_sql(&db, 100_000_000));
    assert_eq!(
        status(c.call(
            "POST",
            "/api/v1/jobs",
            Some(&json!({ "name": "long", "sql": job_sql(&db, 10) }))
        )),
        409
    );
    assert_eq!(status(c.call("DELETE", "/api/v1/jobs/long", None)), 409);
    wait_state(&c, "long", &["running"], Duration::from_secs(30));

    // Metrics: valid Prometheus text, and the counters move.
    let scrape = || -> std::collections::BTreeMap<String, f64> {
        let text = c.metrics().unwrap();
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines() {
            if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name: {line}"
            );
            assert!(
                series == name || (series.ends_with('}') && series.contains("=\"")),
                "bad labels: {line}"
            );
            assert!(
                sluice_server::prometheus::METRIC_NAMES.contains(&name),
                "{name} is not a listed metric"
            );
            samples.insert(series.to_string(), v);
        }
        samples
    };
    let events =
        |m: &std::collections::BTreeMap<String, f64>| m["sluice_events_in_total{job=\"long\"}"];
    let first = scrape();
    std::thread::sleep(Duration::from_millis(1_500));
    let second = scrape();
    assert!(events(&second) > events(&first), "events_in moved");
    for name in [
        "sluice_watermark_lag_seconds{job=\"long\"}",
        "sluice_checkpoint_epoch{job=\"long\"}",
        "sluice_sink_commit_latency_seconds{job=\"long\",sink=\"metrics\"}",
        "sluice_task_rows_in_total{job=\"long\",task=\"source iot\"}",
    ] {
        assert!(second.contains_key(name), "{name} missing");
    }
    assert!(second["sluice_checkpoint_epoch{job=\"long\"}"] > 0.0);

    // Cancel: no final checkpoint, state cancelled; then the job can be deleted.
    c.call("POST", "/api/v1/jobs/long/cancel", None).unwrap();
    wait_state(&c, "long", &["cancelled"], Duration::from_secs(30));
    assert_eq!(status(c.call("DELETE", "/api/v1/jobs/long", None)), 200);

    // A job that keeps failing is restarted with backoff, then marked failed.
    let missing = dir.path().join("files/no-such-file.jsonl");
    let failing = format!(
        "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = '{}');
         CREATE TABLE out WITH (connector = 'blackhole');
         INSERT INTO out SELECT id FROM r;",
        missing.display()
    );
    submit(&c, "failing", &failing);
    let failed = wait_state(&c, "failing", &["failed"], Duration::from_secs(30));
    assert_eq!(failed["restarts"], 3, "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("no-such-file"),
        "{failed}"
    );
}

#[test]
fn the_cli_submits_lists_and_stops_jobs_and_shows_sql_errors_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("SLUICE_SERVER", &server.url)
            .env("SLUICE_AUTH_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE TABLE t (a INT)\n  WITH (connector = 'nope');\n\
         CREATE TABLE o WITH (connector = 'blackhole');\nINSERT INTO o SELECT a FROM t;",
    )
    .unwrap();
    let (code, _, err) = cli(&["submit", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.sql:2:") && err.contains('^'), "{err}");

    let db = fresh_database("srv_cli");
    let good = dir.path().join("iot-cli.sql");
    std::fs::write(&good, job_sql(&db, 100_000_000)).unwrap();
    let (code, out, err) = cli(&["submit", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert!(!id.is_empty());
    let (code, out, _) = cli(&["jobs"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("iot-cli") && out.contains(&id) && out.contains("WATERMARK"),
        "{out}"
    );
    let t0 = Instant::now();
    loop {
        let (code, out, _) = cli(&["job", &id]);
        assert_eq!(code, 0);
        if out.contains("source iot") && out.contains("sink metrics") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = cli(&["stop", "iot-cli"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["stop", "nobody"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no job named nobody") && err.contains("404"),
        "{err}"
    );
    let (code, _, err) = cli(&["jobs", "--auth-token", "wrong"]);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
}

#[test]
fn kafka_consumer_lag_is_exposed_per_partition_and_reaches_zero() {
    let brokers = support::brokers();
    let topic = pg::unique("lag");
    support::generate_topic("iot", &topic, 3, &[("rate", "0")], 20_000);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();
    let sql = format!(
        "CREATE TABLE iot (sensor_id TEXT NOT NULL) WITH (connector = 'kafka', topic = '{topic}',
             'bootstrap.servers' = '{brokers}');
         CREATE TABLE out WITH (connector = 'blackhole');
         INSERT INTO out SELECT sensor_id FROM iot;"
    );
    submit(&c, "reader", &sql);
    // librdkafka reports statistics every 2 s: wait for a report after everything is read.
    let t0 = Instant::now();
    loop {
        let text = c.metrics().unwrap();
        let lags: Vec<f64> = text
            .lines()
            .filter(|l| {
                l.starts_with(
                    "sluice_kafka_consumer_lag{job=\"reader\",source=\"iot\",partition=\"",
                )
            })
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        let read = job(&c, "reader")["events_in"].as_u64().unwrap();
        if lags.len() == 3 && read == 20_000 && lags.iter().all(|l| *l == 0.0) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "lag per partition {lags:?} after reading {read} of 20000"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.call("POST", "/api/v1/jobs/reader/cancel", None).unwrap();
}
