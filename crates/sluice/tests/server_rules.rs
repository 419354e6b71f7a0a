//! What a submitted job may not do, through real HTTP to a `sluice serve` process: paths
//! outside the data directory, environment variables the server does not allow, client
//! properties that read files, checkpoint directories, a HOP that multiplies every row,
//! passwords in answers; a server on a network address without a token; and a cancel
//! that ends a job waiting for a PostgreSQL that went away.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

#[path = "support/server.rs"]
mod server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::{Server, job, submit, wait_state};
use sluice::client::Refusal;

/// The refusal of a call that must fail: status and body.
fn refusal(r: anyhow::Result<Value>) -> (u16, Value) {
    let e = r.expect_err("the server accepted it");
    let r = e.downcast_ref::<Refusal>().unwrap();
    (r.status, r.body.clone())
}

fn copy_job(input: &str, output: &str) -> String {
    format!(
        "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = '{input}');
         CREATE TABLE w WITH (connector = 'file', path = '{output}');
         INSERT INTO w SELECT id FROM r;"
    )
}

#[test]
fn a_submitted_job_gets_only_what_the_rules_allow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();
    let data = dir.path().join("files");
    std::fs::write(data.join("in.jsonl"), "{\"id\": \"a\"}\n{\"id\": \"b\"}\n").unwrap();
    let validate = |sql: &str| c.call("POST", "/api/v1/validate", Some(&json!({ "sql": sql })));

    // Paths: outside the data directory, by an absolute path or by '..', is refused with
    // the option's name and position; inside it, relative paths are taken from it.
    for (bad, why) in [
        (
            copy_job("/etc/passwd", "out.jsonl"),
            "'path' = '/etc/passwd'",
        ),
        (
            copy_job("in.jsonl", "../escape.jsonl"),
            "'path' = '../escape.jsonl'",
        ),
    ] {
        let (status, body) = refusal(validate(&bad));
        assert_eq!(status, 400, "{body}");
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains(why) && msg.contains("outside the server's data directory"),
            "{msg}"
        );
        assert!(body["line"].as_u64().is_some() && body["column"].as_u64().is_some());
    }
    let dead = "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = 'in.jsonl',
                    bad_data = 'dead_letter', 'dead_letter.path' = '/tmp/dl.jsonl');
                CREATE TABLE w WITH (connector = 'blackhole');
                INSERT INTO w SELECT id FROM r;";
    let (_, body) = refusal(validate(dead));
    assert!(
        body["error"].as_str().unwrap().contains("dead_letter.path"),
        "{body}"
    );
    submit(&c, "copy", &copy_job("in.jsonl", "out/copy.jsonl"));
    wait_state(&c, "copy", &["finished"], Duration::from_secs(30));
    assert_eq!(
        support::read_rows(&data.join("out/copy.jsonl")).len(),
        2,
        "relative paths are inside the data directory"
    );

    // Environment: only the allowed variables expand.
    let env = "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = '${HOME}/x');
               CREATE TABLE w WITH (connector = 'blackhole');
               INSERT INTO w SELECT id FROM r;";
    let (status, body) = refusal(validate(env));
    assert_eq!(status, 400);
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("HOME") && msg.contains("--allow-env"), "{msg}");

    // Client properties that read files or load code.
    for prop in [
        "ssl.ca.location",
        "plugin.library.paths",
        "sasl.kerberos.kinit.cmd",
    ] {
        let sql = format!(
            "CREATE TABLE k (id TEXT) WITH (connector = 'kafka', topic = 't',
                 'bootstrap.servers' = '127.0.0.1:1', 'properties.{prop}' = '/tmp/x');
             CREATE TABLE w WITH (connector = 'blackhole');
             INSERT INTO w SELECT id FROM k;"
        );
        let (status, body) = refusal(validate(&sql));
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains(prop), "{body}");
    }

    // A checkpoint is named, never a directory.
    let (status, body) = refusal(c.call(
        "POST",
        "/api/v1/jobs",
        Some(
            &json!({ "name": "x", "sql": copy_job("in.jsonl", "x.jsonl"),
                      "from_checkpoint": "/tmp" }),
        ),
    ));
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("from_checkpoint"),
        "{body}"
    );
    let (status, _) = refusal(c.call(
        "POST",
        "/api/v1/jobs/copy/resume",
        Some(&json!({ "from_checkpoint": "../../other/epoch-1" })),
    ));
    assert_eq!(status, 400);

    // A HOP that would copy each row 6×10⁸ times is refused with its numbers.
    let hop = "CREATE TABLE r (id TEXT, t TIMESTAMP, WATERMARK FOR t AS t)
                   WITH (connector = 'file', path = 'in.jsonl');
               CREATE TABLE w WITH (connector = 'blackhole');
               INSERT INTO w SELECT window_start, count(*) AS n
               FROM HOP(r, t, INTERVAL '1' MILLISECOND, INTERVAL '7' DAY)
               GROUP BY window_start, window_end;";
    let (status, body) = refusal(validate(hop));
    assert_eq!(status, 400);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("604800000 windows") && msg.contains("limit of 100"),
        "{msg}"
    );

    // A password in the SQL never comes back: not in the job, not in its error.
    let secret = "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = 'in.jsonl');
                  CREATE TABLE w WITH (connector = 'postgres',
                      url = 'postgres://postgres:hunter2@127.0.0.1:1/nowhere');
                  INSERT INTO w SELECT id FROM r;";
    submit(&c, "secret", secret);
    std::thread::sleep(Duration::from_millis(500));
    let shown = job(&c, "secret").to_string();
    assert!(
        !shown.contains("hunter2") && shown.contains("***"),
        "{shown}"
    );
    c.call("POST", "/api/v1/jobs/secret/cancel", None).unwrap();
    let all = c.call("GET", "/api/v1/jobs", None).unwrap().to_string();
    assert!(!all.contains("hunter2"), "{all}");

    // Without the token: 401, for the API and the metrics alike.
    let anonymous = sluice::client::Client::new(&server.url, None);
    assert_eq!(refusal(anonymous.call("GET", "/api/v1/jobs", None)).0, 401);
    let wrong = sluice::client::Client::new(&server.url, Some("s3cret-tokeN".into()));
    assert_eq!(refusal(wrong.call("GET", "/api/v1/jobs", None)).0, 401);
}

