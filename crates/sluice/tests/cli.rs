//! The `sluice` binary as a user runs it: refusals point at the SQL, runs end with a
//! summary, bad records follow the table's policy, shared sources are read once, and
//! Parquet output reads back.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn sluice(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const READINGS: &str = r#"{"id":"a","temp":21.5,"ts":"2024-05-01T12:00:00Z"}
{"id":"b","temp":31.0,"ts":"2024-05-01T12:01:00Z"}
{"id":"c","temp":"warm","ts":"2024-05-01T12:02:00Z"}
{"id":"d","temp":33.5,"ts":1714565100000}
not json at all
{"id":"e","temp":19.0,"ts":"2024-05-01T12:11:00Z"}
"#;

fn job(bad_data: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE readings (
    id TEXT NOT NULL,
    temp DOUBLE,
    ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE
) WITH (connector = 'file', path = 'in.jsonl', bad_data = '{bad_data}');
CREATE TABLE hot WITH (connector = 'file', path = 'hot.jsonl');
CREATE TABLE per_window WITH (connector = 'file', path = 'windows.parquet', format = 'parquet');
INSERT INTO hot SELECT id, temp FROM readings WHERE temp > 30;
INSERT INTO per_window
SELECT window_start, count(*) AS n, max(temp) AS max_temp
FROM TUMBLE(readings, ts, INTERVAL '5' MINUTE)
GROUP BY window_start;
{extra}"
    )
}

#[test]
fn refusal_points_at_the_sql() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), READINGS).unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        job(
            "drop",
            "INSERT INTO hot\nSELECT id, temp FROM readings\nORDER BY id;",
        ),
    )
    .unwrap();
    let (code, _out, err) = sluice(&["explain", "job.sql"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("job.sql:16:10: ORDER BY cannot run"), "{err}");
    assert!(err.contains("  ORDER BY id;\n           ^"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_drops_and_counts_bad_records_and_reads_a_shared_source_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), READINGS).unwrap();
    std::fs::write(dir.path().join("job.sql"), job("drop", "")).unwrap();
    let (code, _out, err) = sluice(&["run", "job.sql", "--parallelism", "2"], dir.path());
    assert_eq!(code, 0, "{err}");
    // 4 good records read once (not once per statement), 2 bad ones dropped.
    assert!(err.contains("events 4 |"), "{err}");
    assert!(err.contains("bad 2"), "{err}");
    let hot = std::fs::read_to_string(dir.path().join("hot.jsonl")).unwrap();
    assert_eq!(
        hot,
        "{\"id\":\"b\",\"temp\":31.0}\n{\"id\":\"d\",\"temp\":33.5}\n"
    );

    // The Parquet parts read back: 12:00 (a, b), 12:05 (d, epoch millis), 12:10 (e).
    let mut batches = Vec::new();
    for part in std::fs::read_dir(dir.path().join("windows.parquet")).unwrap() {
        let path = part.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "{name}"
        );
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        batches.extend(reader.map(|b| b.unwrap()));
    }
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 2024-05-01T12:00:00 | 2 | 31.0     |"),
        "{text}"
    );
    assert!(
        text.contains("| 2024-05-01T12:05:00 | 1 | 33.5     |"),
        "{text}"
    );
    assert!(
        text.contains("| 2024-05-01T12:10:00 | 1 | 19.0     |"),
        "{text}"
    );
}

#[test]
fn bad_record_fails_the_job_with_its_line_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), READINGS).unwrap();
    std::fs::write(dir.path().join("job.sql"), job("fail", "")).unwrap();
    let (code, _out, err) = sluice(&["run", "job.sql"], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("table readings: in.jsonl line 3:"), "{err}");
    assert!(err.contains("bad_data = 'drop'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn catalog_files_declare_tables_and_views_for_jobs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), READINGS).unwrap();
    std::fs::write(
        dir.path().join("defs.sql"),
        "CREATE TABLE readings (id TEXT NOT NULL, temp DOUBLE, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE)
         WITH (connector = 'file', path = 'in.jsonl', bad_data = 'drop');
         CREATE VIEW hot_readings AS SELECT id, temp, ts FROM readings WHERE temp > 30;
         CREATE TABLE hot WITH (connector = 'file', path = 'catalog-hot.jsonl');",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("job.sql"),
        "INSERT INTO hot SELECT id, temp FROM hot_readings;",
    )
    .unwrap();
    let (code, _out, err) = sluice(
        &["run", "job.sql", "--catalog", "defs.sql", "--fresh"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    let direct = std::fs::read_to_string(dir.path().join("catalog-hot.jsonl")).unwrap();
    let hot_in_input = READINGS
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["temp"].as_f64())
                .is_some_and(|t| t > 30.0)
        })
        .count();
    assert_eq!(direct.lines().count(), hot_in_input, "{direct}");

    // A job's own definition replaces the catalog's of that name.
    std::fs::write(
        dir.path().join("job2.sql"),
        "CREATE TABLE hot WITH (connector = 'file', path = 'own-hot.jsonl');
         INSERT INTO hot SELECT id, temp FROM hot_readings;",
    )
    .unwrap();
    let (code, _out, err) = sluice(
        &["run", "job2.sql", "--catalog", "defs.sql", "--fresh"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("own-hot.jsonl")).unwrap(),
        direct
    );

    // A refusal inside the catalog points into the catalog file.
    std::fs::write(
        dir.path().join("bad.sql"),
        "CREATE VIEW broken AS\nSELECT id, humidity FROM readings;",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("job3.sql"),
        "INSERT INTO hot SELECT id, 1.0 AS temp FROM broken;",
    )
    .unwrap();
    let (code, _out, err) = sluice(
        &[
            "explain",
            "job3.sql",
            "--catalog",
            "defs.sql",
            "--catalog",
            "bad.sql",
        ],
        dir.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.sql:2:"), "{err}");
    assert!(err.contains("humidity"), "{err}");
}
