//! Distributed workers against one process: a topic of N generated IoT events keyed by
//! sensor (4 partitions) through 5-minute windows per sensor into PostgreSQL, run as one
//! `sluice run` job, then by one `--distributed` worker, then by two (threads of this
//! process, sharing a checkpoint directory); then the same per location, which the
//! workers must shuffle (the topic is keyed by sensor). Each run's table must hold every
//! event (the sum of the counts) and the same rows as the one-process run.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sluice::checkpoints::CheckpointOptions;
use sluice::engine::{JobRun, RunOptions};

const PARTITIONS: i32 = 4;

fn database_url() -> String {
    std::env::var("SLUICE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `count(*)`, `sum(n)` and a checksum of the rows of `table`, by `psql`.
fn table_summary(table: &str, group: &str) -> Result<String> {
    let out = Command::new("psql")
        .args([&database_url(), "-At", "-c"])
        .arg(format!(
            "SELECT count(*), sum(n), md5(string_agg(window_start::text || {group} || n || round(t::numeric, 6), ',' ORDER BY window_start, {group})) FROM {table}"
        ))
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn drop_table(table: &str) -> Result<()> {
    let status = Command::new("psql")
        .args([&database_url(), "-q", "-c"])
        .arg(format!("DROP TABLE IF EXISTS {table}"))
        .status()?;
    if !status.success() {
        bail!("psql could not drop {table}");
    }
    Ok(())
}

fn job_sql(brokers: &str, topic: &str, table: &str, group: &str) -> String {
    format!(
        "SET checkpoint_interval = '1s';
         CREATE TABLE iot (sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
            humidity DOUBLE, pressure DOUBLE, battery_level DOUBLE, event_time TIMESTAMP NOT NULL,
            WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE)
         WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{brokers}',
               scan.bounded.mode = 'latest-offset', 'key.fields' = 'sensor_id');
         CREATE TABLE out WITH (connector = 'postgres', url = '{}', table = '{table}',
               primary_key = 'window_start, {group}');
         INSERT INTO out SELECT window_start, {group}, count(*) AS n, avg(temperature) AS t
         FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE) GROUP BY window_start, window_end, {group};",
        database_url()
    )
}

pub fn run_distributed(events: usize) -> Result<()> {
    let brokers = std::env::var("SLUICE_KAFKA_BROKERS")
        .context("SLUICE_KAFKA_BROKERS: start a broker with scripts/kafka.sh start")?;
    let topic = format!("bench-dist-{}", std::process::id());
    crate::kafka::fill_iot_topic(&brokers, &topic, PARTITIONS, events, &[("keys", "1000")])?;
    for group in ["sensor_id", "location"] {
        run_group(&brokers, &topic, events, group)?;
    }
    Ok(())
}

/// One process, one worker and two, with windows per `group`.
fn run_group(brokers: &str, topic: &str, events: usize, group: &str) -> Result<()> {
    let mut reference: Option<String> = None;
    for (mode, workers) in [("one process", 0usize), ("1 worker", 1), ("2 workers", 2)] {
        let table = format!("bench_dist_{group}_{workers}");
        drop_table(&table)?;
        let dir = std::env::temp_dir().join(format!(
            "sluice-bench-dist-{}-{group}-{workers}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let graph = sluice::plan(&job_sql(brokers, topic, &table, group))
            .map_err(|e| anyhow::anyhow!(e))?;
        let job = format!("bench_{group}_{workers}");
        let options = RunOptions {
            parallelism: 1,
            name: job.clone(),
            checkpoints: Some(CheckpointOptions::new(&dir, &job)),
            ..RunOptions::default()
        };
        let cpu0 = crate::cpu_seconds();
        let t0 = Instant::now();
        if workers == 0 {
            JobRun::build(&graph, &options)?.run()?;
        } else {
            std::thread::scope(|s| -> Result<()> {
                let handles: Vec<_> = (0..workers)
                    .map(|_| {
                        s.spawn(|| {
                            sluice::distributed::run_worker(
                                &graph,
                                &options,
                                Arc::new(AtomicBool::new(false)),
                            )
                        })
                    })
                    .collect();
                for h in handles {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
                }
                Ok(())
            })?;
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = crate::cpu_seconds() - cpu0;
        let summary = table_summary(&table, group)?;
        let total: u64 = summary
            .split('|')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("the table's sum of counts")?;
        if total != events as u64 {
            bail!("{mode}: the table counts {total} events, not {events}");
        }
        match &reference {
            None => reference = Some(summary.clone()),
            Some(r) if *r != summary => {
                bail!("{mode}: rows differ from one process: {summary} vs {r}")
            }
            Some(_) => {}
        }
        println!(
            "{}",
            serde_json::json!({
                "scenario": "distributed",
                "mode": mode,
                "windows_per": group,
                "events": events,
                "wall_s": (wall * 100.0).round() / 100.0,
                "cpu_s": (cpu * 100.0).round() / 100.0,
                "events_per_s": (events as f64 / wall).round(),
                "events_per_cpu_s": (events as f64 / cpu).round(),
                "rows": summary.split('|').next(),
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