#[test]
fn a_server_on_a_network_address_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .arg("--checkpoint-dir")
        .arg(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("files"))
        .env_remove("SLUICE_AUTH_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen") && err.contains("--auth-token"),
        "{err}"
    );
}

#[test]
fn a_cancel_ends_a_job_waiting_for_postgres_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let pg = pg::PrivatePostgres::start(dir.path());
    let server = Server::start(dir.path(), support::free_port());
    let c = server.client();
    let sql = format!(
        "SET checkpoint_interval = '200ms';
         CREATE TABLE iot (sensor_id TEXT NOT NULL, temperature DOUBLE)
         WITH (connector = 'generator', profile = 'iot', rate = '5000', limit = '100000000');
         CREATE TABLE w WITH (connector = 'postgres', url = '{}', table = 'readings');
         INSERT INTO w SELECT sensor_id, temperature FROM iot;",
        pg.url()
    );
    submit(&c, "waits", &sql);
    wait_state(&c, "waits", &["running"], Duration::from_secs(30));
    let t0 = Instant::now();
    while job(&c, "waits")["last_checkpoint"].is_null() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.down();
    // Let the sink fall into its retry loop.
    std::thread::sleep(Duration::from_millis(1_500));
    let t0 = Instant::now();
    c.call("POST", "/api/v1/jobs/waits/cancel", None).unwrap();
    wait_state(&c, "waits", &["cancelled"], Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the cancel took {:?}",
        t0.elapsed()
    );
}

#[test]
fn the_table_catalog_gives_submitted_jobs_tables_checked_by_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let server = Server::start(dir.path(), port);
    let c = server.client();
    let data = dir.path().join("files");
    std::fs::write(
        data.join("in.jsonl"),
        "{\"id\": \"a\"}\n{\"id\": \"b\"}\n{\"id\": \"bb\"}\n",
    )
    .unwrap();

    // A definition that breaks the rules is refused like a job's, with its position.
    let (status, body) = refusal(c.call(
        "POST",
        "/api/v1/catalog",
        Some(&json!({ "name": "bad", "sql": "CREATE TABLE r (id TEXT)\nWITH (connector = 'file', path = '/etc/passwd');" })),
    ));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("outside the server's data directory"),
        "{body}"
    );
    assert_eq!(body["line"], 2, "{body}");

    let defs = "CREATE TABLE r (id TEXT) WITH (connector = 'file', path = 'in.jsonl');
                CREATE VIEW long_ids AS SELECT id FROM r WHERE length(id) > 1;
                CREATE TABLE w WITH (connector = 'file', path = 'out/ids.jsonl');";
    let added = c
        .call(
            "POST",
            "/api/v1/catalog",
            Some(&json!({ "name": "files", "sql": defs })),
        )
        .unwrap();
    assert_eq!(added["declares"], json!(["r", "w", "long_ids"]), "{added}");
    let listed = c.call("GET", "/api/v1/catalog", None).unwrap();
    assert_eq!(listed[0]["name"], "files", "{listed}");

    // A job uses the catalog's tables and view without declaring them.
    submit(&c, "ids", "INSERT INTO w SELECT id FROM long_ids;");
    wait_state(&c, "ids", &["finished"], Duration::from_secs(30));
    assert_eq!(
        support::read_rows(&data.join("out/ids.jsonl")),
        vec!["id=\"bb\""]
    );

    // The catalog outlives the server.
    server.kill();
    let server = Server::start(dir.path(), port);
    let c = server.client();
    let v = c
        .call(
            "POST",
            "/api/v1/validate",
            Some(&json!({ "sql": "INSERT INTO w SELECT id FROM r;" })),
        )
        .unwrap();
    assert_eq!(v["valid"], true);

    // Dropped, its names are unknown again.
    c.call("DELETE", "/api/v1/catalog/files", None).unwrap();
    let (status, body) = refusal(c.call(
        "POST",
        "/api/v1/validate",
        Some(&json!({ "sql": "INSERT INTO w SELECT id FROM r;" })),
    ));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no such table"),
        "{body}"
    );
    let (status, _) = refusal(c.call("DELETE", "/api/v1/catalog/files", None));
    assert_eq!(status, 404);
}
