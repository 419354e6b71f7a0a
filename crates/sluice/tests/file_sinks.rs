//! File sinks exactly once: a job writing JSON lines and Parquet is killed with SIGKILL
//! at random moments and restarted. After every kill what a reader sees is part of the
//! batch oracle with no row twice; at the end both outputs equal it. Also: a finished
//! job run again leaves its output alone, and a checkpoint of a job reading another
//! file is refused. `SLUICE_LONG=1` (`scripts/test.sh --long`) kills 25 times.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/iot.rs"]
mod iot;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use iot::{GENERATOR, job_sql_into, oracle};
use support::{assert_rows_match, assert_rows_within, read_parquet_dir_rows, read_rows};

/// In-process pace: 60,000 events/s, event time 6,000 times faster.
const RATE: (&str, &str) = ("60000", "6000");

fn long() -> bool {
    std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1")
}

fn generator(limit: u64) -> String {
    let mut with = vec![
        "connector = 'generator'".to_string(),
        "profile = 'iot'".to_string(),
        format!("rate = '{}'", RATE.0),
        format!("speedup = '{}'", RATE.1),
        format!("limit = '{limit}'"),
        "batch_size = '500'".to_string(),
    ];
    with.extend(GENERATOR.iter().map(|(k, v)| format!("{k} = '{v}'")));
    with.join(", ")
}

/// The IoT job with its aggregates as JSON lines and its alerts as Parquet.
fn write_job(dir: &Path, limit: u64) -> std::path::PathBuf {
    let file = dir.join("job.sql");
    let sql = job_sql_into(
        &generator(limit),
        "200ms",
        &format!(
            "connector = 'file', path = '{}'",
            dir.join("out/metrics.jsonl").display()
        ),
        &format!(
            "connector = 'file', format = 'parquet', path = '{}'",
            dir.join("out/alerts").display()
        ),
    );
    std::fs::write(&file, sql).unwrap();
    file
}

fn sluice(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.current_dir(dir)
        .args(args)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, file: &Path, extra: &[&str]) -> Child {
    let mut args = vec!["run", file.to_str().unwrap(), "--parallelism", "2"];
    args.extend(extra);
    sluice(dir, &args).spawn().unwrap()
}

