//! Checkpoints and exactly-once output to a real PostgreSQL (SLUICE_TEST_DATABASE_URL,
//! set by `scripts/test.sh`) from a real Kafka-protocol broker (SLUICE_KAFKA_BROKERS):
//! the job is killed with SIGKILL over and over and restarted; killed between a
//! checkpoint and its commit; with its checkpoints in S3 (`scripts/s3.sh`); stopped and
//! restored from a chosen checkpoint; restored
//! past a damaged checkpoint; refused a checkpoint of another plan. The tables must
//! equal the batch oracle (DataFusion over the same events): nothing missing, nothing
//! doubled.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/iot.rs"]
mod iot;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iot::{GENERATOR, job_sql, oracle};
use pg::{PrivatePostgres, fresh_database, pg_rows, rt, unique};
use sluice::checkpoints::{CheckpointOptions, Restore};
use sluice::engine::{JobRun, RunOptions};
use sqlx::{Connection, PgConnection, Row};

fn ts(col: &str) -> String {
    format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS {col}")
}

fn metrics_select() -> String {
    format!(
        "SELECT {}, {}, location, readings, avg_temperature, max_temperature, min_battery FROM sensor_metrics_5m",
        ts("window_start"),
        ts("window_end")
    )
}

fn alerts_select() -> String {
    format!(
        "SELECT sensor_id, location, {}, temperature, battery_level, kind FROM alerts",
        ts("event_time")
    )
}

/// Kafka tests fill topics unpaced (event time advances 1 s per 1,000 events × 60).
const KAFKA_RATE: (&str, &str) = ("0", "60");
/// In-process tests read a paced generator: 60,000 events/s, event time × 6,000.
const PACED_RATE: (&str, &str) = ("60000", "6000");

fn assert_matches_oracle(db: &str, limit: u64, (rate, speedup): (&str, &str)) {
    let (metrics, alerts) = oracle(limit, rate, speedup);
    assert!(
        metrics.len() > 10 && alerts.len() > 10,
        "the oracle has rows"
    );
    support::assert_rows_match(
        "sensor_metrics_5m",
        &pg_rows(db, &metrics_select()),
        &metrics,
    );
    support::assert_rows_match(
        "alerts (an append table: no doubles)",
        &pg_rows(db, &alerts_select()),
        &alerts,
    );
}

/// Generated IoT events in a new topic with three partitions.
fn topic_with_events(limit: u64) -> String {
    let topic = unique("iot");
    let mut options = GENERATOR.to_vec();
    options.extend([("rate", KAFKA_RATE.0), ("speedup", KAFKA_RATE.1)]);
    support::generate_topic("iot", &topic, 3, &options, limit);
    topic
}

fn kafka_source(topic: &str) -> String {
    format!(
        "connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{}',
         scan.bounded.mode = 'latest-offset'",
        support::brokers()
    )
}

