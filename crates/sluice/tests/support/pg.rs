//! PostgreSQL helpers for tests: a fresh database per test on the server in
//! SLUICE_TEST_DATABASE_URL (set by scripts/test.sh), and rows read back as normalized
//! JSON lines.
#![allow(dead_code)]

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