fn finish(child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the job did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the job failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn killed_at_random_moments_json_and_parquet_outputs_equal_the_oracle() {
    let kills: u64 = if long() { 25 } else { 5 };
    let events = 100_000 + kills * 45_000;
    let dir = tempfile::tempdir().unwrap();
    let file = write_job(dir.path(), events);
    let (metrics, alerts) = oracle(events, RATE.0, RATE.1);
    assert!(
        metrics.len() > 10 && alerts.len() > 10,
        "the oracle has rows"
    );
    let mut seed: u64 = 0xf11e;
    let mut seen = Vec::new();
    for k in 0..kills {
        let after = support::random_pause(&mut seed, 250, 650);
        let mut child = run(dir.path(), &file, &[]);
        std::thread::sleep(after);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before kill {k}; the test needs a longer stream"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // What a reader sees now: committed rows only, none twice.
        let m = read_rows(&dir.path().join("out/metrics.jsonl"));
        let a = read_parquet_dir_rows(&dir.path().join("out/alerts"));
        assert_rows_within("metrics.jsonl after a kill", &m, &metrics);
        assert_rows_within("alerts/ after a kill", &a, &alerts);
        seen.push(m.len() + a.len());
    }
    assert!(
        seen.last() > seen.first(),
        "output grew across restarts: {seen:?}"
    );
    finish(run(dir.path(), &file, &[]), Duration::from_secs(180));
    assert_rows_match(
        "metrics.jsonl",
        &read_rows(&dir.path().join("out/metrics.jsonl")),
        &metrics,
    );
    assert_rows_match(
        "alerts/ (parquet parts)",
        &read_parquet_dir_rows(&dir.path().join("out/alerts")),
        &alerts,
    );
}

#[test]
fn a_finished_job_run_again_leaves_its_output_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_job(dir.path(), 20_000);
    finish(run(dir.path(), &file, &[]), Duration::from_secs(60));
    let out = dir.path().join("out/metrics.jsonl");
    let first = std::fs::read(&out).unwrap();
    assert!(!first.is_empty());
    let again = finish(run(dir.path(), &file, &[]), Duration::from_secs(60));
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(
        said.contains("finished at checkpoint")
            && said.contains("rows out")
            && said.contains("--fresh"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        first,
        "the output was left alone"
    );
    // --fresh runs it again and writes the same output.
    finish(
        run(dir.path(), &file, &["--fresh"]),
        Duration::from_secs(60),
    );
    assert_eq!(std::fs::read(&out).unwrap(), first);
}

#[test]
fn a_checkpoint_of_a_job_reading_another_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = |name: &str, n: usize| {
        let path = dir.path().join(name);
        let lines: Vec<String> = (0..n)
            .map(|i| format!("{{\"id\": \"{name}-{i}\"}}"))
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let job = |sub: &str, input: &Path| {
        let d = dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let file = d.join("copy.sql");
        std::fs::write(
            &file,
            format!(
                "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = '{}');
                 CREATE TABLE w WITH (connector = 'file', path = '{}');
                 INSERT INTO w SELECT id FROM r;",
                input.display(),
                d.join("out.jsonl").display()
            ),
        )
        .unwrap();
        file
    };
    let a = job("a", &input("a.jsonl", 50));
    let b = job("b", &input("b.jsonl", 70));
    // Both jobs are named "copy" (the file's stem) and share ./checkpoints.
    let stop_early = sluice(dir.path(), &["run", a.to_str().unwrap()])
        .env("SLUICE_ABORT_AFTER_CHECKPOINT", "1")
        .output()
        .unwrap();
    assert!(!stop_early.status.success());
    let out = sluice(dir.path(), &["run", b.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("b.jsonl") && said.contains("a.jsonl") && said.contains("--fresh"),
        "the refusal says what differs: {said}"
    );
    // With --fresh it runs, and reads its own file.
    let out = sluice(dir.path(), &["run", b.to_str().unwrap(), "--fresh"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(read_rows(&dir.path().join("b/out.jsonl")).len(), 70);
}

/// A sink fed only by sources without event time has no watermark to wait for: its rows
/// reach the output at each checkpoint, not only when the (endless) stream ends.
#[test]
fn rows_without_watermarks_pass_through_to_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    let out = dir.path().join("out.jsonl");
    std::fs::write(
        &file,
        format!(
            "SET checkpoint_interval = '200ms';
             CREATE TABLE iot (sensor_id TEXT NOT NULL, temperature DOUBLE)
             WITH (connector = 'generator', profile = 'iot', rate = '2000', limit = '100000000');
             CREATE TABLE w WITH (connector = 'file', path = '{}');
             INSERT INTO w SELECT sensor_id, temperature FROM iot WHERE temperature > 30;
             INSERT INTO w SELECT sensor_id, temperature FROM iot WHERE temperature < 0;",
            out.display()
        ),
    )
    .unwrap();
    let mut child = run(dir.path(), &file, &[]);
    let t0 = Instant::now();
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(20) && seen == 0 {
        std::thread::sleep(Duration::from_millis(200));
        seen = read_rows(&out).len();
    }
    assert!(child.try_wait().unwrap().is_none(), "the stream is endless");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen > 0, "no row reached the output while the stream ran");
}

/// A crash after the final checkpoint is durable but before the sinks commit it: the
/// next run has nothing left to read, yet the sinks still get that checkpoint's rows.
#[test]
fn a_crash_between_the_final_checkpoint_and_its_commit_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines: Vec<String> = (0..50).map(|i| format!("{{\"id\": \"r{i}\"}}")).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let file = dir.path().join("copy.sql");
    std::fs::write(
        &file,
        format!(
            "SET checkpoint_interval = '1 hour';
             CREATE TABLE r (id TEXT) WITH (connector = 'file', path = '{}');
             CREATE TABLE w WITH (connector = 'file', path = '{}');
             INSERT INTO w SELECT id FROM r;",
            input.display(),
            dir.path().join("out.jsonl").display()
        ),
    )
    .unwrap();
    // The only checkpoint is the final one; the process dies before its commit.
    let crashed = sluice(dir.path(), &["run", file.to_str().unwrap()])
        .env("SLUICE_ABORT_AFTER_CHECKPOINT", "1")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert_eq!(read_rows(&dir.path().join("out.jsonl")).len(), 0);
    let again = sluice(dir.path(), &["run", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(read_rows(&dir.path().join("out.jsonl")).len(), 50);
}
