//! Several `sluice run --distributed` workers share one job (tasks per topic partition,
//! membership by beats in the shared store) over a real Kafka-protocol broker and a real
//! PostgreSQL: two of three workers killed with SIGKILL at a random moment and replaced,
//! a worker paused (SIGSTOP) until its tasks move and then resumed, scaling from one
//! worker to three and back under load, and the shared store in S3 with a worker killed,
//! must each leave tables equal to the batch oracle (DataFusion over the same events):
//! nothing missing, nothing doubled. The paused worker's late commit is refused by its
//! task's newer generation; idle partitions hold no other task's windows back.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/iot.rs"]
mod iot;

#[path = "support/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iot::{GENERATOR, job_sql_by, oracle_by, oracle_of_streams, oracle_with};
use pg::{fresh_database, pg_rows, unique};

/// Unpaced events; event time advances 1 s per 1,000 events × 60.
const RATE: (&str, &str) = ("0", "60");
const PARTITIONS: i32 = 3;

fn ts(col: &str) -> String {
    format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS {col}")
}

/// Generated IoT events keyed by sensor in a new topic, and the job over it: 5-minute
/// aggregates per sensor (the topic's key, so no shuffle) and alerts, into PostgreSQL.
fn setup(events: u64) -> (tempfile::TempDir, PathBuf, String) {
    setup_with("sensor_id", events, &[], PARTITIONS, true)
}

/// [`setup`] with the aggregates per `group` (by `location`, rows must be shuffled),
/// generator options besides [`GENERATOR`]'s, a partition count, and a bounded source or
/// an unbounded one with an `idle_timeout`.
fn setup_with(
    group: &str,
    events: u64,
    extra: &[(&str, &str)],
    partitions: i32,
    bounded: bool,
) -> (tempfile::TempDir, PathBuf, String) {
    let topic = unique("iot_dist");
    let mut options = GENERATOR.to_vec();
    options.extend([("rate", RATE.0), ("speedup", RATE.1)]);
    options.extend(extra);
    support::generate_topic("iot", &topic, partitions, &options, events);
    let source = format!(
        "connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{}',
         {} 'key.fields' = 'sensor_id'",
        support::brokers(),
        if bounded {
            "scan.bounded.mode = 'latest-offset',"
        } else {
            "idle_timeout = '2s',"
        }
    );
    let sql = job_sql_by(
        group,
        &source,
        "250ms",
        &format!(
            "connector = 'postgres', url = '${{DB}}', table = 'sensor_metrics', \
             primary_key = 'window_start, {group}'"
        ),
        "connector = 'postgres', url = '${DB}', table = 'alerts'",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, sql).unwrap();
    (dir, file, fresh_database("dist"))
}

fn assert_matches_oracle(db: &str, events: u64) {
    assert_matches_oracle_by("sensor_id", db, events);
}

/// Both tables against the oracle of the aggregates per `group`.
fn assert_matches_oracle_by(group: &str, db: &str, events: u64) {
    let (metrics, alerts) = oracle_by(group, events, RATE.0, RATE.1);
    assert!(
        metrics.len() > 10 && alerts.len() > 10,
        "the oracle has rows"
    );
    assert_metrics_match_by(group, db, &metrics);
    let alerts_select = format!(
        "SELECT sensor_id, location, {}, temperature, battery_level, kind FROM alerts",
        ts("event_time")
    );
    support::assert_rows_match(
        "alerts (an append table: no doubles)",
        &pg_rows(db, &alerts_select),
        &alerts,
    );
}

/// The upsert table of aggregates per sensor against the oracle's rows.
fn assert_metrics_match(db: &str, metrics: &[String]) {
    assert_metrics_match_by("sensor_id", db, metrics);
}

fn assert_metrics_match_by(group: &str, db: &str, metrics: &[String]) {
    let select = format!(
        "SELECT {}, {}, {group}, readings, avg_temperature, max_temperature, min_battery FROM sensor_metrics",
        ts("window_start"),
        ts("window_end")
    );
    support::assert_rows_match("sensor_metrics", &pg_rows(db, &select), metrics);
}

