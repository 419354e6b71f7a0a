//! The client side of the job server, for `sluice submit`, `jobs`, `job`, `stop`,
//! `resume`, `cancel` and `delete`: JSON over HTTP, the server's refusals as errors.

use anyhow::{Result, anyhow};
use serde_json::Value;

/// A server at `base` (e.g. http://127.0.0.1:8080), with an optional bearer token.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A refusal from the server: its status and body.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub body: Value,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let msg = self.body["error"].as_str().unwrap_or("no message");
        write!(f, "the server refused ({}): {msg}", self.status)
    }
}

impl std::error::Error for Refusal {}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    fn authorized<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => r.header("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    /// Sends a request; the status and body of whatever answer came.
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let sent = match (method, body) {
            ("GET", _) => self.authorized(self.agent.get(&url)).call(),
            ("DELETE", _) => self.authorized(self.agent.delete(&url)).call(),
            (_, Some(b)) => self.authorized(self.agent.post(&url)).send_json(b),
            (_, None) => self.authorized(self.agent.post(&url)).send_empty(),
        };
        let mut resp = sent.map_err(|e| {
            anyhow!("cannot reach the Sluice server at {}: {e} (start one with `sluice serve`, or point --server / SLUICE_SERVER at it)", self.base)
        })?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| anyhow!("reading the server's answer: {e}"))?;
        Ok((resp.status().as_u16(), text))
    }

    /// Sends a request; a 2xx answer's JSON (or null), else a [`Refusal`].
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, text) = self.send(method, path, body)?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(Refusal {
                status,
                body: value,
            }
            .into())
        }
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> Result<String> {
        let (status, text) = self.send("GET", "/metrics", None)?;
        if status != 200 {
            return Err(anyhow!("{}/metrics: {status}: {text}", self.base));
        }
        Ok(text)
    }
}

/// A time (ms since the Unix epoch) as RFC 3339, or "-".
fn fmt_ms(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".to_string(),
        |m| sluice_types::Watermark::from_millis(m).to_string(),
    )
}

/// `sluice jobs`: one line per job.
pub fn jobs_table(jobs: &Value) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "NAME".into(),
        "STATE".into(),
        "UPTIME".into(),
        "EVENTS/S".into(),
        "WATERMARK".into(),
        "LAST CHECKPOINT".into(),
    ]];
    for j in jobs.as_array().map(Vec::as_slice).unwrap_or_default() {
        let cp = &j["last_checkpoint"];
        rows.push([
            j["id"].as_str().unwrap_or("-").to_string(),
            j["name"].as_str().unwrap_or("-").to_string(),
            j["state"].as_str().unwrap_or("-").to_string(),
            j["uptime_s"]
                .as_f64()
                .map_or("-".into(), |s| format!("{s:.0}s")),
            j["events_per_s"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.0}")),
            fmt_ms(j["watermark_ms"].as_i64()),
            if cp.is_object() {
                format!(
                    "{} ({} ms, {} B)",
                    cp["epoch"], cp["duration_ms"], cp["bytes"]
                )
            } else {
                "-".into()
            },
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `sluice job NAME`: the job, then per task, sink and partition.
pub fn job_detail(j: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line("name", j["name"].as_str().unwrap_or("-").into());
    line("id", j["id"].as_str().unwrap_or("-").into());
    line("state", j["state"].as_str().unwrap_or("-").into());
    line(
        "uptime",
        j["uptime_s"]
            .as_f64()
            .map_or("-".into(), |s| format!("{s:.1}s")),
    );
    line("restarts", j["restarts"].to_string());
    if let Some(e) = j["last_error"].as_str() {
        line("last error", e.into());
    }
    line(
        "events",
        format!("{} in, {}/s", j["events_in"], j["events_per_s"]),
    );
    line("rows out", j["rows_out"].to_string());
    line("late / bad", format!("{} / {}", j["late"], j["bad"]));
    line("watermark", fmt_ms(j["watermark_ms"].as_i64()));
    line(
        "watermark lag",
        j["watermark_lag_ms"]
            .as_i64()
            .map_or("-".into(), |l| format!("{:.1}s", l as f64 / 1000.0)),
    );
    let cp = &j["last_checkpoint"];
    if cp.is_object() {
        line(
            "checkpoint",
            format!(
                "epoch {}, {} ms, {} bytes",
                cp["epoch"], cp["duration_ms"], cp["bytes"]
            ),
        );
    }
    let d = &j["detail"];
    if let Some(tasks) = d["tasks"].as_array() {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        out.push_str(&format!(
            "\n{:<28}  {:>12}  {:>12}  {:>10}  {:>12}\n",
            "task", "rows in", "rows out", "batches in", "MiB in"
        ));
        for t in tasks {
            out.push_str(&format!(
                "{:<28}  {:>12}  {:>12}  {:>10}  {:>12.1}\n",
                t["task"].as_str().unwrap_or("-"),
                n(&t["rows_in"]),
                n(&t["rows_out"]),
                n(&t["batches_in"]),
                n(&t["bytes_in"]) as f64 / 1_048_576.0
            ));
        }
    }
    if let Some(commits) = d["commits"].as_object() {
        for (sink, c) in commits {
            out.push_str(&format!(
                "sink {sink}: {} commits, last {} ms\n",
                c["commits"], c["last_ms"]
            ));
        }
    }
    if let Some(lags) = d["kafka_lag"].as_array() {
        for l in lags {
            out.push_str(&format!(
                "kafka {} partition {}: lag {}\n",
                l[0].as_str().unwrap_or("-"),
                l[1],
                l[2]
            ));
        }
    }
    out
}
