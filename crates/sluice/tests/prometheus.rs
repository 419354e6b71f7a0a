//! Prometheus for real: Debian's `prometheus`, configured by the project's own
//! `grafana/prometheus.yml`, scrapes a running `sluice serve` whose job reads Kafka, and
//! every PromQL expression of the engine dashboard returns data for that job.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/server.rs"]
mod server;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use server::{Server, TOKEN, submit, wait_state};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every `expr` of a dashboard's panels.
fn expressions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|x| expressions(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| expressions(x, out)),
        _ => {}
    }
}

fn query(prom: &str, expr: &str) -> Vec<Value> {
    let body: Value = ureq::get(&format!("{prom}/api/v1/query"))
        .query("query", expr)
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(body["status"], "success", "{expr}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn prometheus_scrapes_the_server_and_every_engine_panel_has_data() {
    let topic = support::unique_topic("prom");
    let opts = |rate: &'static str| [("seed", "5"), ("keys", "20"), ("rate", rate)];
    support::generate_topic("iot", &topic, 2, &opts("0"), 1_000);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();
    let sql = format!(
        "SET checkpoint_interval = '300ms';
         CREATE TABLE iot (sensor_id TEXT NOT NULL, temperature DOUBLE, event_time TIMESTAMP NOT NULL,
             WATERMARK FOR event_time AS event_time - INTERVAL '1' MINUTE)
         WITH (connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = '{}');
         CREATE TABLE out WITH (connector = 'blackhole');
         INSERT INTO out SELECT sensor_id, window_end, avg(temperature) AS t
         FROM TUMBLE(iot, event_time, INTERVAL '1' MINUTE) GROUP BY sensor_id, window_end;",
        support::brokers()
    );
    submit(&c, "scraped", &sql);
    wait_state(&c, "scraped", &["running"], Duration::from_secs(60));

    // The shipped scrape configuration, pointed at this server, scraping every second.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../grafana/prometheus.yml"),
    )
    .unwrap();
    let target = server.url.trim_start_matches("http://");
    let config = shipped
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("sluice-compose-token", TOKEN)
        .replace("sluice:8080", target);
    assert!(
        config.contains(target) && config.contains(TOKEN) && config.contains("1s"),
        "grafana/prometheus.yml no longer has the lines this test points at a server:\n{shipped}"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = support::free_port();
    let prom = format!("http://127.0.0.1:{port}");
    let _p = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (scripts/test-tools.sh installs it)"),
    );

    // Events flow while Prometheus scrapes: 2,000 a second for 15 seconds.
    let feeding = {
        let topic = topic.clone();
        std::thread::spawn(move || support::generate_topic("iot", &topic, 2, &opts("2000"), 30_000))
    };

    let mut exprs = Vec::new();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../grafana/dashboards/engine.json"),
        )
        .unwrap(),
    )
    .unwrap();
    expressions(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let t0 = Instant::now();
    for expr in &exprs {
        loop {
            let ok = ureq::get(&format!("{prom}/-/ready")).call().is_ok();
            let result = if ok { query(&prom, expr) } else { Vec::new() };
            let ours: Vec<&Value> = result
                .iter()
                .filter(|r| r["metric"]["job"] == "scraped")
                .collect();
            if !ours.is_empty() {
                for r in &ours {
                    let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                    assert!(v.is_finite(), "{expr}: {r}");
                }
                println!("{expr}: {}", ours[0]["value"][1]);
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "{expr} has no data for job \"scraped\" after {:?}: {result:?}",
                t0.elapsed()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // The rate panels see the events flowing.
    let rate = query(&prom, "sum by (job) (rate(sluice_events_in_total[1m]))");
    let scraped = rate
        .iter()
        .find(|r| r["metric"]["job"] == "scraped")
        .unwrap();
    let v: f64 = scraped["value"][1].as_str().unwrap().parse().unwrap();
    assert!(v > 0.0, "{scraped}");
    feeding.join().unwrap();
}
