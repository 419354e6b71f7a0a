//! The web console and the live-results stream against a real `sluice serve`: the
//! console driven in Debian's chromium by Playwright (`tests/console/console.test.mjs`),
//! and the stream read by plain HTTP clients, one keeping up and one that never reads.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use server::{Server, TOKEN, job, submit, wait_state};

/// Where the console's screenshots go: `$SLUICE_ARTIFACTS/console`, else under the
/// build's temporary directory.
fn shots_dir() -> PathBuf {
    std::env::var_os("SLUICE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("console")
}

#[test]
fn the_console_in_a_browser_runs_a_job_from_an_sql_error_to_its_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    assert!(
        tests.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/test-tools.sh"
    );
    let shots = shots_dir();
    let _ = std::fs::remove_dir_all(&shots);
    let out = Command::new("node")
        .arg(tests.join("console.test.mjs"))
        .env("BASE_URL", &server.url)
        .env("TOKEN", TOKEN)
        .env("SHOTS", &shots)
        .current_dir(&tests)
        .output()
        .expect("node runs (scripts/test-tools.sh installs what the test needs)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}\nscreenshots in {}", shots.display());
    assert!(out.status.success(), "{text}");
    assert!(text.contains("console test passed"), "{text}");
    for page in ["1-jobs-empty", "3-job", "5-live-results", "7-restored"] {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}");
    }
}

/// Every reading id and the row a job puts out for it: `SELECT reading_id, sensor_id`.
fn passthrough(rate: &str, limit: u64, batch: u64) -> String {
    format!(
        "SET checkpoint_interval = '500ms';
         CREATE TABLE readings (sensor_id TEXT NOT NULL, reading_id BIGINT NOT NULL)
         WITH (connector = 'generator', profile = 'iot', keys = '10', rate = '{rate}',
               limit = '{limit}', batch_size = '{batch}');
         CREATE TABLE out WITH (connector = 'blackhole');
         INSERT INTO out SELECT reading_id, sensor_id FROM readings;"
    )
}

/// An open event stream, read by hand.
struct Events {
    lines: BufReader<TcpStream>,
}

impl Events {
    fn open(url: &str, path: &str) -> Self {
        let addr = url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut lines = BufReader::new(s);
        let mut status = String::new();
        lines.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        Events { lines }
    }

    /// The next event (name, id, data). The body is chunked: chunk sizes and blank
    /// lines between them are skipped.
    fn next(&mut self) -> (String, Option<u64>, String) {
        let (mut name, mut id, mut data) = (String::new(), None, String::new());
        loop {
            let mut line = String::new();
            assert!(
                self.lines.read_line(&mut line).unwrap() > 0,
                "the stream ended"
            );
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_string();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = v.to_string();
            } else if line.is_empty() && !name.is_empty() {
                return (name, id, data);
            }
        }
    }
}

#[test]
fn live_results_arrive_in_order_and_a_client_that_does_not_read_never_slows_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();

    // A paced job, watched by a client that keeps up: every row, in order.
    submit(&c, "paced", &passthrough("2000", 6_000, 50));
    wait_state(&c, "paced", &["running"], Duration::from_secs(30));
    let mut ev = Events::open(&server.url, "/api/v1/jobs/paced/sinks/out/rows");
    let (name, _, data) = ev.next();
    assert_eq!(name, "open");
    assert_eq!(data, r#"{"job":"paced","sink":"out"}"#);
    let mut last: Option<i64> = None;
    for n in 1..=1_000u64 {
        let (name, id, data) = ev.next();
        assert_eq!(name, "row", "{data}");
        assert_eq!(id, Some(n), "rows are numbered in order");
        let row: serde_json::Value = serde_json::from_str(&data).unwrap();
        let rid = row["reading_id"].as_i64().unwrap();
        assert!(row["sensor_id"].is_string(), "{row}");
        if let Some(l) = last {
            assert_eq!(rid, l + 1, "reading ids arrive one after another");
        }
        last = Some(rid);
    }

    // A watcher of a table the job does not write is told which it writes.
    let refused = c.call("GET", "/api/v1/jobs/paced/sinks/nope/rows", None);
    assert_eq!(server::status(refused), 404);

    // A fast job of many small batches (8 s of them), watched by a client that never
    // reads: the job runs to its end all the same, and the rows it missed are counted.
    const EVENTS: u64 = 400_000;
    submit(&c, "flood", &passthrough("50000", EVENTS, 100));
    wait_state(
        &c,
        "flood",
        &["running", "finished"],
        Duration::from_secs(30),
    );
    let mut sleeper = Events::open(&server.url, "/api/v1/jobs/flood/sinks/out/rows");
    let t0 = Instant::now();
    let done = wait_state(&c, "flood", &["finished"], Duration::from_secs(120));
    println!("the flood ran to its end in {:?}", t0.elapsed());
    assert_eq!(done["events_in"].as_u64(), Some(EVENTS), "{done}");
    let metrics = ureq::get(&format!("{}/metrics", server.url))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_live_rows_dropped_total{job=\"flood\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no dropped count in /metrics:\n{metrics}"));
    assert!(dropped > 0.0, "the sleeping client lost nothing?");
    assert!(
        dropped < EVENTS as f64,
        "it had room for some rows: {dropped}"
    );
    // Reading at last, the client is told how many rows it lost, in the stream itself.
    let mut told = None;
    let mut rows = 0u64;
    while told.is_none() {
        let (name, _, data) = sleeper.next();
        match name.as_str() {
            "row" => rows += 1,
            "dropped" => told = Some(data),
            _ => {}
        }
    }
    let told: serde_json::Value = serde_json::from_str(&told.unwrap()).unwrap();
    assert!(told["dropped"].as_f64().unwrap() > 0.0, "{told}");
    assert!(rows > 0, "the rows that fitted in its queue came first");
    let _ = sleeper.lines.get_mut().shutdown(std::net::Shutdown::Both);
    let mut rest = Vec::new();
    let _ = sleeper.lines.read_to_end(&mut rest);
    assert_eq!(job(&c, "flood")["state"], "finished");
}
