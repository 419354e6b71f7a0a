//! `sluice serve` as a process for tests, and calls to its API.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::client::{Client, Refusal};

pub const TOKEN: &str = "s3cret-token";

/// `sluice serve` on a free port with its catalog and checkpoints in `dir`.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, &[])
    }

    /// With more arguments to `sluice serve`.
    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--checkpoint-dir")
            .arg(dir)
            .arg("--data-dir")
            .arg(dir.join("files"))
            .args(["--max-restarts", "2", "--restart-backoff", "100ms"])
            .args(extra)
            .env("SLUICE_AUTH_TOKEN", TOKEN)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while s.client().call("GET", "/api/v1/health", None).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, Some(TOKEN.to_string()))
    }

    pub fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The refusal's status, or 200 when the call succeeded.
pub fn status(r: anyhow::Result<Value>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.downcast_ref::<Refusal>().unwrap().status,
    }
}

pub fn job(c: &Client, name: &str) -> Value {
    c.call("GET", &format!("/api/v1/jobs/{name}"), None)
        .unwrap()
}

pub fn wait_state(c: &Client, name: &str, want: &[&str], limit: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let j = job(c, name);
        if want.contains(&j["state"].as_str().unwrap()) {
            return j;
        }
        assert!(
            t0.elapsed() < limit,
            "job {name} is {} after {limit:?}, not {want:?}: {j}",
            j["state"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn submit(c: &Client, name: &str, sql: &str) -> Value {
    c.call(
        "POST",
        "/api/v1/jobs",
        Some(&json!({ "name": name, "sql": sql })),
    )
    .unwrap()
}