fn spawn_job(file: &Path, checkpoints: &Path, db: &str, extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args([
        "run",
        "--name",
        "job",
        "--parallelism",
        "2",
        "--checkpoint-dir",
    ])
    .arg(checkpoints)
    .arg(file)
    .env("DB", db)
    .env("SLUICE_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn wait_ok(mut child: Child, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).unwrap();
            }
            assert!(status.success(), "the job failed: {err}");
            return;
        }
        if start.elapsed() >= limit {
            let _ = child.kill(); // do not leave it running after the test
            let _ = child.wait();
            panic!("the job did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lets a running job go on for `after`, then kills it with SIGKILL.
fn kill_after(mut child: Child, after: Duration) {
    std::thread::sleep(after);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job ended before its kill; the test needs a longer stream"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn newest_epoch(checkpoints: &Path) -> u64 {
    let store = sluice_state::CheckpointStore::new(checkpoints, "job");
    store.epochs().unwrap().last().copied().unwrap_or(0)
}

#[test]
fn killed_ten_times_at_random_then_finished_equals_the_oracle() {
    const EVENTS: u64 = 400_000;
    let topic = topic_with_events(EVENTS);
    let db = fresh_database("crash");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, job_sql(&kafka_source(&topic), "250ms")).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    // A fixed sequence of "random" moments, so a failure can be replayed.
    let mut seed: u64 = 0x5eed;
    let mut epochs = Vec::new();
    for _ in 0..10 {
        let after = support::random_pause(&mut seed, 300, 700);
        kill_after(spawn_job(&file, &checkpoints, &db, &[]), after);
        epochs.push(newest_epoch(&checkpoints));
    }
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    assert!(
        epochs[9] > epochs[0],
        "checkpoints advanced across restarts: {epochs:?}"
    );
    wait_ok(
        spawn_job(&file, &checkpoints, &db, &[]),
        Duration::from_secs(120),
    );
    assert_matches_oracle(&db, EVENTS, KAFKA_RATE);
}

/// The epochs `sluice checkpoints list` shows for job `job` at `location`.
fn listed_epochs(file: &Path, location: &str, env: &[(&str, &str)]) -> Vec<u64> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args([
        "checkpoints",
        "list",
        "--name",
        "job",
        "--checkpoint-dir",
        location,
    ])
    .arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Checkpoints in an object store (S3's API, as every worker of a job reaches it): killed
/// with SIGKILL at random moments and restored from the bucket each time, the tables
/// equal the oracle, and old checkpoints are pruned from the bucket.
#[test]
fn checkpoints_in_s3_killed_and_restored_equal_the_oracle() {
    let kills = if std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1") {
        20
    } else {
        3
    };
    let events: u64 = 60_000 * kills;
    let topic = topic_with_events(events);
    let db = fresh_database("s3_crash");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, job_sql(&kafka_source(&topic), "200ms")).unwrap();
    let location = format!("s3://sluice-test/{}", unique("cp"));
    let env = support::s3_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut seed: u64 = 0x53;
    let mut epochs = Vec::new();
    for _ in 0..kills {
        let after = support::random_pause(&mut seed, 800, 600);
        kill_after(spawn_job(&file, Path::new(&location), &db, &env), after);
        let listed = listed_epochs(&file, &location, &env);
        assert!(
            listed.len() <= 3 + 1,
            "old checkpoints are pruned: {listed:?}"
        );
        epochs.push(listed.last().copied().unwrap_or(0));
    }
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    assert!(
        epochs[kills as usize - 1] > epochs[0],
        "checkpoints advanced in the bucket across restarts: {epochs:?}"
    );
    wait_ok(
        spawn_job(&file, Path::new(&location), &db, &env),
        Duration::from_secs(120),
    );
    assert_matches_oracle(&db, events, KAFKA_RATE);
}

#[test]
fn killed_between_a_checkpoint_and_its_commit_the_restart_commits_it_once() {
    const EVENTS: u64 = 120_000;
    let topic = topic_with_events(EVENTS);
    let db = fresh_database("fault");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, job_sql(&kafka_source(&topic), "100ms")).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let child = spawn_job(
        &file,
        &checkpoints,
        &db,
        &[("SLUICE_ABORT_AFTER_CHECKPOINT", "3")],
    );
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the fault hook aborted the job");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aborting after checkpoint 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(newest_epoch(&checkpoints), 3);
    // Epoch 3 is durable but no sink committed it.
    let progress = pg_rows(&db, "SELECT max(epoch) AS e FROM sluice_sink_progress");
    assert!(
        progress.iter().all(|r| !r.contains("3.000000e0")),
        "epoch 3 was not committed: {progress:?}"
    );
    wait_ok(
        spawn_job(&file, &checkpoints, &db, &[]),
        Duration::from_secs(120),
    );
    assert_matches_oracle(&db, EVENTS, KAFKA_RATE);
}

/// Runs the job in this process on a paced generator; stops it after `stop_after`.
fn run_generated(
    db: &str,
    checkpoints: Option<(&Path, Restore)>,
    limit: u64,
    stop_after: Option<Duration>,
    group_by_extra: &str,
) -> anyhow::Result<()> {
    let mut with = String::from("connector = 'generator', profile = 'iot', batch_size = '500'");
    for (k, v) in GENERATOR {
        with.push_str(&format!(", {k} = '{v}'"));
    }
    with.push_str(&format!(
        ", limit = '{limit}', rate = '{}', speedup = '{}'",
        PACED_RATE.0, PACED_RATE.1
    ));
    let mut sql = job_sql(&with, "200ms");
    if !group_by_extra.is_empty() {
        sql = sql.replace(
            "GROUP BY window_start, window_end, location",
            &format!("GROUP BY window_start, window_end, location{group_by_extra}"),
        );
    }
    let db = db.to_string();
    let graph = sluice::plan_with_env(&sql, &move |k| (k == "DB").then(|| db.clone())).unwrap();
    let mut options = RunOptions {
        parallelism: 2,
        ..RunOptions::default()
    };
    if let Some((dir, restore)) = checkpoints {
        let mut cp = CheckpointOptions::new(dir, "job");
        cp.restore = restore;
        options.checkpoints = Some(cp);
    }
    let run = JobRun::build(&graph, &options)?;
    let handle = run.handle.clone();
    let stopper = stop_after.map(|d| {
        let h = handle.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            h.stop();
        })
    });
    let r = run.run();
    if let Some(s) = stopper {
        s.join().unwrap();
    }
    r
}

