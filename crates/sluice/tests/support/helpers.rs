//! Helpers shared by the integration tests: run a job file, read JSON-lines output,
//! run a batch query with DataFusion, and compare row multisets.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use serde_json::Value;
use sluice::engine::{JobRun, RunOptions};
use sluice_runtime::MetricsSnapshot;

/// Plans `sql` with `vars` as its environment and runs it at `parallelism`.
pub fn run_job(sql: &str, vars: &[(&str, String)], parallelism: usize) -> MetricsSnapshot {
    run_job_with_rules(sql, vars, parallelism, &sluice_types::JobRules::trusted())
}

/// Like [`run_job`], planned under `rules` (as the server plans a submitted job).
pub fn run_job_with_rules(
    sql: &str,
    vars: &[(&str, String)],
    parallelism: usize,
    rules: &sluice_types::JobRules,
) -> MetricsSnapshot {
    let run = build_job_with_rules(sql, vars, parallelism, rules);
    let metrics = run.handle.metrics.clone();
    run.run().unwrap();
    metrics.snapshot()
}

/// Plans `sql` with `vars` as its environment and opens its sources and sinks, to be
/// run (and watched through its handle) by the test.
pub fn build_job(sql: &str, vars: &[(&str, String)], parallelism: usize) -> JobRun {
    build_job_with_rules(sql, vars, parallelism, &sluice_types::JobRules::trusted())
}

fn build_job_with_rules(
    sql: &str,
    vars: &[(&str, String)],
    parallelism: usize,
    rules: &sluice_types::JobRules,
) -> JobRun {
    build_job_with_catalogs(sql, &[], vars, parallelism, rules)
}

/// The catalog files of the repository's `sql/catalog/` (`generators`, `kafka`,
/// `postgres`), read, in the order given (later ones replace earlier tables by name).
pub fn sql_catalogs(names: &[&str]) -> Vec<sluice_sql::CatalogFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql/catalog");
    names
        .iter()
        .map(|n| {
            let path = dir.join(format!("{n}.sql"));
            sluice_sql::CatalogFile {
                name: format!("sql/catalog/{n}.sql"),
                sql: std::fs::read_to_string(&path).unwrap(),
            }
        })
        .collect()
}

/// Like [`run_job_with_rules`], with the tables and views of catalog files.
pub fn run_job_with_catalogs(
    sql: &str,
    catalogs: &[sluice_sql::CatalogFile],
    vars: &[(&str, String)],
    parallelism: usize,
    rules: &sluice_types::JobRules,
) -> MetricsSnapshot {
    let run = build_job_with_catalogs(sql, catalogs, vars, parallelism, rules);
    let metrics = run.handle.metrics.clone();
    run.run().unwrap();
    metrics.snapshot()
}

pub fn build_job_with_catalogs(
    sql: &str,
    catalogs: &[sluice_sql::CatalogFile],
    vars: &[(&str, String)],
    parallelism: usize,
    rules: &sluice_types::JobRules,
) -> JobRun {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let env = move |k: &str| map.get(k).cloned();
    let graph =
        sluice_sql::plan_job_with_catalog(sql, catalogs, &sluice_connectors::Catalog, &env, rules)
            .unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        parallelism,
        ..RunOptions::default()
    };
    JobRun::build(&graph, &options).unwrap()
}

/// The test broker's address (started by scripts/test.sh).
pub fn brokers() -> String {
    std::env::var("SLUICE_KAFKA_BROKERS").expect(
        "SLUICE_KAFKA_BROKERS is not set: run scripts/test.sh, or scripts/kafka.sh start and export it",
    )
}

/// A broker of the test's own on `port` (`start` or `stop`), keeping its topics in
/// `state` across a stop and a start (SQLite storage): for outage drills.
pub fn private_broker(cmd: &str, port: u16, state: &Path) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kafka.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args([cmd, &port.to_string()])
        .env("SLUICE_KAFKA_STATE", state)
        .env("SLUICE_KAFKA_STORAGE", "sqlite://tansu.db")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "scripts/kafka.sh {cmd} {port}");
}

