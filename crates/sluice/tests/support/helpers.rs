//! Helpers shared by the integration tests: run a job file, read JSON-lines output,
//! run a batch query with DataFusion, and compare row multisets.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use serde_json::Value;
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::MetricsSnapshot;

/// Plans `sql` with `vars` as its environment and runs it at `parallelism`.
pub fn run_job(sql: &str, vars: &[(&str, String)], parallelism: usize) -> MetricsSnapshot {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let graph = sluice::plan_with_env(sql, &move |k| map.get(k).cloned()).unwrap();
    let options = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    let run = JobRun::build(&graph, &options).unwrap();
    let metrics = run.handle.metrics.clone();
    run.run().unwrap();
    metrics.snapshot()
}

/// Rows of a JSON-lines file, each normalized to a canonical string, sorted.
pub fn read_rows(path: &Path) -> Vec<String> {
    sorted_rows(&std::fs::read_to_string(path).unwrap_or_default())
}

/// JSON-lines text as normalized, sorted rows.
pub fn sorted_rows(text: &str) -> Vec<String> {
    let mut rows: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(normalize)
        .collect();
    rows.sort();
    rows
}

/// Floats rounded to 6 significant decimals so that summation order does not matter.
pub fn normalize(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    let Value::Object(map) = v else {
        panic!("not an object: {line}")
    };
    // Null and absent are the same value.
    let mut parts: Vec<String> = map
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Number(n) if n.is_f64() => {
                    let f = n.as_f64().unwrap();
                    format!("{:.6e}", f)
                }
                Value::Number(n) => format!("{:.6e}", n.as_f64().unwrap()),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect();
    parts.sort();
    parts.join(",")
}

/// Runs a batch query with DataFusion and returns its rows normalized like [`read_rows`].
pub async fn batch_rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let batches: Vec<RecordBatch> = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut buf = Vec::new();
    {
        let mut w = LineDelimitedWriter::new(&mut buf);
        for b in &batches {
            w.write(&sluice_connectors::timestamps_as_text(b).unwrap())
                .unwrap();
        }
        w.finish().unwrap();
    }
    sorted_rows(&String::from_utf8(buf).unwrap())
}