/// A fresh database and checkpoint directory, and a run of `events` stopped after 0.7 s.
fn stopped_midway(name: &str, events: u64) -> (String, tempfile::TempDir, std::path::PathBuf) {
    let db = fresh_database(name);
    let dir = tempfile::tempdir().unwrap();
    let cps = dir.path().join("checkpoints");
    run_generated(
        &db,
        Some((&cps, Restore::Fresh)),
        events,
        Some(Duration::from_millis(700)),
        "",
    )
    .unwrap();
    (db, dir, cps)
}

#[test]
fn stopped_and_restored_from_a_chosen_checkpoint_equals_a_straight_run() {
    const EVENTS: u64 = 90_000;
    let straight = fresh_database("straight");
    run_generated(&straight, None, EVENTS, None, "").unwrap();
    assert_matches_oracle(&straight, EVENTS, PACED_RATE);

    let (db, _dir, cps) = stopped_midway("resumed", EVENTS);
    let epoch = newest_epoch(&cps);
    assert!(epoch > 0, "the stop took a final checkpoint");
    let half = pg_rows(&db, &metrics_select());
    assert!(
        half.len() < pg_rows(&straight, &metrics_select()).len(),
        "stopped midway"
    );
    run_generated(
        &db,
        Some((&cps, Restore::Chosen(epoch.to_string()))),
        EVENTS,
        None,
        "",
    )
    .unwrap();
    support::assert_rows_match(
        "sensor_metrics_5m",
        &pg_rows(&db, &metrics_select()),
        &pg_rows(&straight, &metrics_select()),
    );
    support::assert_rows_match(
        "alerts",
        &pg_rows(&db, &alerts_select()),
        &pg_rows(&straight, &alerts_select()),
    );
}

#[test]
fn a_damaged_newest_checkpoint_is_skipped_and_another_plan_is_refused() {
    const EVENTS: u64 = 90_000;
    let (db, _dir, cps) = stopped_midway("damaged", EVENTS);
    let store = sluice_state::CheckpointStore::new(&cps, "job");
    let epochs = store.epochs().unwrap();
    assert!(epochs.len() >= 2, "{epochs:?}");
    let newest = *epochs.last().unwrap();
    // Damage the newest: truncate one of its state files.
    let c = store.load(newest).unwrap();
    let f = &c.manifest.files[0].name;
    let path = std::path::Path::new(&c.location()).join(f);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(
        store.newest().unwrap().unwrap().manifest.epoch,
        epochs[epochs.len() - 2]
    );

    // A changed GROUP BY cannot take this state.
    let e = run_generated(
        &db,
        Some((&cps, Restore::Newest)),
        EVENTS,
        None,
        ", sensor_id",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("different plan") && e.contains("--fresh"), "{e}");

    // The same plan resumes from the older checkpoint. The damaged epoch had been
    // committed before its files were damaged, so its alert rows are written again (the
    // job warns); the keyed table is exact and nothing is lost.
    run_generated(&db, Some((&cps, Restore::Newest)), EVENTS, None, "").unwrap();
    let (metrics, alerts) = oracle(EVENTS, PACED_RATE.0, PACED_RATE.1);
    support::assert_rows_match(
        "sensor_metrics_5m",
        &pg_rows(&db, &metrics_select()),
        &metrics,
    );
    let got = pg_rows(&db, &alerts_select());
    let mut missing = alerts.clone();
    for row in &got {
        if let Some(i) = missing.iter().position(|r| r == row) {
            missing.swap_remove(i);
        }
    }
    assert!(missing.is_empty(), "{} alert rows lost", missing.len());
}

#[test]
fn postgres_restarted_under_a_running_job_loses_nothing() {
    const EVENTS: u64 = 240_000; // 4 s at the paced rate
    let dir = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start(dir.path());
    let db = pg.url();
    let cps = dir.path().join("checkpoints");
    let job = {
        let (db, cps) = (db.clone(), cps.clone());
        std::thread::spawn(move || {
            run_generated(&db, Some((&cps, Restore::Fresh)), EVENTS, None, "")
        })
    };
    // Down once rows are flowing, for long enough that commits fail and are retried.
    let started = Instant::now();
    let committed = |db: &str| {
        rt().block_on(async {
            let mut c = PgConnection::connect(db).await.ok()?;
            sqlx::query("SELECT max(epoch) FROM sluice_sink_progress")
                .fetch_one(&mut c)
                .await
                .ok()?
                .get::<Option<i64>, _>(0)
        })
    };
    while committed(&db).is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "no commit");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.down();
    assert!(
        !job.is_finished(),
        "the job was still running when PostgreSQL went down"
    );
    std::thread::sleep(Duration::from_millis(1_500));
    pg.up();
    job.join().unwrap().unwrap();
    assert_matches_oracle(&db, EVENTS, PACED_RATE);
}