/// A worker process; its log goes to a file beside the job.
struct Worker {
    child: Child,
    log: PathBuf,
}

/// A worker with the shared store in `checkpoints/` beside the job.
fn spawn_worker(file: &Path, db: &str, n: usize) -> Worker {
    let dir = file.parent().unwrap().join("checkpoints");
    spawn_worker_at(file, db, n, &dir.to_string_lossy(), &[])
}

/// A worker with the shared store at `location` (a directory or `s3://…`).
fn spawn_worker_at(
    file: &Path,
    db: &str,
    n: usize,
    location: &str,
    env: &[(&str, String)],
) -> Worker {
    let log = file.parent().unwrap().join(format!("worker-{n}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args([
        "run",
        "--distributed",
        "--name",
        "job",
        "--parallelism",
        "1",
    ])
    .args(["--checkpoint-dir", location])
    .arg(file)
    .env("DB", db)
    .env("SLUICE_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Worker {
        child: cmd.spawn().unwrap(),
        log,
    }
}

impl Worker {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The partitions whose task this worker runs: started, and not since handed
    /// over, finished or lost (its log has a line `task job.p<N>: …` for each).
    fn tasks(&self) -> Vec<i32> {
        let mut last = std::collections::BTreeMap::new();
        for l in self.log().lines() {
            if let Some((p, what)) = l
                .strip_prefix("task job.p")
                .and_then(|r| r.split_once(": "))
                && let Ok(p) = p.parse::<i32>()
            {
                last.insert(p, what.starts_with("started"));
            }
        }
        last.into_iter()
            .filter(|(_, held)| *held)
            .map(|(p, _)| p)
            .collect()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }
}

