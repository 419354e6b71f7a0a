//! The reference jobs in `sql/`, with the generators' catalog (`sql/catalog/`), run
//! bounded over generated events, agree with the same queries run as a batch by
//! DataFusion over the same events; the IoT stream produces both alert kinds and the user
//! stream sessions longer than five minutes; every job plans with each catalog set the
//! README names; and `sluice demo` prints window results and alerts.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::compute::cast;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sluice::engine::{JobRun, RunOptions};

/// Sources windowed by the reference jobs, their time columns and their windows' sizes
/// (number, SQL unit, DataFusion unit).
const TUMBLE_SOURCES: &[(&str, &str, u32, &str, &str)] = &[
    ("iot_sensors", "event_time", 5, "MINUTE", "minutes"),
    ("user_activity", "event_time", 5, "MINUTE", "minutes"),
    ("factory_readings", "event_time", 1, "MINUTE", "minutes"),
    ("host_metrics", "sample_time", 1, "MINUTE", "minutes"),
    ("race_positions", "event_time", 5, "SECOND", "seconds"),
];

fn sql_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../sql")
}

fn env_for(out: &Path) -> HashMap<String, String> {
    [
        ("OUTPUT_DIR", out.display().to_string()),
        ("START_TIME", "2024-05-01T06:00:00Z".into()),
        ("LATE_FRACTION", "0".into()),
        ("IOT_RATE", "0".into()),
        ("USER_RATE", "0".into()),
        ("IOT_LIMIT", "40000".into()),
        ("USER_LIMIT", "40000".into()),
        ("FACTORY_RATE", "0".into()),
        ("FACTORY_LIMIT", "30000".into()),
        // Enough faults that every machine has some, at both levels.
        ("ANOMALY_FRACTION", "0.01".into()),
        ("SQL_DATA", sql_dir().join("data").display().to_string()),
        // Five minutes of a race of 10 cars.
        ("RACE_RATE", "0".into()),
        ("RACE_LIMIT", "30000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The batch equivalent of a window TVF: each row with its window's bounds.
fn batch_equivalent(select: &str) -> String {
    let mut s = select.to_string();
    for (src, time, n, unit, units) in TUMBLE_SOURCES {
        s = s.replace(
            &format!("TUMBLE({src}, {time}, INTERVAL '{n}' {unit})"),
            &format!(
                "(SELECT *, date_bin(INTERVAL '{n} {units}', {time}) AS window_start,
                         date_bin(INTERVAL '{n} {units}', {time}) + INTERVAL '{n} {units}' AS window_end
                  FROM {src}) AS {src}"
            ),
        );
    }
    // A car's positions come every 100 ms (at most 200 ms out of order): one session per
    // car and lap.
    s = s.replace(
        "SESSION(race_positions, event_time, INTERVAL '1' SECOND)",
        "(SELECT *, min(event_time) OVER (PARTITION BY car_id, lap) AS window_start,
                 max(event_time) OVER (PARTITION BY car_id, lap) + INTERVAL '1 second' AS window_end
          FROM race_positions) AS race_positions",
    );
    // Sessions per user: a new one starts where the gap to the user's previous event is
    // 30 minutes or more; it ends 30 minutes after its last event.
    s.replace(
        "SESSION(user_activity, event_time, INTERVAL '30' MINUTE)",
        "(SELECT *, min(event_time) OVER (PARTITION BY user_id, sid) AS window_start,
                 max(event_time) OVER (PARTITION BY user_id, sid) + INTERVAL '30 minutes' AS window_end
          FROM (SELECT *, sum(fresh) OVER (PARTITION BY user_id ORDER BY event_time
                                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS sid
                FROM (SELECT *, CASE WHEN CAST(event_time AS BIGINT)
                                          - lag(CAST(event_time AS BIGINT)) OVER (PARTITION BY user_id ORDER BY event_time) < 1800000
                                     THEN 0 ELSE 1 END AS fresh
                      FROM user_activity) AS m) AS n) AS user_activity",
    )
}

/// The statements of a job file, without comment lines (which may hold semicolons).
fn statements(sql: &str) -> Vec<String> {
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// (sink table, SELECT text) of every INSERT in a job file.
fn inserts(sql: &str) -> Vec<(String, String)> {
    statements(sql)
        .iter()
        .filter_map(|t| {
            let rest = t.strip_prefix("INSERT INTO ")?;
            let (table, select) = rest.split_once(char::is_whitespace)?;
            Some((table.to_string(), select.trim().to_string()))
        })
        .collect()
}

/// A reference job's text, planned with the generators' catalog (and `extra`, whose
/// tables replace the catalog's of the same name).
fn plan_reference(
    name: &str,
    env: &HashMap<String, String>,
    extra: Option<&str>,
) -> (String, sluice_sql::JobGraph) {
    let sql = std::fs::read_to_string(sql_dir().join(format!("{name}.sql"))).unwrap();
    let lookup = |k: &str| env.get(k).cloned();
    let mut catalogs = support::sql_catalogs(&["generators"]);
    if let Some(text) = extra {
        catalogs.push(sluice_sql::CatalogFile {
            name: "the test's catalog".into(),
            sql: text.to_string(),
        });
    }
    let graph = sluice::plan_with_catalog_env(&sql, &catalogs, &lookup)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (sql, graph)
}

/// Runs a reference job and checks every table it writes against the batch oracle;
/// returns each table's rows (an updating result's changelog replayed).
fn check_reference_job(name: &str) -> HashMap<String, Vec<String>> {
    check_reference_job_with(name, None)
}

/// [`check_reference_job`] with a catalog of the test's own after the generators'.
fn check_reference_job_with(name: &str, extra: Option<&str>) -> HashMap<String, Vec<String>> {
    let tmp = tempfile::tempdir().unwrap();
    let env = env_for(tmp.path());
    let (sql, graph) = plan_reference(name, &env, extra);

    // The events, generated (or read) once more with the job's own source options.
    let ctx = SessionContext::new();
    for source in &graph.sources {
        let mut reader = sluice_connectors::build_source(
            &source.def.name,
            &source.def.options,
            source.schema.clone(),
            Arc::default(),
            &sluice_types::Interrupt::new(),
        )
        .unwrap();
        let mut events = Vec::new();
        while let Some(b) = reader.next_batch().unwrap() {
            events.push(b);
        }
        ctx.register_table(
            source.def.name.as_str(),
            Arc::new(MemTable::try_new(source.schema.clone(), vec![events]).unwrap()),
        )
        .unwrap();
    }

    // The job's views, as batch views.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for view in statements(&sql)
        .iter()
        .filter(|s| s.starts_with("CREATE VIEW"))
    {
        rt.block_on(async { ctx.sql(&batch_equivalent(view)).await?.collect().await })
            .unwrap();
    }

    let run = JobRun::build(
        &graph,
        &RunOptions {
            parallelism: 2,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let metrics = run.handle.metrics.clone();
    run.run().unwrap();
    assert_eq!(
        metrics.snapshot().late,
        0,
        "{name}: no late events were generated"
    );

    let mut expected_by_sink: HashMap<String, Vec<String>> = HashMap::new();
    for (table, select) in inserts(&sql) {
        let sink = graph.sinks.iter().find(|s| s.def.name == table).unwrap();
        let batches: Vec<RecordBatch> = rt
            .block_on(async { ctx.sql(&batch_equivalent(&select)).await?.collect().await })
            .unwrap();
        let mut buf = Vec::new();
        {
            let mut w = LineDelimitedWriter::new(&mut buf);
            for b in batches {
                // The sink's column names and types, by position, as INSERT does.
                let cols = b
                    .columns()
                    .iter()
                    .zip(sink.schema.fields())
                    .map(|(c, f)| cast(c, f.data_type()).unwrap())
                    .collect();
                let b = RecordBatch::try_new(sink.schema.clone(), cols).unwrap();
                w.write(&sluice_connectors::timestamps_as_text(&b).unwrap())
                    .unwrap();
            }
            w.finish().unwrap();
        }
        let rows = String::from_utf8(buf).unwrap();
        expected_by_sink
            .entry(table)
            .or_default()
            .extend(rows.lines().map(support::normalize));
    }
    let mut tables = HashMap::new();
    for (table, mut expected) in expected_by_sink {
        expected.sort();
        // An updating result's changelog, replayed, is the final table.
        let got = support::replayed(&tmp.path().join(format!("{table}.jsonl")));
        assert!(!got.is_empty(), "{name}: {table} is empty");
        assert_eq!(got.len(), expected.len(), "{name}: {table} row count");
        assert_eq!(
            got, expected,
            "{name}: {table} differs from the batch oracle"
        );
        tables.insert(table, got);
    }
    tables
}

#[test]
fn factory_alerts_match_batch_oracle_at_both_levels() {
    let tables = check_reference_job("factory_alerts");
    let alerts = &tables["factory_alerts"];
    for level in ["warning", "critical"] {
        assert!(
            alerts
                .iter()
                .any(|a| a.contains(&format!("level=\"{level}\""))),
            "no {level} alert among {} alerts",
            alerts.len()
        );
    }
}

#[test]
fn factory_health_matches_batch_oracle() {
    let tables = check_reference_job("factory_health");
    let health = &tables["machine_health"];
    assert_eq!(health.len(), 20, "one row per machine: {health:?}");
    assert!(
        health.iter().any(|h| h.contains("health=\"ok\"")),
        "{health:?}"
    );
}

/// Host metrics recorded on three hosts (`sql/data/host_metrics_recorded.jsonl`): one
/// stays Normal, one's memory and one's CPU climb through Alert to Critical.
#[test]
fn host_status_matches_batch_oracle_over_recorded_metrics() {
    let recorded = format!(
        "CREATE TABLE host_metrics (host TEXT NOT NULL, sample_time TIMESTAMP NOT NULL,
             cpu_percent DOUBLE NOT NULL, cpu_cores BIGINT NOT NULL,
             memory_used_bytes BIGINT NOT NULL, memory_total_bytes BIGINT NOT NULL,
             disk_used_bytes BIGINT NOT NULL, disk_total_bytes BIGINT NOT NULL,
             net_rx_bytes BIGINT NOT NULL, net_tx_bytes BIGINT NOT NULL,
             WATERMARK FOR sample_time AS sample_time - INTERVAL '5' SECOND)
         WITH (connector = 'file', path = '{}');",
        sql_dir().join("data/host_metrics_recorded.jsonl").display()
    );
    let tables = check_reference_job_with("host_status", Some(&recorded));
    let status = &tables["host_status"];
    for (host, want) in [
        ("web-1", "Normal"),
        ("db-1", "Critical"),
        ("batch-1", "Critical"),
    ] {
        assert!(
            status
                .iter()
                .any(|r| r.contains(&format!("host=\"{host}\""))
                    && r.contains(&format!("status=\"{want}\""))),
            "{host} should end {want}: {status:?}"
        );
    }
    let minutes = &tables["host_metrics_1m"];
    assert_eq!(minutes.len(), 30, "3 hosts × 10 minutes");
    assert!(minutes.iter().any(|r| r.contains("status=\"Alert\"")));
}

#[test]
fn race_laps_match_batch_oracle() {
    let tables = check_reference_job("race_laps");
    // Ten cars completed laps; the leaderboard holds the first five places.
    assert_eq!(tables["leaderboard"].len(), 5);
    let laps = &tables["lap_times"];
    assert!(laps.len() >= 30, "{} laps", laps.len());
}

/// A table of a fixed-shape source may leave its columns out: it gets the source's
/// columns and a watermark on its time column.
#[test]
fn a_fixed_shape_source_may_omit_its_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.jsonl");
    let sql = format!(
        "CREATE TABLE readings WITH (connector = 'generator', profile = 'iot', keys = '5',
             rate = '0', limit = '3000', start_time = '2024-05-01T00:00:00Z', disorder = '2s');
         CREATE TABLE hosts WITH (connector = 'host_metrics', interval = '1s', limit = '1');
         CREATE TABLE out WITH (connector = 'file', path = '{}');
         CREATE TABLE samples WITH (connector = 'blackhole');
         INSERT INTO out SELECT sensor_id, window_start, count(*) AS readings
         FROM TUMBLE(readings, event_time, INTERVAL '1' MINUTE)
         GROUP BY sensor_id, window_start, window_end;
         INSERT INTO samples SELECT host, cpu_percent, memory_used_bytes FROM hosts;",
        out.display()
    );
    let graph = sluice::plan_with_env(&sql, &|_| None).unwrap();
    let readings = graph
        .sources
        .iter()
        .find(|s| s.def.name == "readings")
        .unwrap();
    assert_eq!(readings.schema.fields().len(), 8, "{:?}", readings.schema);
    assert_eq!(readings.event_time.map(|e| e.delay_ms), Some(2_000));
    let hosts = graph
        .sources
        .iter()
        .find(|s| s.def.name == "hosts")
        .unwrap();
    assert!(hosts.schema.field_with_name("cpu_percent").is_ok());
    JobRun::build(&graph, &RunOptions::default())
        .unwrap()
        .run()
        .unwrap();
    let rows = support::read_rows(&out);
    let total: f64 = rows
        .iter()
        .map(|r| {
            r.split("readings=")
                .nth(1)
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap()
        })
        .sum();
    assert_eq!(total, 3000.0, "every reading counted once: {rows:?}");
}

#[test]
fn iot_aggregates_matches_batch_oracle() {
    check_reference_job("iot_aggregates");
}

#[test]
fn sensor_state_matches_batch_oracle() {
    check_reference_job("sensor_state");
}

#[test]
fn iot_alerts_matches_batch_oracle() {
    check_reference_job("iot_alerts");
}

#[test]
fn user_activity_matches_batch_oracle() {
    check_reference_job("user_activity");
}

#[test]
fn long_sessions_matches_batch_oracle() {
    check_reference_job("long_sessions");
}

#[test]
fn generated_streams_have_both_alert_kinds_and_long_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let env = env_for(tmp.path());
    for job in ["iot_alerts", "long_sessions"] {
        let (_, graph) = plan_reference(job, &env, None);
        let options = RunOptions {
            parallelism: 1,
            ..RunOptions::default()
        };
        JobRun::build(&graph, &options).unwrap().run().unwrap();
    }
    let alerts = std::fs::read_to_string(tmp.path().join("iot_alerts.jsonl")).unwrap();
    let high = alerts
        .lines()
        .filter(|l| l.contains("\"kind\":\"high_temperature\""))
        .count();
    let low = alerts
        .lines()
        .filter(|l| l.contains("\"kind\":\"low_battery\""))
        .count();
    assert!(high > 0 && low > 0, "high {high}, low {low}");
    let sessions = std::fs::read_to_string(tmp.path().join("long_sessions.jsonl")).unwrap();
    let durations: Vec<i64> = sessions
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["duration_seconds"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(durations.len() > 10, "{} long sessions", durations.len());
    assert!(durations.iter().all(|d| *d > 300), "{durations:?}");
}

/// Each catalog set of the README plans every reference job: streams and results
/// where the catalogs put them, later files replacing earlier ones by name.
#[test]
fn every_reference_job_plans_with_each_catalog_set() {
    let env: HashMap<String, String> = HashMap::new();
    let lookup = |k: &str| env.get(k).cloned();
    let connectors = |job: &str, set: &[&str]| -> Vec<String> {
        let sql = std::fs::read_to_string(sql_dir().join(format!("{job}.sql"))).unwrap();
        let graph = sluice::plan_with_catalog_env(&sql, &support::sql_catalogs(set), &lookup)
            .unwrap_or_else(|e| panic!("{job} with {set:?}: {e}"));
        let mut tables: Vec<String> = graph
            .sources
            .iter()
            .map(|s| &s.def)
            .chain(graph.sinks.iter().map(|s| &s.def))
            .map(|d| format!("{} {}", d.name, d.options.connector().unwrap_or("?")))
            .collect();
        tables.sort();
        tables
    };
    let jobs = [
        "iot_aggregates",
        "iot_alerts",
        "user_activity",
        "long_sessions",
        "factory_alerts",
        "factory_health",
    ];
    for job in jobs {
        for t in connectors(job, &["generators"]) {
            assert!(
                t.ends_with(" generator") || t.ends_with(" file"),
                "{job}: {t}"
            );
        }
        for t in connectors(job, &["kafka", "postgres"]) {
            assert!(
                t.ends_with(" kafka") || t.ends_with(" postgres"),
                "{job}: {t}"
            );
        }
    }
    assert_eq!(
        connectors("iot_alerts", &["generators", "kafka"]),
        ["iot_alerts kafka", "iot_sensors kafka"]
    );
    assert_eq!(
        connectors("iot_alerts", &["kafka", "postgres"]),
        ["iot_alerts postgres", "iot_sensors kafka"]
    );
    assert_eq!(
        connectors("user_activity", &["generators", "kafka"]),
        [
            "activity_5m file",
            "activity_by_browser file",
            "activity_by_event_type file",
            "user_activity kafka"
        ]
    );
    // The lookup job needs the database's catalog for its `sensors` table.
    let sql = std::fs::read_to_string(sql_dir().join("iot_sensor_limits.sql")).unwrap();
    let err = sluice::plan_with_catalog_env(&sql, &support::sql_catalogs(&["generators"]), &lookup)
        .unwrap_err()
        .to_string();
    assert!(err.contains("sensors"), "{err}");
    sluice::plan_with_catalog_env(
        &sql,
        &support::sql_catalogs(&["generators", "postgres"]),
        &lookup,
    )
    .unwrap();
}

#[test]
fn demo_prints_window_results_and_alerts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--duration", "8s"])
        .env("IOT_SPEEDUP", "600")
        .env("USER_SPEEDUP", "2400")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let count = |prefix: &str| stdout.lines().filter(|l| l.starts_with(prefix)).count();
    assert!(
        count("window sensor_metrics_5m window_start=") > 0,
        "{stdout}"
    );
    assert!(count("window activity_5m ") > 0, "{stdout}");
    assert!(
        count("alert high_temperature ") + count("alert low_battery ") > 0,
        "{stdout}"
    );
    assert!(count("alert long_session ") > 0, "{stdout}");
    assert!(stdout.contains("demo finished after"), "{stdout}");
}
