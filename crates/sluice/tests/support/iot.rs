//! The IoT reference queries (5-minute aggregates per location, alerts) over generated
//! events, and their batch oracle: the same queries run by DataFusion over the same events.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sluice_runtime::Source;

pub const IOT_COLUMNS: &str = "sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
    humidity DOUBLE, pressure DOUBLE, battery_level DOUBLE, event_time TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE";

pub const METRICS: &str = "SELECT window_start, window_end, location, count(*) AS readings,
       avg(temperature) AS avg_temperature, max(temperature) AS max_temperature,
       min(battery_level) AS min_battery";
pub const ALERTS: &str = "SELECT sensor_id, location, event_time, temperature, battery_level,
       CASE WHEN temperature > 30 THEN 'high_temperature' ELSE 'low_battery' END AS kind";

/// The aggregates and alerts jobs over `source_with`, writing to PostgreSQL at ${DB}.
pub fn job_sql(source_with: &str, interval: &str) -> String {
    job_sql_into(
        source_with,
        interval,
        "connector = 'postgres', url = '${DB}', table = 'sensor_metrics_5m', \
         primary_key = 'window_start, location'",
        "connector = 'postgres', url = '${DB}', table = 'alerts'",
    )
}

/// The aggregates and alerts jobs over `source_with`, into sinks of the given options.
pub fn job_sql_into(source_with: &str, interval: &str, metrics: &str, alerts: &str) -> String {
    job_sql_by("location", source_with, interval, metrics, alerts)
}

/// [`METRICS`] per `group` (a column: `location`, or `sensor_id`) instead of location.
pub fn metrics_by(group: &str) -> String {
    METRICS.replacen("location", group, 1)
}

/// The jobs with the aggregates per `group` instead of per location.
pub fn job_sql_by(
    group: &str,
    source_with: &str,
    interval: &str,
    metrics: &str,
    alerts: &str,
) -> String {
    let select = metrics_by(group);
    format!(
        "SET checkpoint_interval = '{interval}';
         CREATE TABLE iot ({IOT_COLUMNS}) WITH ({source_with});
         CREATE TABLE metrics WITH ({metrics});
         CREATE TABLE alerts WITH ({alerts});
         INSERT INTO metrics {select}
         FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE) GROUP BY window_start, window_end, {group};
         INSERT INTO alerts {ALERTS} FROM iot WHERE temperature > 30 OR battery_level < 20;"
    )
}

pub const GENERATOR: &[(&str, &str)] = &[
    ("keys", "50"),
    ("seed", "11"),
    ("disorder", "30s"),
    ("start_time", "2024-05-01T00:00:00Z"),
];

/// The oracle: both queries as a batch by DataFusion over the generated events.
pub fn oracle(limit: u64, rate: &str, speedup: &str) -> (Vec<String>, Vec<String>) {
    oracle_by("location", limit, rate, speedup)
}

/// The oracle of the jobs with the aggregates per `group`.
pub fn oracle_by(group: &str, limit: u64, rate: &str, speedup: &str) -> (Vec<String>, Vec<String>) {
    oracle_with(group, limit, rate, speedup, &[])
}

/// The oracle over events generated with `extra` options besides [`GENERATOR`]'s.
pub fn oracle_with(
    group: &str,
    limit: u64,
    rate: &str,
    speedup: &str,
    extra: &[(&str, &str)],
) -> (Vec<String>, Vec<String>) {
    oracle_of_streams(group, limit, rate, speedup, &[extra])
}

/// The oracle over the events of several streams together (each `limit` events,
/// generated with its options besides [`GENERATOR`]'s), as one table.
pub fn oracle_of_streams(
    group: &str,
    limit: u64,
    rate: &str,
    speedup: &str,
    streams: &[&[(&str, &str)]],
) -> (Vec<String>, Vec<String>) {
    let mut batches = Vec::new();
    let mut schema = None;
    for extra in streams {
        let mut options = sluice_types::ConnectorOptions::default();
        for (k, v) in GENERATOR
            .iter()
            .chain(&[
                ("rate", rate),
                ("speedup", speedup),
                ("profile", "iot"),
                ("connector", "generator"),
            ])
            .chain(*extra)
        {
            options.insert(k, v.to_string(), sluice_types::Position::default());
        }
        options.insert(
            "limit",
            limit.to_string(),
            sluice_types::Position::default(),
        );
        let opts = sluice_connectors::generator::GeneratorOptions::parse(&options).unwrap();
        let s = opts.profile.schema();
        let mut g =
            sluice_connectors::generator::GeneratorSource::new("iot", opts, s.clone()).unwrap();
        while let Some(b) = g.next_batch().unwrap() {
            batches.push(b);
        }
        schema = Some(s);
    }
    let schema = schema.unwrap();
    let all = concat_batches(&schema, &batches).unwrap();
    let ctx = SessionContext::new();
    ctx.register_table(
        "iot",
        Arc::new(MemTable::try_new(schema, vec![vec![all]]).unwrap()),
    )
    .unwrap();
    let bin = "date_bin(INTERVAL '5 minutes', event_time)";
    let metrics = format!(
        "{} FROM (SELECT *, {bin} AS window_start, {bin} + INTERVAL '5 minutes' AS window_end FROM iot)
         GROUP BY window_start, window_end, {group}",
        metrics_by(group)
    );
    let alerts = format!("{ALERTS} FROM iot WHERE temperature > 30 OR battery_level < 20");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (
        rt.block_on(crate::support::batch_rows(&ctx, &metrics)),
        rt.block_on(crate::support::batch_rows(&ctx, &alerts)),
    )
}
