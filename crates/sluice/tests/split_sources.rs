//! A file read by several tasks (chunks of byte ranges cut at line ends, dealt out in
//! turn): the windows equal the batch oracle's at parallelism 1 and 2, bad lines are
//! reported with their line in the file, and a run aborted after a checkpoint resumes
//! each task's ranges where it was.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use datafusion::prelude::{JsonReadOptions, SessionContext};
use support::{assert_rows_match, read_rows};

/// `n` readings of 50 sensors, 10 ms apart in event time with up to 2 s of disorder
/// (the watermark allows 5 s), as JSON lines.
fn readings(n: usize) -> String {
    let mut text = String::with_capacity(n * 90);
    for i in 0..n {
        // From 2024-05-01T00:00:10Z on, so that the disorder stays within the day.
        let ms = 1_714_521_610_000i64 + i as i64 * 10 - ((i * 7919) % 200) as i64 * 10;
        let secs = ms / 1000;
        text.push_str(&format!(
            "{{\"sensor_id\":\"s-{:03}\",\"temperature\":{}.{},\"event_time\":\"2024-05-01T{:02}:{:02}:{:02}.{:03}Z\"}}\n",
            (i * 31) % 50,
            (i * 13) % 40,
            i % 10,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            ms % 1000
        ));
    }
    text
}

fn job(input: &Path, out: &Path) -> String {
    format!(
        "CREATE TABLE iot (
             sensor_id TEXT NOT NULL, temperature DOUBLE, event_time TIMESTAMP NOT NULL,
             WATERMARK FOR event_time AS event_time - INTERVAL '5' SECOND
         ) WITH (connector = 'file', path = '{}');
         CREATE TABLE w WITH (connector = 'file', path = '{}');
         INSERT INTO w
         SELECT window_start, sensor_id, count(*) AS n, min(temperature) AS lo,
                max(temperature) AS hi, sum(temperature) AS total
         FROM TUMBLE(iot, event_time, INTERVAL '10' SECOND)
         GROUP BY window_start, sensor_id;",
        input.display(),
        out.display()
    )
}

/// The same windows computed by DataFusion over the whole file at once.
fn oracle(input: &Path) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ctx = SessionContext::new();
    rt.block_on(async {
        ctx.register_json(
            "iot",
            input.to_str().unwrap(),
            JsonReadOptions::default().file_extension(".jsonl"),
        )
        .await
        .unwrap();
        support::batch_rows(
            &ctx,
            "SELECT date_bin(INTERVAL '10 seconds', to_timestamp_millis(event_time),
                             TIMESTAMP '1970-01-01T00:00:00') AS window_start,
                    sensor_id, count(*) AS n, min(temperature) AS lo, max(temperature) AS hi,
                    sum(temperature) AS total
             FROM iot GROUP BY 1, 2",
        )
        .await
    })
}

#[test]
fn a_file_read_by_two_tasks_gives_the_batch_result() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // About 4 MB: cut in 16 chunks of 256 kB, 8 for each task.
    std::fs::write(&input, readings(50_000)).unwrap();
    let want = oracle(&input);
    assert!(want.len() > 1_000, "{} windows", want.len());
    for parallelism in [1, 2] {
        let out = dir.path().join(format!("out-{parallelism}.jsonl"));
        let metrics = support::run_job(&job(&input, &out), &[], parallelism);
        assert_eq!(metrics.events_in, 50_000);
        assert_rows_match(
            &format!("parallelism {parallelism}"),
            &read_rows(&out),
            &want,
        );
    }
}

#[test]
fn a_bad_line_in_the_second_range_is_reported_with_its_line_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut lines: Vec<String> = readings(40_000).lines().map(String::from).collect();
    lines[31_999] = "{\"sensor_id\":\"s-001\",\"temperature\":\"warm\"}".into();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let err = support::build_job(&job(&input, &out), &[], 2)
        .run()
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 32000"), "{err}");
}

fn sluice(dir: &Path, file: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.current_dir(dir)
        .args(["run", file.to_str().unwrap(), "--parallelism", "2"])
        .env("SLUICE_LOG", "warn");
    cmd
}

#[test]
fn an_aborted_run_resumes_each_range_where_its_checkpoint_left_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, readings(200_000)).unwrap();
    let want = oracle(&input);
    let out = dir.path().join("out.jsonl");
    let file = dir.path().join("split.sql");
    std::fs::write(
        &file,
        format!("SET checkpoint_interval = '20ms';\n{}", job(&input, &out)),
    )
    .unwrap();
    let first = sluice(dir.path(), &file)
        .env("SLUICE_ABORT_AFTER_CHECKPOINT", "3")
        .output()
        .unwrap();
    assert!(
        !first.status.success(),
        "the first run should have been aborted: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The checkpoint holds, for each of the two tasks, the next byte of the range it is
    // reading (or has just read to its end) and the start of each range it has still to
    // read.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("checkpoints/split/epoch-3/manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let offsets = manifest["sources"][0]["offsets"]
        .as_object()
        .unwrap()
        .clone();
    let mut parts = std::collections::BTreeSet::new();
    let mut read_from = 0;
    for (key, next) in &offsets {
        let (part, range) = key
            .strip_prefix("part ")
            .unwrap()
            .split_once(" range ")
            .unwrap();
        parts.insert(part.to_string());
        let (start, end) = range.split_once("..").unwrap();
        let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
        let next = next.as_u64().unwrap();
        assert!(start <= next && next <= end, "{key}: {next}");
        read_from += usize::from(start < next);
    }
    assert_eq!(parts.len(), 2, "{offsets:?}");
    assert!(
        offsets.len() > 2,
        "the abort came after both tasks' last ranges began: {offsets:?}"
    );
    assert!(read_from > 0, "nothing read: {offsets:?}");
    let last = sluice(dir.path(), &file).output().unwrap();
    assert!(
        last.status.success(),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_rows_match("after the restore", &read_rows(&out), &want);
}
