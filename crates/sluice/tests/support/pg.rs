//! PostgreSQL helpers for tests: a fresh database per test on the server in
//! SLUICE_TEST_DATABASE_URL (set by scripts/test.sh), and rows read back as normalized
//! JSON lines.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use sqlx::{Connection, PgConnection, Row};

pub fn admin_url() -> String {
    std::env::var("SLUICE_TEST_DATABASE_URL")
        .expect("SLUICE_TEST_DATABASE_URL is not set: run scripts/test.sh")
}

pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A new, empty database; returns its URL.
pub fn fresh_database(name: &str) -> String {
    let db = unique(name);
    rt().block_on(async {
        let mut c = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
            .execute(&mut c)
            .await
            .unwrap();
    });
    let admin = admin_url();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{db}")
}

/// A table's rows as normalized JSON lines, sorted (timestamps as the oracle prints them).
pub fn pg_rows(url: &str, select: &str) -> Vec<String> {
    let rows: Vec<String> = rt().block_on(async {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::query(&format!("SELECT row_to_json(t)::text FROM ({select}) t"))
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    });
    super::support::sorted_rows(&rows.join("\n"))
}

/// Every row of `table`, timestamps as RFC 3339 UTC text with milliseconds (as the
/// oracle prints them), normalized and sorted.
pub fn pg_table_rows(url: &str, table: &str) -> Vec<String> {
    let columns: Vec<(String, String)> = rt().block_on(async {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect()
    });
    assert!(!columns.is_empty(), "no table {table}");
    let select: Vec<String> = columns
        .iter()
        .map(|(name, kind)| {
            if kind.starts_with("timestamp") {
                format!(
                    "to_char(\"{name}\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS \"{name}\""
                )
            } else {
                format!("\"{name}\"")
            }
        })
        .collect();
    pg_rows(
        url,
        &format!("SELECT {} FROM \"{table}\"", select.join(", ")),
    )
}

/// A private PostgreSQL server (scripts/pg-instance.sh) that the test can stop and start.
pub struct PrivatePostgres {
    dir: std::path::PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn script(args: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-instance.sh");
        let out = Command::new(script).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "pg-instance.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres {
            dir: dir.join("pg"),
            port,
        };
        pg.up();
        pg
    }

    pub fn up(&self) {
        Self::script(&["start", self.dir.to_str().unwrap(), &self.port.to_string()]);
    }

    pub fn down(&self) {
        Self::script(&["stop", self.dir.to_str().unwrap()]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-instance.sh");
        let _ = Command::new(script)
            .args(["stop", self.dir.to_str().unwrap_or_default()])
            .output();
    }
}