/// Sends JSON lines to `topic` on `brokers`, each keyed by its `key` field, in order.
pub fn send_json_lines(brokers: &str, topic: &str, text: &str, key: &str) {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .unwrap();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let k = v[key].as_str().unwrap().to_string();
        p.send(BaseRecord::to(topic).key(&k).payload(line))
            .map_err(|(e, _)| e)
            .unwrap();
        p.poll(std::time::Duration::ZERO);
    }
    p.flush(std::time::Duration::from_secs(30)).unwrap();
}

/// A topic name no other test run uses.
pub fn unique_topic(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// A port nothing listens on now (the kernel's choice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The next of a fixed sequence of "random" numbers below `n` (a linear congruential
/// generator), so that a drill's kill moments can be replayed from its seed.
pub fn random_below(seed: &mut u64, n: u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 33) % n
}

/// The next of a fixed sequence of "random" pauses: `from` plus up to `span` ms.
pub fn random_pause(seed: &mut u64, from: u64, span: u64) -> std::time::Duration {
    std::time::Duration::from_millis(from + random_below(seed, span))
}

/// The `AWS_*` settings of the test S3 endpoint (`scripts/s3.sh`, SLUICE_TEST_S3_ENDPOINT;
/// its bucket is `sluice-test`).
pub fn s3_env() -> Vec<(&'static str, String)> {
    let endpoint = std::env::var("SLUICE_TEST_S3_ENDPOINT")
        .expect("SLUICE_TEST_S3_ENDPOINT: start the test S3 endpoint with scripts/s3.sh start");
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// Writes `limit` generated `profile` events to a new `topic` of `partitions` on the
/// test broker; `options` are generator options as in SQL.
pub fn generate_topic(
    profile: &str,
    topic: &str,
    partitions: i32,
    options: &[(&str, &str)],
    limit: u64,
) {
    let mut all: Vec<(String, String)> = options
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("limit".into(), limit.to_string()));
    let args = sluice::generate::GenerateArgs {
        profile: profile.into(),
        brokers: brokers(),
        topic: topic.into(),
        partitions,
        options: all,
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    assert_eq!(sluice::generate::run(&args, stop).unwrap(), limit);
}

/// Rows of a JSON-lines file, each normalized to a canonical string, sorted.
pub fn read_rows(path: &Path) -> Vec<String> {
    sorted_rows(&std::fs::read_to_string(path).unwrap_or_default())
}

/// The rows a changelog file leaves when replayed in order: `+I`/`+U` put a row in,
/// `-U`/`-D` take one out (a row of an append-only output has no `op` and goes in).
/// Taking out a row that is not there fails the test: a change applied twice, or lost.
///
/// A line without its newline is left out: a process killed while a commit appended it
/// leaves it there until the restart truncates the file to its checkpoint's length.
pub fn replayed(path: &Path) -> Vec<String> {
    use std::collections::BTreeMap;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.rsplit_once('\n').map_or("", |(whole, _)| whole);
    let mut rows: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let op = v
            .as_object_mut()
            .and_then(|m| m.remove("op"))
            .and_then(|o| o.as_str().map(str::to_string))
            .unwrap_or_else(|| "+I".into());
        let row = normalize(&v.to_string());
        match op.as_str() {
            "+I" | "+U" => *rows.entry(row).or_default() += 1,
            "-U" | "-D" => match rows.get_mut(&row) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    rows.remove(&row);
                }
                None => panic!(
                    "{}: line {}: {op} takes back a row that is not there: {row}",
                    path.display(),
                    i + 1
                ),
            },
            other => panic!("{}: line {}: unknown op {other}", path.display(), i + 1),
        }
    }
    rows.into_iter()
        .flat_map(|(r, n)| std::iter::repeat_n(r, n))
        .collect()
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