/// Waits for every worker to exit 0; their logs, in order.
fn wait_all(workers: Vec<Worker>, limit: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut logs = Vec::new();
    for mut w in workers {
        loop {
            if let Some(status) = w.child.try_wait().unwrap() {
                assert!(status.success(), "a worker failed: {}", w.log());
                logs.push(w.log());
                break;
            }
            if start.elapsed() >= limit {
                let _ = w.child.kill();
                panic!("a worker did not finish in {limit:?}: {}", w.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    logs
}

/// The generations claimed for task `p`.
fn generations(file: &Path, p: i32) -> usize {
    let at = file
        .parent()
        .unwrap()
        .join("checkpoints")
        .join(format!("job.p{p}"))
        .join("generations");
    std::fs::read_dir(at).map_or(0, |d| d.count())
}

/// Waits until `what` holds, polling.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Waits until some task of the job has a checkpoint.
fn wait_first_checkpoint(file: &Path) {
    wait_for("a first checkpoint", Duration::from_secs(60), || {
        any_checkpoint(file)
    });
}

fn any_checkpoint(file: &Path) -> bool {
    (0..PARTITIONS).any(|p| {
        sluice_state::CheckpointStore::new(
            file.parent().unwrap().join("checkpoints"),
            &format!("job.p{p}"),
        )
        .epochs()
        .is_ok_and(|e| !e.is_empty())
    })
}

fn long() -> bool {
    std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1")
}

fn events() -> u64 {
    if long() { 4_000_000 } else { 1_500_000 }
}

/// Three workers of the job; after its first checkpoint, `rounds` times at a replayable
/// random moment (`pause` = (from, span) ms), two of them killed with SIGKILL and two
/// replacements started. Every kill of the first round must find its worker running.
/// `killed` sees each round's dead workers before their replacements join. Returns the
/// workers left running.
fn kill_drill(
    file: &Path,
    db: &str,
    mut seed: u64,
    rounds: usize,
    pause: (u64, u64),
    mut killed: impl FnMut(usize, &[Worker]),
) -> Vec<Worker> {
    let mut workers: Vec<Worker> = (0..3).map(|n| spawn_worker(file, db, n)).collect();
    wait_first_checkpoint(file);
    for round in 0..rounds {
        std::thread::sleep(support::random_pause(&mut seed, pause.0, pause.1));
        let keep = support::random_below(&mut seed, 3) as usize;
        let mut dead = Vec::new();
        for (i, mut w) in std::mem::take(&mut workers).into_iter().enumerate() {
            if i == keep {
                workers.push(w);
                continue;
            }
            // The first round must hit a running job; later ones may find it done.
            assert!(
                round > 0 || w.child.try_wait().unwrap().is_none(),
                "a worker ended before its kill; the test needs a longer stream: {}",
                w.log()
            );
            w.child.kill().unwrap(); // SIGKILL
            w.child.wait().unwrap();
            dead.push(w);
        }
        killed(round, &dead);
        // Replacements join later.
        let n = 3 + 2 * round;
        workers.push(spawn_worker(file, db, n));
        workers.push(spawn_worker(file, db, n + 1));
    }
    workers
}

/// Kills two of three workers with SIGKILL (once; four times with `SLUICE_LONG=1`) at
/// replayable random moments, replacing them each time.
#[test]
fn two_of_three_workers_killed_and_replaced_equal_the_oracle() {
    let events = events();
    let (_dir, file, db) = setup(events);
    let rounds = if long() { 4 } else { 1 };
    let workers = kill_drill(&file, &db, 0x5eed, rounds, (200, 800), |round, killed| {
        if round > 0 {
            return;
        }
        let killed_at = Instant::now();
        // The survivor takes the dead workers' tasks over once it notices.
        let moved: Vec<(i32, usize)> = killed
            .iter()
            .flat_map(|w| w.tasks())
            .map(|p| (p, generations(&file, p)))
            .collect();
        assert!(!moved.is_empty(), "the killed workers held tasks");
        wait_for(
            "the dead workers' tasks moving",
            Duration::from_secs(60),
            || moved.iter().all(|(p, g)| generations(&file, *p) > *g),
        );
        eprintln!(
            "tasks {:?} taken over {:.1}s after their workers died",
            moved.iter().map(|m| m.0).collect::<Vec<_>>(),
            killed_at.elapsed().as_secs_f64()
        );
    });
    wait_all(workers, Duration::from_secs(300));
    assert_matches_oracle(&db, events);
    // A worker started after the job has finished exits at once.
    let said = wait_all(vec![spawn_worker(&file, &db, 99)], Duration::from_secs(30)).remove(0);
    assert!(
        said.contains("all 3 tasks have finished; nothing to do"),
        "{said}"
    );
}

#[test]
fn a_paused_worker_loses_its_tasks_and_its_late_commit_is_refused() {
    paused_worker_drill("sensor_id");
}

/// As above with windows per location: the paused worker also writes into the shuffle
/// when it wakes, beside its tasks' new owners; the readers take each offset once.
#[test]
fn a_paused_worker_of_a_shuffled_job_writes_nothing_twice() {
    paused_worker_drill("location");
}

/// A worker paused (SIGSTOP) until its tasks move and their new owner commits, then
/// resumed: its late commit is refused and the tables equal the oracle of the
/// aggregates per `group`.
fn paused_worker_drill(group: &str) {
    let events = events();
    let (_dir, file, db) = setup_with(group, events, &[], PARTITIONS, true);
    let zombie = spawn_worker(&file, &db, 0);
    let other = spawn_worker(&file, &db, 1);
    wait_first_checkpoint(&file);
    wait_for(
        "the paused worker holding a task",
        Duration::from_secs(30),
        || !zombie.tasks().is_empty(),
    );
    // Past the moment workers starting together may both take a task.
    std::thread::sleep(Duration::from_secs(1));
    let held: Vec<(i32, usize)> = zombie
        .tasks()
        .into_iter()
        .map(|p| (p, generations(&file, p)))
        .collect();
    zombie.signal("STOP");
    // Its tasks move to the other worker, which commits under the newer generation.
    wait_for(
        "the paused worker's tasks moving",
        Duration::from_secs(60),
        || held.iter().all(|(p, g)| generations(&file, *p) > *g),
    );
    wait_for("a commit by the new owner", Duration::from_secs(60), || {
        held.iter().all(|(p, _)| {
            let rows = pg_rows(
                &db,
                &format!(
                    "SELECT epoch FROM sluice_sink_progress WHERE job = 'job.p{p}' AND epoch >= (generation << 32)"
                ),
            );
            !rows.is_empty()
        })
    });
    zombie.signal("CONT");
    let said = wait_all(vec![zombie, other], Duration::from_secs(240)).remove(0);
    assert_matches_oracle_by(group, &db, events);
    // The resumed worker's commit was refused in its transaction: its task was lost.
    assert!(
        said.contains("newer than this worker's"),
        "the paused worker's late commit was not refused: {said}"
    );
}

#[test]
fn scaled_from_one_worker_to_three_and_back_equals_the_oracle() {
    scaling_drill("sensor_id");
}

/// As above with windows per location: the shuffle's writers and readers move too.
#[test]
fn a_shuffled_job_scaled_from_one_worker_to_three_and_back_equals_the_oracle() {
    scaling_drill("location");
}

fn scaling_drill(group: &str) {
    let events = events();
    let (_dir, file, db) = setup_with(group, events, &[], PARTITIONS, true);
    let first = spawn_worker(&file, &db, 0);
    wait_first_checkpoint(&file);
    let added: Vec<Worker> = (1..3).map(|n| spawn_worker(&file, &db, n)).collect();
    wait_for(
        "the new workers taking tasks",
        Duration::from_secs(60),
        || added.iter().all(|w| !w.tasks().is_empty()),
    );
    assert!(
        first.tasks().len() < PARTITIONS as usize,
        "the first worker gave tasks away: {}",
        first.log()
    );
    // Ctrl-C: each leaving worker hands its tasks over after a final checkpoint.
    for w in &added {
        w.signal("INT");
    }
    let mut all = added;
    all.push(first);
    wait_all(all, Duration::from_secs(240));
    assert_matches_oracle_by(group, &db, events);
}

/// The shared store in S3 (`scripts/s3.sh`): checkpoints, generations and beats all in
/// the bucket; a worker killed with SIGKILL is replaced.
#[test]
fn with_the_shared_store_in_s3_a_killed_worker_is_replaced() {
    let events = events();
    let (_dir, file, db) = setup(events);
    let location = format!("s3://sluice-test/{}", unique("dist"));
    let env = support::s3_env();
    let mut a = spawn_worker_at(&file, &db, 0, &location, &env);
    let b = spawn_worker_at(&file, &db, 1, &location, &env);
    wait_for(
        "both workers holding tasks",
        Duration::from_secs(60),
        || !a.tasks().is_empty() && !b.tasks().is_empty(),
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the worker ended before its kill; the test needs a longer stream: {}",
        a.log()
    );
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let c = spawn_worker_at(&file, &db, 2, &location, &env);
    wait_all(vec![b, c], Duration::from_secs(240));
    assert_matches_oracle(&db, events);
}

/// A shared store made afresh (deleted) while the database keeps its progress rows: the
/// database's generation is newer than any the store gives out, so the worker takes its
/// tasks again above it instead of being refused for ever. The upsert table stays right.
#[test]
fn a_store_made_afresh_takes_its_tasks_again_above_the_databases_generation() {
    let events = events();
    let (dir, file, db) = setup(events);
    // Killed once and restarted: the tasks' second generation is in the database.
    let mut first = spawn_worker(&file, &db, 0);
    wait_first_checkpoint(&file);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    wait_all(vec![spawn_worker(&file, &db, 1)], Duration::from_secs(120));
    std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let said = wait_all(vec![spawn_worker(&file, &db, 2)], Duration::from_secs(120)).remove(0);
    assert!(said.contains("taken again above it"), "{said}");
    let (metrics, _) = oracle_by("sensor_id", events, RATE.0, RATE.1);
    assert_metrics_match(&db, &metrics);
}

/// Two sensors over four partitions: two partitions at least never get a record. Their
/// tasks idle on their own and hold no other task's windows back: with an unbounded
/// source (nothing ends the job), every window the watermark has passed is in
/// PostgreSQL and equals the oracle's.
#[test]
fn idle_partitions_hold_no_window_back() {
    idle_partitions_drill("sensor_id");
}

/// As above with windows per location: the shuffle's readers hear from every source
/// partition's writer, the empty ones saying they are idle, and their windows close.
#[test]
fn idle_partitions_of_a_shuffled_job_hold_no_window_back() {
    idle_partitions_drill("location");
}

fn idle_partitions_drill(group: &str) {
    let events = 200_000;
    let extra = [("keys", "2")];
    let (_dir, file, db) = setup_with(group, events, &extra, 4, false);
    let workers = vec![spawn_worker(&file, &db, 0), spawn_worker(&file, &db, 1)];
    // Event time runs 60 ms per event from midnight, to 03:20; the watermark trails by
    // 10 minutes, so windows ending by 03:05 (one window of margin) have all closed.
    let cutoff = "2024-05-01T03:05:00.000Z";
    let (metrics, _) = oracle_with(group, events, RATE.0, RATE.1, &extra);
    let closed: Vec<String> = metrics
        .into_iter()
        .filter(|r| {
            // Rows are normalized as `k=v,…` with values in JSON.
            r.split(',')
                .find_map(|kv| kv.strip_prefix("window_end="))
                .is_some_and(|end| end.trim_matches('"') <= cutoff)
        })
        .collect();
    assert!(closed.len() > 50, "{} closed windows", closed.len());
    let select = format!(
        "SELECT {}, {}, {group}, readings, avg_temperature, max_temperature, min_battery
         FROM sensor_metrics WHERE window_end <= '{cutoff}'",
        ts("window_start"),
        ts("window_end")
    );
    let arrived = std::panic::catch_unwind(|| {
        // A task per partition idles on its own; a shuffle's writer of an empty
        // partition says so once the table's `idle_timeout` (2 s) has passed.
        wait_for("every closed window", Duration::from_secs(20), || {
            // The sink creates the table when its task first opens it.
            let exists = pg_rows(
                &db,
                "SELECT to_regclass('sensor_metrics') IS NOT NULL AS present",
            );
            exists == ["present=true"] && pg_rows(&db, &select).len() >= closed.len()
        })
    });
    for mut w in workers {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    assert!(arrived.is_ok(), "the closed windows did not all arrive");
    support::assert_rows_match("sensor_metrics", &pg_rows(&db, &select), &closed);
}

/// Aggregates per location over a topic keyed by sensor: every location is in every
/// partition, so each partition's writer shuffles its rows by location into the job's
/// shuffle topic, and a task per shuffle partition runs the job. Two of three workers
/// are killed with SIGKILL (once; four times with `SLUICE_LONG=1`) and replaced: the
/// tables equal the oracle, and the shuffle's replays are taken once.
#[test]
fn a_shuffled_job_with_two_of_three_workers_killed_equals_the_oracle() {
    let events = events();
    let (_dir, file, db) = setup_with("location", events, &[], PARTITIONS, true);
    let rounds = if long() { 4 } else { 1 };
    let workers = kill_drill(&file, &db, 0x5_40ff1e, rounds, (200, 800), |_, _| {});
    let logs = wait_all(workers, Duration::from_secs(300));
    assert!(
        logs.iter()
            .any(|l| l.contains("the 3 partitions of iot by location, shuffled")),
        "{logs:?}"
    );
    assert_matches_oracle_by("location", &db, events);
}

#[test]
fn a_job_that_cannot_be_distributed_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    // One count over every row: no column keys it, so no worker can hold a share.
    let source = format!(
        "connector = 'kafka', topic = 'nowhere', 'bootstrap.servers' = '{}', 'key.fields' = 'sensor_id'",
        support::brokers()
    );
    std::fs::write(
        &file,
        format!(
            "CREATE TABLE iot ({}) WITH ({source});
             CREATE TABLE out WITH (connector = 'blackhole');
             INSERT INTO out SELECT count(*) AS n FROM iot;",
            iot::IOT_COLUMNS
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--distributed", "--checkpoint-dir"])
        .arg(dir.path().join("checkpoints"))
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot be spread over workers") && err.contains("no column of table iot"),
        "{err}"
    );
    // A file every task would write.
    std::fs::write(
        &file,
        format!(
            "CREATE TABLE iot ({}) WITH ({source});
             CREATE TABLE out WITH (connector = 'file', path = 'out.jsonl');
             INSERT INTO out SELECT sensor_id, temperature FROM iot;",
            iot::IOT_COLUMNS
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--distributed", "--checkpoint-dir"])
        .arg(dir.path().join("checkpoints"))
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("table out is a file"), "{err}");
}

/// The long-sessions job (`sql/long_sessions.sql`: SESSION windows per user) over a topic
/// keyed by user, so no shuffle: three workers, two killed with SIGKILL and replaced,
/// must leave both tables equal to one `sluice run` process over the same topic (whose
/// results `tests/reference_jobs.rs` checks against the batch oracle).
#[test]
fn long_sessions_on_workers_killed_and_replaced_equal_one_process() {
    let events: u64 = if long() { 1_500_000 } else { 400_000 };
    let topic = unique("sessions_dist");
    support::generate_topic(
        "user_activity",
        &topic,
        PARTITIONS,
        &[
            ("keys", "400"),
            ("seed", "5"),
            ("rate", "0"),
            ("speedup", "60"),
            ("start_time", "2024-05-01T00:00:00Z"),
        ],
        events,
    );
    let queries = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/long_sessions.sql"),
    )
    .unwrap();
    let sql = format!(
        "SET checkpoint_interval = '250ms';
         CREATE TABLE user_activity (user_id TEXT NOT NULL, session_id TEXT NOT NULL,
            event_type TEXT NOT NULL, page TEXT, browser TEXT, device TEXT,
            event_time TIMESTAMP NOT NULL,
            WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE)
         WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{}',
               scan.bounded.mode = 'latest-offset', 'key.fields' = 'user_id');
         CREATE TABLE sessions WITH (connector = 'postgres', url = '${{DB}}', table = 'sessions');
         CREATE TABLE long_sessions WITH (connector = 'postgres', url = '${{DB}}', table = 'long_sessions');
         {queries}",
        support::brokers()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, sql).unwrap();

    // One process.
    let single = fresh_database("sessions_one");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--name", "one", "--checkpoint-dir"])
        .arg(dir.path().join("one"))
        .arg(&file)
        .env("DB", &single)
        .env("SLUICE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Three workers, two killed at a replayable random moment and replaced.
    let db = fresh_database("sessions_dist");
    let workers = kill_drill(&file, &db, 0x5e55, 1, (100, 600), |_, _| {});
    wait_all(workers, Duration::from_secs(300));

    for table in ["sessions", "long_sessions"] {
        let select = format!(
            "SELECT {}, {}, user_id, duration_seconds, events, purchases FROM {table}",
            ts("session_start"),
            ts("session_end")
        );
        let expected = pg_rows(&single, &select);
        assert!(expected.len() > 50, "{table}: {} rows", expected.len());
        support::assert_rows_match(table, &pg_rows(&db, &select), &expected);
    }
}

/// `sluice serve --distributed SHARED` on two servers, the same shuffled job (windows per
/// location) submitted to both: they share its tasks; one server killed with SIGKILL
/// loses nothing, the other finishes the job, and the tables equal the oracle.
#[test]
fn two_servers_share_a_submitted_job_and_one_killed_loses_nothing() {
    let events = events();
    let (dir, file, db) = setup_with("location", events, &[], PARTITIONS, true);
    let sql = std::fs::read_to_string(&file)
        .unwrap()
        .replace("${DB}", &db);
    let shared = dir.path().join("checkpoints");
    let start = |name: &str| {
        let home = dir.path().join(name);
        std::fs::create_dir_all(home.join("files")).unwrap();
        server::Server::start_with(
            &home,
            support::free_port(),
            &["--distributed", &shared.to_string_lossy()],
        )
    };
    let (a, b) = (start("a"), start("b"));
    server::submit(&a.client(), "job", &sql);
    server::submit(&b.client(), "job", &sql);
    wait_first_checkpoint(&file);
    std::thread::sleep(Duration::from_millis(500));
    let before = server::job(&a.client(), "job");
    assert_eq!(before["state"], "running", "{before}");
    a.kill();
    let done = server::wait_state(&b.client(), "job", &["finished"], Duration::from_secs(240));
    assert!(
        done["events_in"].as_u64().unwrap() > 0,
        "the server counts its tasks' events: {done}"
    );
    assert_matches_oracle_by("location", &db, events);
}

/// Two topics (3 and 2 partitions, both keyed by sensor) in one aggregate per location:
/// each table's partitions are shuffled by location into its own shuffle topic, and a
/// task per shuffle partition reads both (its watermark the least of the two tables').
/// Two of three workers killed and replaced: the table equals the oracle over both
/// streams' events.
#[test]
fn two_topics_shuffled_into_one_aggregate_with_workers_killed_equal_the_oracle() {
    let events = events() / 2;
    let seeds = [("seed", "11")];
    let other = [("seed", "12")];
    let (a, b) = (unique("iot_union_a"), unique("iot_union_b"));
    for (topic, partitions, extra) in [(&a, 3, &seeds), (&b, 2, &other)] {
        let mut options = GENERATOR.to_vec();
        options.extend([("rate", RATE.0), ("speedup", RATE.1)]);
        options.extend(extra.iter().copied());
        support::generate_topic("iot", topic, partitions, &options, events);
    }
    let table = |name: &str, topic: &str| {
        format!(
            "CREATE TABLE {name} ({}) WITH (connector = 'kafka', topic = '{topic}',
               'bootstrap.servers' = '{}', scan.bounded.mode = 'latest-offset',
               'key.fields' = 'sensor_id');",
            iot::IOT_COLUMNS,
            support::brokers()
        )
    };
    let sql = format!(
        "SET checkpoint_interval = '250ms';
         {}
         {}
         CREATE VIEW readings AS SELECT * FROM iot UNION ALL SELECT * FROM iot2;
         CREATE TABLE metrics WITH (connector = 'postgres', url = '${{DB}}',
            table = 'sensor_metrics', primary_key = 'window_start, location');
         INSERT INTO metrics {}
         FROM TUMBLE(readings, event_time, INTERVAL '5' MINUTE)
         GROUP BY window_start, window_end, location;",
        table("iot", &a),
        table("iot2", &b),
        iot::metrics_by("location")
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(&file, sql).unwrap();
    let db = fresh_database("union");
    let workers = kill_drill(&file, &db, 0x0210, 1, (100, 600), |_, _| {});
    let logs = wait_all(workers, Duration::from_secs(300));
    assert!(
        logs.iter().any(|l| l.contains(
            "the 3 partitions of iot by location and the 2 partitions of iot2 by location"
        )),
        "{logs:?}"
    );
    let (metrics, _) = oracle_of_streams("location", events, RATE.0, RATE.1, &[&seeds, &other]);
    assert!(metrics.len() > 10, "the oracle has rows");
    assert_metrics_match_by("location", &db, &metrics);
}
