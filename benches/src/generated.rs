//! `generated`: the built-in IoT generator (rate 0, 1,000 sensors) → the `arrow`/`json`
//! scenarios' TUMBLE job → blackhole, generation included, checked window by window
//! against the windows of the same events generated again outside the job.

use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::Source;

use crate::{cpu_seconds, timed_run, windowed};

/// The generator's options, as the job's table declares them.
const OPTIONS: &[(&str, &str)] = &[
    ("profile", "iot"),
    ("rate", "0"),
    ("keys", "1000"),
    ("start_time", "2024-05-01T00:00:00Z"),
    ("batch_size", "8192"),
];

fn job(events: usize) -> String {
    let with: Vec<String> = OPTIONS
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .chain([format!("limit = '{events}'")])
        .collect();
    crate::JOB.replace(
        "connector = 'file', path = '${INPUT}'",
        &format!("connector = 'generator', {}", with.join(", ")),
    )
}

/// The windows of the events the job's generator makes, and how long making them alone
/// took (CPU seconds).
fn oracle(
    schema: datafusion::arrow::datatypes::SchemaRef,
    events: usize,
) -> Result<(windowed::Windows, f64)> {
    let mut options: Vec<(&str, String)> =
        OPTIONS.iter().map(|(k, v)| (*k, v.to_string())).collect();
    options.push(("limit", events.to_string()));
    let mut source = crate::generator(&options, Some(schema))?;
    let mut batches = Vec::new();
    let cpu0 = cpu_seconds();
    while let Some(b) = source.next_batch()? {
        batches.push(b);
    }
    let generating = cpu_seconds() - cpu0;
    let mut out = windowed::Windows::default();
    for b in &batches {
        let (sensor, temp, ts) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_primitive::<Float64Type>(),
            b.column(2).as_primitive::<TimestampMillisecondType>(),
        );
        for r in 0..b.num_rows() {
            out.add(sensor.value(r), temp.value(r), ts.value(r));
        }
    }
    Ok((out, generating))
}

pub fn run_generated(events: usize, parallelism: usize) -> Result<()> {
    let graph = sluice::plan_with_env(&job(events), &|_| None).map_err(|e| anyhow::anyhow!(e))?;
    let schema = graph.sources[0].schema.clone();
    let options = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    let rows = Arc::new(std::sync::Mutex::new(Vec::new()));
    let collect = rows.clone();
    let job = JobRun::build_with_sinks(&graph, &options, &|_| {
        Some(Box::new(windowed::CollectSink(collect.clone())) as Box<dyn sluice_runtime::Sink>)
    })
    .context("building the job")?;
    let (snap, wall, cpu) = timed_run(job)?;
    let (want, generating) = oracle(schema, events)?;
    let rows = rows
        .lock()
        .map_err(|_| anyhow::anyhow!("the sink panicked"))?;
    let windows = windowed::check(&rows, want).context("the job's rows are wrong")?;
    let mut report = windowed::report("generated", windows, &snap, parallelism, (wall, cpu));
    report["generator_alone_events_per_cpu_s"] = (events as f64 / generating).round().into();
    println!("{report}");
    Ok(())
}