/// One normalized row split into its text fields (the match key) and its numbers.
fn split_row(row: &str) -> (Vec<String>, Vec<f64>) {
    let mut text = Vec::new();
    let mut numbers = Vec::new();
    let mut field = String::new();
    // Fields are `k=v` joined by commas; a comma inside a quoted value is not a split.
    let mut quoted = false;
    let mut fields = Vec::new();
    for c in row.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                field.push(c);
            }
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    for f in fields {
        let v = f.split_once('=').map_or("", |(_, v)| v);
        match v.parse::<f64>() {
            Ok(n) if !v.starts_with('"') => numbers.push(n),
            _ => text.push(f),
        }
    }
    (text, numbers)
}

/// Asserts that two sets of normalized rows are the same: text fields exactly, numbers
/// within a relative 1e-5 (averages summed in another order differ in the last digit).
/// On failure it says how many rows differ and shows a few from each side.
pub fn assert_rows_match(table: &str, got: &[String], want: &[String]) {
    let (missing, extra) = compare_rows(got, want);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{table}: {} rows, the expected {}; {} missing or different, e.g. {:#?}; {} unexpected, e.g. {:#?}",
        got.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(4)],
        extra.len(),
        &extra[..extra.len().min(4)]
    );
}

/// Asserts that every row of `got` is one of `want`, none more often than there: what a
/// reader sees of an output still being written (some rows may be still to come).
pub fn assert_rows_within(table: &str, got: &[String], want: &[String]) {
    let (_, extra) = compare_rows(got, want);
    assert!(
        extra.is_empty(),
        "{table}: {} rows seen, {} of them not expected (or seen twice), e.g. {:#?}",
        got.len(),
        extra.len(),
        &extra[..extra.len().min(4)]
    );
}

/// The rows of `want` that `got` lacks (or differs in), and the rows of `got` that
/// `want` does not have.
fn compare_rows(got: &[String], want: &[String]) -> (Vec<String>, Vec<String>) {
    use std::collections::BTreeMap;
    let group = |rows: &[String]| {
        let mut m: BTreeMap<Vec<String>, Vec<(Vec<f64>, String)>> = BTreeMap::new();
        for r in rows {
            let (k, n) = split_row(r);
            m.entry(k).or_default().push((n, r.clone()));
        }
        for v in m.values_mut() {
            v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        }
        m
    };
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-5 * x.abs().max(y.abs()).max(1e-3))
    };
    let (g, w) = (group(got), group(want));
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    // Per group, both sides sorted by their numbers and merged: a row of one side without
    // a close row of the other is missing or extra (so a part of the wanted rows is seen
    // as missing rows only, whichever part it is).
    for (k, want_rows) in &w {
        let got_rows = g.get(k).map_or(&[][..], Vec::as_slice);
        let (mut i, mut j) = (0, 0);
        while i < want_rows.len() && j < got_rows.len() {
            let (n, r) = &want_rows[i];
            let (m, other) = &got_rows[j];
            if close(n, m) {
                i += 1;
                j += 1;
            } else if n.partial_cmp(m) == Some(std::cmp::Ordering::Less) {
                missing.push(r.clone());
                i += 1;
            } else {
                extra.push(other.clone());
                j += 1;
            }
        }
        missing.extend(want_rows[i..].iter().map(|(_, r)| r.clone()));
        extra.extend(got_rows[j..].iter().map(|(_, r)| r.clone()));
    }
    for (k, got_rows) in &g {
        if !w.contains_key(k) {
            extra.extend(got_rows.iter().map(|(_, r)| r.clone()));
        }
    }
    (missing, extra)
}

/// Rows of every committed part file of a Parquet sink's directory, normalized like
/// [`read_rows`] (hidden files, which are not committed yet, are skipped).
pub fn read_parquet_dir_rows(dir: &Path) -> Vec<String> {
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    names.retain(|p| {
        let n = p.file_name().unwrap().to_string_lossy();
        !n.starts_with('.') && n.ends_with(".parquet")
    });
    names.sort();
    let mut buf = Vec::new();
    {
        let mut w = LineDelimitedWriter::new(&mut buf);
        for p in names {
            let file = std::fs::File::open(&p).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            for b in reader {
                w.write(&sluice_connectors::timestamps_as_text(&b.unwrap()).unwrap())
                    .unwrap();
            }
        }
        w.finish().unwrap();
    }
    sorted_rows(&String::from_utf8(buf).unwrap())
}
