//! Prometheus text exposition (format 0.0.4) of every job's figures: per job, per task
//! (a chain of operators run together), per sink and per Kafka partition.

use std::fmt::Write;

use sluice_types::Watermark;

use crate::manager::{JobFigures, JobState, now_ms};

/// One metric family: name, type, help, and its samples (labels, value).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// The metric names this endpoint can expose (dashboards are checked against them).
pub const METRIC_NAMES: &[&str] = &[
    "sluice_job_up",
    "sluice_job_restarts_total",
    "sluice_events_in_total",
    "sluice_bytes_in_total",
    "sluice_batches_in_total",
    "sluice_rows_out_total",
    "sluice_late_records_total",
    "sluice_bad_records_total",
    "sluice_join_rows_held",
    "sluice_state_keys_held",
    "sluice_watermark_seconds",
    "sluice_watermark_lag_seconds",
    "sluice_checkpoint_epoch",
    "sluice_checkpoint_duration_seconds",
    "sluice_checkpoint_size_bytes",
    "sluice_sink_commits_total",
    "sluice_sink_commit_seconds_total",
    "sluice_sink_commit_latency_seconds",
    "sluice_kafka_consumer_lag",
    "sluice_task_rows_in_total",
    "sluice_task_rows_out_total",
    "sluice_task_bytes_in_total",
    "sluice_task_bytes_out_total",
    "sluice_task_batches_in_total",
    "sluice_task_queue_fill_ratio",
    "sluice_source_partition_watermark_seconds",
    "sluice_live_watchers",
    "sluice_live_rows_dropped_total",
];

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(jobs: &[JobFigures]) -> String {
    let mut fams: Vec<Family> = Vec::new();
    let mut add = |name: &'static str,
                   kind: &'static str,
                   help: &'static str,
                   labels: Vec<(&'static str, String)>,
                   value: f64| {
        match fams.iter_mut().find(|f| f.name == name) {
            Some(f) => f.samples.push((labels, value)),
            None => fams.push(Family {
                name,
                kind,
                help,
                samples: vec![(labels, value)],
            }),
        }
    };
    let now = now_ms();
    for j in jobs {
        let job = || vec![("job", j.name.clone())];
        let s = &j.snapshot;
        let d = &j.detail;
        let running = matches!(j.state, JobState::Running);
        add(
            "sluice_job_up",
            "gauge",
            "1 while the job runs.",
            job(),
            f64::from(u8::from(running)),
        );
        add(
            "sluice_job_restarts_total",
            "counter",
            "Restarts after failures since the job was last started by hand.",
            job(),
            f64::from(j.restarts),
        );
        add(
            "sluice_events_in_total",
            "counter",
            "Events read by the job's sources.",
            job(),
            s.events_in as f64,
        );
        add(
            "sluice_bytes_in_total",
            "counter",
            "Bytes (Arrow memory) read by the job's sources.",
            job(),
            d.bytes_in as f64,
        );
        add(
            "sluice_batches_in_total",
            "counter",
            "Batches read by the job's sources.",
            job(),
            d.batches_in as f64,
        );
        add(
            "sluice_rows_out_total",
            "counter",
            "Rows written to the job's sinks.",
            job(),
            s.rows_out as f64,
        );
        add(
            "sluice_late_records_total",
            "counter",
            "Records dropped because their windows had closed.",
            job(),
            s.late as f64,
        );
        add(
            "sluice_join_rows_held",
            "gauge",
            "Rows the job's joins hold in their state (a join without a time bound keeps every row unless state.ttl is set).",
            job(),
            s.join_rows_held as f64,
        );
        add(
            "sluice_state_keys_held",
            "gauge",
            "Keys the job's updating results hold in their state (groups of a GROUP BY without a window, deduplicated keys); state.ttl bounds them.",
            job(),
            s.state_keys_held as f64,
        );
        add(
            "sluice_bad_records_total",
            "counter",
            "Records that could not be decoded.",
            job(),
            s.bad as f64,
        );
        if s.watermark != Watermark::MIN {
            let wm = s.watermark.millis();
            add(
                "sluice_watermark_seconds",
                "gauge",
                "The job's event-time watermark, seconds since the Unix epoch.",
                job(),
                wm as f64 / 1000.0,
            );
            add(
                "sluice_watermark_lag_seconds",
                "gauge",
                "Wall clock minus the watermark.",
                job(),
                (now - wm) as f64 / 1000.0,
            );
        }
        if let Some(c) = s.checkpoint {
            add(
                "sluice_checkpoint_epoch",
                "gauge",
                "The last completed checkpoint.",
                job(),
                c.epoch as f64,
            );
            add(
                "sluice_checkpoint_duration_seconds",
                "gauge",
                "How long the last checkpoint took, barrier to manifest.",
                job(),
                c.duration_ms as f64 / 1000.0,
            );
            add(
                "sluice_checkpoint_size_bytes",
                "gauge",
                "Size of the last checkpoint on disk.",
                job(),
                c.bytes as f64,
            );
        }
        for (sink, c) in &d.commits {
            let l = || vec![("job", j.name.clone()), ("sink", sink.clone())];
            add(
                "sluice_sink_commits_total",
                "counter",
                "Epochs committed by a sink.",
                l(),
                c.commits as f64,
            );
            add(
                "sluice_sink_commit_seconds_total",
                "counter",
                "Time spent committing, per sink.",
                l(),
                c.total_ms as f64 / 1000.0,
            );
            add(
                "sluice_sink_commit_latency_seconds",
                "gauge",
                "How long a sink's last commit took.",
                l(),
                c.last_ms as f64 / 1000.0,
            );
        }
        for (source, partition, lag) in &d.kafka_lag {
            add(
                "sluice_kafka_consumer_lag",
                "gauge",
                "Records between the job's position and the end of a Kafka partition.",
                vec![
                    ("job", j.name.clone()),
                    ("source", source.clone()),
                    ("partition", partition.to_string()),
                ],
                *lag as f64,
            );
        }
        for t in &d.tasks {
            let l = || vec![("job", j.name.clone()), ("task", t.task.clone())];
            add(
                "sluice_task_rows_in_total",
                "counter",
                "Rows into a task.",
                l(),
                t.rows_in as f64,
            );
            add(
                "sluice_task_rows_out_total",
                "counter",
                "Rows out of a task.",
                l(),
                t.rows_out as f64,
            );
            add(
                "sluice_task_bytes_in_total",
                "counter",
                "Bytes (Arrow memory) into a task.",
                l(),
                t.bytes_in as f64,
            );
            add(
                "sluice_task_bytes_out_total",
                "counter",
                "Bytes (Arrow memory) out of a task.",
                l(),
                t.bytes_out as f64,
            );
            add(
                "sluice_task_batches_in_total",
                "counter",
                "Batches into a task.",
                l(),
                t.batches_in as f64,
            );
            if t.capacity > 0 {
                add(
                    "sluice_task_queue_fill_ratio",
                    "gauge",
                    "How full a task's input queue is, 0 to 1 (near 1: the task holds back the tasks before it).",
                    l(),
                    t.queued as f64 / t.capacity as f64,
                );
            }
        }
        for (source, partition, wm) in &d.partition_watermarks {
            add(
                "sluice_source_partition_watermark_seconds",
                "gauge",
                "A source partition's own watermark, seconds since the Unix epoch.",
                vec![
                    ("job", j.name.clone()),
                    ("source", source.clone()),
                    ("partition", partition.to_string()),
                ],
                *wm as f64 / 1000.0,
            );
        }
        add(
            "sluice_live_watchers",
            "gauge",
            "Clients watching the job's live results.",
            job(),
            j.watchers as f64,
        );
        add(
            "sluice_live_rows_dropped_total",
            "counter",
            "Live-result rows dropped because a watching client did not take them in time (the job never waits for one).",
            job(),
            j.watch_dropped as f64,
        );
    }
    let mut out = String::new();
    for f in fams {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, v) in f.samples {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {}", f.name, l.join(","), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_rendered_is_a_listed_name_and_labels_are_escaped() {
        let figures = JobFigures {
            name: "a\"b".into(),
            state: JobState::Running,
            restarts: 2,
            snapshot: sluice_runtime::MetricsSnapshot {
                events_in: 10,
                rows_out: 3,
                late: 1,
                bad: 0,
                join_rows_held: 5,
                state_keys_held: 7,
                watermark: Watermark::from_millis(1_000),
                checkpoint: None,
            },
            detail: Default::default(),
            watchers: 1,
            watch_dropped: 4,
        };
        let text = render(&[figures]);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap_or_default();
            assert!(METRIC_NAMES.contains(&name), "{name} is not listed");
        }
        assert!(
            text.contains("sluice_events_in_total{job=\"a\\\"b\"} 10"),
            "{text}"
        );
        assert!(text.contains("sluice_job_restarts_total{job=\"a\\\"b\"} 2"));
    }
}
