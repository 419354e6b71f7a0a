//! A PostgreSQL connection that waits for the server: calls are retried with backoff
//! (0.2 s doubling to 5 s) while the server or the network is away, until the job is
//! stopped; other errors are returned at once. The sink and lookups share it.

use std::time::{Duration, Instant};

use sluice_runtime::{Result, RuntimeError};
use sluice_types::{Backoff, Interrupt};
use sqlx::{Connection, PgConnection};

use crate::error::ConnectorError;

pub(super) type PgFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<T, sqlx::Error>> + 'c>>;

/// Pauses between attempts while the database is away.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Whether an error is the server or the network going away (wait and retry) rather
/// than something retrying cannot fix.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08")
                || matches!(
                    c.as_ref(),
                    "57P01" | "57P02" | "57P03" | "57P05" | "25P03" | "53300" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

/// A transaction left open by a process that stopped between statements (paused, or
/// cut off) is ended by the server after this long, so that it cannot hold the rows a
/// worker taking its task over must lock.
const IDLE_IN_TRANSACTION: &str = "10s";

fn connect_options(
    url: &str,
) -> std::result::Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
    Ok(url.parse::<sqlx::postgres::PgConnectOptions>()?.options([
        ("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION),
        // Times written as text without a zone are UTC, whatever the server's default.
        ("TimeZone", "UTC"),
    ]))
}

pub(super) struct PgClient {
    url: String,
    /// The table, for messages.
    table: String,
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) conn: Option<PgConnection>,
    /// Raised when the job stops or is cancelled: waiting for the database ends.
    pub(super) interrupt: Interrupt,
}

impl PgClient {
    pub(super) fn new(url: &str, table: &str) -> std::result::Result<Self, ConnectorError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectorError::Io(format!("table {table}: {e}")))?;
        Ok(PgClient {
            url: url.to_string(),
            table: table.to_string(),
            rt,
            conn: None,
            interrupt: Interrupt::new(),
        })
    }

    fn describe(&self, e: &sqlx::Error) -> String {
        format!("postgres table {}: {e}", self.table)
    }

    /// Runs `f` on a connection, reconnecting and retrying with backoff (0.2 s doubling
    /// to 5 s) while the server is away; other errors are returned.
    pub(super) fn with_retry<T>(
        &mut self,
        what: &str,
        mut f: impl for<'c> FnMut(&'c mut PgConnection) -> PgFuture<'c, T>,
    ) -> Result<T> {
        let mut attempt_no = 0;
        let mut since: Option<Instant> = None;
        loop {
            let mut slot = self.conn.take();
            let url = &self.url;
            let attempt = self.rt.block_on(async {
                let mut conn = match slot.take() {
                    Some(c) => c,
                    None => PgConnection::connect_with(&connect_options(url)?).await?,
                };
                let r = f(&mut conn).await;
                Ok::<_, sqlx::Error>((conn, r))
            });
            let err = match attempt {
                Ok((conn, Ok(v))) => {
                    self.conn = Some(conn);
                    if let Some(t) = since {
                        tracing::info!(
                            "postgres table {}: back after {:.1}s",
                            self.table,
                            t.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(v);
                }
                Ok((conn, Err(e))) => {
                    if !transient(&e) {
                        self.conn = Some(conn);
                    }
                    e
                }
                Err(e) => e,
            };
            if !transient(&err) {
                return Err(RuntimeError::External(format!(
                    "{what}: {}",
                    self.describe(&err)
                )));
            }
            since.get_or_insert_with(Instant::now);
            attempt_no += 1;
            let wait = RETRY.pause(attempt_no);
            tracing::warn!(
                "{what}: {}; retrying in {:.1}s",
                self.describe(&err),
                wait.as_secs_f64()
            );
            if !self.interrupt.sleep(wait) {
                return Err(RuntimeError::External(format!(
                    "{what}: {} (gave up waiting: the job is stopping)",
                    self.describe(&err)
                )));
            }
        }
    }
}
