//! PostgreSQL sink: rows are held per epoch and written only when the runtime says the
//! epoch's checkpoint is durable, in one transaction that also advances this sink's row
//! in `sluice_sink_progress` (only forwards), so each epoch lands exactly once. Keyed
//! tables are upserts: the epoch's rows are cut to each key's last one here, then
//! COPYed into a session temp table and applied with `INSERT … ON CONFLICT` — or, while
//! the keys are new to the table, COPYed straight in under a savepoint that a conflict
//! rolls back to the stage (`direct`); tables without a key are appends (COPY straight
//! in), fenced by the same epoch row.
//! An updating result (a changelog) goes to a keyed table: per key the epoch's last
//! change wins, a delete or update-before deleting the row, an insert or update-after
//! upserting it. COPY uses the binary format when every column of the table has the
//! type Sluice would give it, and the text format otherwise.
//! A server that goes away is waited for with backoff; rows are never dropped.

mod binary;
mod client;
mod direct;
mod encode;
mod last_per_key;
mod lookup;
mod statements;

use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{EpochStore, Result, RuntimeError};
use sluice_types::{ConnectorOptions, Epoch, Interrupt, OptionProblem};
use sqlx::{Connection, PgConnection, Row};

use crate::error::ConnectorError;
pub use binary::copy_binary_stream;
use client::{PgClient, PgFuture};
pub use encode::{copy_text, pg_type, quote_ident, quote_table};
pub use lookup::{LOOKUP_OPTIONS, PostgresLookupFactory, check_lookup};

/// Options of a PostgreSQL sink table.
pub const SINK_OPTIONS: &[&str] = &["url", "table", "primary_key", "create_table"];

/// The table that records, per job and sink, the newest epoch committed.
pub const PROGRESS_TABLE: &str = "sluice_sink_progress";

/// Checks what the catalog cannot see from the option names alone.
pub fn check_sink(options: &ConnectorOptions) -> Result<(), OptionProblem> {
    if options.get("url").is_none_or(str::is_empty) {
        return Err(OptionProblem::new(
            Some("connector"),
            "a postgres table needs url = 'postgres://user@host:port/db'",
        ));
    }
    if let Some(c) = options.get("create_table")
        && !matches!(c, "true" | "false")
    {
        return Err(OptionProblem::new(
            Some("create_table"),
            format!("create_table must be 'true' or 'false', not '{c}'"),
        ));
    }
    Ok(())
}

pub struct PostgresSink {
    client: PgClient,
    table: String,
    columns: Vec<String>,
    key: Vec<String>,
    /// The key's column positions in the rows written.
    key_index: Vec<usize>,
    /// Two different Arrow keys may be one key to PostgreSQL (`-0.0` and `0.0`, or
    /// nanoseconds that round to the same microsecond): the stage is then cut to one row
    /// per key again in SQL.
    distinct_in_sql: bool,
    /// COPY in binary (every column's type in the table is the one Sluice writes).
    binary: bool,
    /// The rows carry `__op` (an updating result).
    changelog: bool,
    create: bool,
    schema: SchemaRef,
    job: String,
    sink: String,
    /// The task's generation (0 outside distributed runs): commits are refused once
    /// the progress row holds a newer one.
    generation: i64,
    /// When a keyed table's epoch tries COPY straight into the table.
    direct: direct::DirectCopy,
    /// Epochs that went straight into the table (for tests and logs).
    direct_epochs: u64,
}

impl PostgresSink {
    pub fn open(
        table: &str,
        options: &ConnectorOptions,
        schema: SchemaRef,
    ) -> Result<Self, ConnectorError> {
        check_sink(options)
            .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
        let changelog = sluice_types::changelog::is_changelog(&schema);
        let schema = if changelog {
            let data: Vec<_> = schema.fields()[..schema.fields().len() - 1].to_vec();
            std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(data))
        } else {
            schema
        };
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let key: Vec<String> = options
            .get("primary_key")
            .unwrap_or_default()
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        for k in &key {
            if !columns.contains(k) {
                return Err(ConnectorError::Config(format!(
                    "table {table}: primary_key column {k} is not one of the columns written ({})",
                    columns.join(", ")
                )));
            }
        }
        if changelog && key.is_empty() {
            return Err(ConnectorError::Config(format!(
                "table {table}: an updating result needs primary_key"
            )));
        }
        let name = options.get("table").unwrap_or(table).to_string();
        let key_index: Vec<usize> = key
            .iter()
            .filter_map(|k| columns.iter().position(|c| c == k))
            .collect();
        let distinct_in_sql = key_index.iter().any(|&i| {
            matches!(
                schema.field(i).data_type(),
                DataType::Float16
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Timestamp(TimeUnit::Nanosecond, _)
            )
        });
        Ok(PostgresSink {
            client: PgClient::new(options.get("url").unwrap_or_default(), &name)?,
            table: name,
            columns,
            key,
            key_index,
            distinct_in_sql,
            binary: false,
            changelog,
            create: options.get("create_table") != Some("false"),
            schema,
            job: String::new(),
            sink: table.to_string(),
            generation: 0,
            direct: direct::DirectCopy::default(),
            direct_epochs: 0,
        })
    }

    /// How many epochs went by COPY straight into a keyed table (their keys all new to
    /// it) rather than through the stage.
    pub fn direct_epochs(&self) -> u64 {
        self.direct_epochs
    }

    /// Whether the table takes COPY's binary format (known after `open`).
    pub fn binary_copy(&self) -> bool {
        self.binary
    }

    /// Waits for the database end when `interrupt` is raised.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.client.interrupt = interrupt;
        self
    }

    /// Runs `f` on a connection, reconnecting and retrying with backoff while the
    /// server is away.
    fn with_retry<T>(
        &mut self,
        what: &str,
        f: impl for<'c> FnMut(&'c mut PgConnection) -> PgFuture<'c, T>,
    ) -> Result<T> {
        self.client.with_retry(what, f)
    }

    /// A newer generation (`held`) holds the task: this worker's claim is stale.
    fn fenced(&self, held: i64) -> RuntimeError {
        RuntimeError::Fenced {
            held: held.max(0) as u64,
            message: format!(
                "postgres table {}: task {} is held by generation {held}, newer than this worker's {}; another worker has taken it over",
                self.table, self.job, self.generation
            ),
        }
    }
}

/// Exactly once through [`sluice_runtime::CommitOnCheckpoint`]: each epoch in one
/// transaction with the sink's row in `sluice_sink_progress`.
impl EpochStore for PostgresSink {
    fn fence(&mut self, generation: u64) {
        self.generation = generation as i64;
    }

    /// A table without a key has no order: its rows go in as they arrive. A keyed
    /// table keeps each key's last row, so the order stays the same on every run.
    fn ordered(&self) -> bool {
        !self.key.is_empty()
    }

    fn open(&mut self, job: &str, _table: &str) -> Result<Option<Epoch>> {
        self.job = job.to_string();
        let create = self
            .create
            .then(|| statements::create_table(&self.table, &self.schema, &self.key));
        let (job, sink) = (self.job.clone(), self.sink.clone());
        let generation = self.generation;
        let last = self.with_retry("opening", |conn| {
            let create = create.clone();
            let (job, sink) = (job.clone(), sink.clone());
            Box::pin(async move {
                // Jobs starting together must not race to create the same tables.
                let mut tx = conn.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(5151)")
                    .execute(&mut *tx)
                    .await?;
                sqlx::raw_sql(&format!(
                    "CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (job text NOT NULL, sink text NOT NULL, \
                     epoch bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), \
                     generation bigint NOT NULL DEFAULT 0, PRIMARY KEY (job, sink))"
                ))
                .execute(&mut *tx)
                .await?;
                // A table made before generations gets the column; the ALTER (which
                // locks the whole table) runs only then.
                let has_generation: bool = sqlx::query_scalar(&format!(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{PROGRESS_TABLE}'::regclass \
                     AND attname = 'generation' AND NOT attisdropped)"
                ))
                .fetch_one(&mut *tx)
                .await?;
                if !has_generation {
                    sqlx::raw_sql(&format!(
                        "ALTER TABLE {PROGRESS_TABLE} ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 0"
                    ))
                    .execute(&mut *tx)
                    .await?;
                }
                if generation > 0 {
                    // Taking the task over: commits of an older generation are refused
                    // from now on.
                    let held: i64 = sqlx::query_scalar(&format!(
                        "INSERT INTO {PROGRESS_TABLE} (job, sink, epoch, generation) VALUES ($1, $2, -1, $3) \
                         ON CONFLICT (job, sink) DO UPDATE SET generation = GREATEST({PROGRESS_TABLE}.generation, EXCLUDED.generation) \
                         RETURNING generation"
                    ))
                    .bind(&job)
                    .bind(&sink)
                    .bind(generation)
                    .fetch_one(&mut *tx)
                    .await?;
                    if held > generation {
                        tx.commit().await?;
                        return Ok(Err(held));
                    }
                }
                if let Some(create) = create {
                    sqlx::raw_sql(&create).execute(&mut *tx).await?;
                }
                let row = sqlx::query(&format!(
                    "SELECT epoch FROM {PROGRESS_TABLE} WHERE job = $1 AND sink = $2"
                ))
                .bind(job)
                .bind(sink)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Ok(row.map(|r| r.get::<i64, _>(0)).filter(|e| *e >= 0)))
            })
        })?
        .map_err(|held| self.fenced(held))?;
        // The table must have the columns written.
        let table = self.table.clone();
        let (schema_name, table_name) = match table.rsplit_once('.') {
            Some((s, t)) => (Some(s.to_string()), t.to_string()),
            None => (None, table.clone()),
        };
        let existing: Vec<(String, String)> =
            self.with_retry("reading the table's columns", |conn| {
                let (schema_name, table_name) = (schema_name.clone(), table_name.clone());
                Box::pin(async move {
                    let rows = sqlx::query(
                        "SELECT column_name::text, udt_name::text FROM information_schema.columns \
                     WHERE table_name = $1 AND ($2::text IS NULL OR table_schema = $2) \
                     AND ($2::text IS NOT NULL OR table_schema = ANY (current_schemas(false)))",
                    )
                    .bind(&table_name)
                    .bind(&schema_name)
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok(rows
                        .iter()
                        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
                        .collect())
                })
            })?;
        if existing.is_empty() {
            return Err(RuntimeError::User(format!(
                "postgres table {table} does not exist (set create_table = 'true' to create it)"
            )));
        }
        let type_of = |c: &String| existing.iter().find(|(n, _)| n == c).map(|(_, t)| t);
        let missing: Vec<&String> = self
            .columns
            .iter()
            .filter(|c| type_of(c).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(RuntimeError::User(format!(
                "postgres table {table} has no column {} (it has: {})",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                existing
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // An upsert needs a unique index on exactly its key (as `ON CONFLICT` does);
        // without one, a COPY straight into the table would let a key in twice.
        if !self.key.is_empty() {
            let (quoted, key) = (quote_table(&table), self.key.clone());
            let unique: bool = self.with_retry("reading the table's indexes", |conn| {
                let (quoted, key) = (quoted.clone(), key.clone());
                Box::pin(async move {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) \
                         AND i.indisunique AND i.indpred IS NULL AND i.indnkeyatts = cardinality($2::text[]) \
                         AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a \
                              WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])) \
                           = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k))",
                    )
                    .bind(&quoted)
                    .bind(&key)
                    .fetch_one(&mut *conn)
                    .await
                })
            })?;
            if !unique {
                return Err(RuntimeError::User(format!(
                    "postgres table {table} has no primary key or unique index on ({}), which an upsert (primary_key) needs",
                    self.key.join(", ")
                )));
            }
        }
        self.binary = self.schema.fields().iter().all(|f| {
            let accepted = binary::binary_types(f.data_type()).unwrap_or_default();
            type_of(f.name()).is_some_and(|t| accepted.contains(&t.as_str()))
        });
        tracing::debug!(table = %table, binary = self.binary, "postgres COPY format");
        Ok(last.map(|e| Epoch(e.max(0) as u64)))
    }

    /// Writes one epoch's rows and advances the progress row, in one transaction; an
    /// epoch already committed is skipped.
    fn commit_epoch(&mut self, epoch: Epoch, batches: &[RecordBatch]) -> Result<()> {
        let internal =
            |e: String| RuntimeError::Internal(format!("postgres table {}: {e}", self.table));
        let started = Instant::now();
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let last;
        let batches = if self.key.is_empty() {
            batches
        } else {
            last = last_per_key::last_per_key(batches, &self.key_index).map_err(internal)?;
            last.as_slice()
        };
        let mut data = Vec::new();
        if self.binary && !batches.is_empty() {
            data = copy_binary_stream(batches).map_err(internal)?;
        } else {
            for b in batches {
                copy_text(b, &mut data).map_err(internal)?;
            }
        }
        let statements::Statements {
            copy,
            stage,
            apply,
            direct,
        } = statements::statements(&statements::Shape {
            table: &self.table,
            schema: &self.schema,
            key: &self.key,
            changelog: self.changelog,
            binary: self.binary,
            distinct_in_sql: self.distinct_in_sql,
        });
        let direct = direct.filter(|_| !data.is_empty() && self.direct.attempt());
        let data = std::sync::Arc::new(data);
        let (job, sink) = (self.job.clone(), self.sink.clone());
        let generation = self.generation;
        let applied = self.with_retry(&format!("committing epoch {epoch}"), |conn| {
            let (copy, apply) = (copy.clone(), apply.clone());
            let (stage, direct) = (stage.clone(), direct.clone());
            let data = data.clone();
            let (job, sink) = (job.clone(), sink.clone());
            Box::pin(async move {
                let mut tx = conn.begin().await?;
                let fresh = sqlx::query(&format!(
                    "INSERT INTO {PROGRESS_TABLE} (job, sink, epoch, generation) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (job, sink) DO UPDATE SET epoch = EXCLUDED.epoch, updated_at = now() \
                     WHERE {PROGRESS_TABLE}.epoch < EXCLUDED.epoch \
                     AND {PROGRESS_TABLE}.generation <= EXCLUDED.generation RETURNING epoch"
                ))
                .bind(&job)
                .bind(&sink)
                .bind(epoch.0 as i64)
                .bind(generation)
                .fetch_optional(&mut *tx)
                .await?;
                if fresh.is_none() {
                    let held: i64 = sqlx::query_scalar(&format!(
                        "SELECT generation FROM {PROGRESS_TABLE} WHERE job = $1 AND sink = $2"
                    ))
                    .bind(&job)
                    .bind(&sink)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return Ok(if held > generation { Err(held) } else { Ok(None) });
                }
                // Straight into the table while the keys are new; a key already there
                // (SQLSTATE 23505) undoes the COPY and the epoch takes the stage.
                let mut went = None;
                if let Some(direct) = &direct {
                    sqlx::raw_sql("SAVEPOINT sluice_direct")
                        .execute(&mut *tx)
                        .await?;
                    match copy_in(&mut tx, direct, &data).await {
                        Ok(()) => went = Some(true),
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                            sqlx::raw_sql("ROLLBACK TO SAVEPOINT sluice_direct")
                                .execute(&mut *tx)
                                .await?;
                            went = Some(false);
                        }
                        Err(e) => return Err(e),
                    }
                }
                if went != Some(true) {
                    if let Some(stage) = stage {
                        sqlx::raw_sql(&stage).execute(&mut *tx).await?;
                    }
                    if !data.is_empty() {
                        copy_in(&mut tx, &copy, &data).await?;
                    }
                    for statement in apply {
                        sqlx::raw_sql(&statement).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(Ok(Some(went)))
            })
        })?
        .map_err(|held| self.fenced(held))?;
        if let Some(Some(direct)) = applied {
            self.direct.tried(!direct);
            self.direct_epochs += u64::from(direct);
        }
        if let Some(went) = applied {
            tracing::debug!(
                table = %self.table,
                %epoch,
                rows,
                direct = went == Some(true),
                ms = started.elapsed().as_millis() as u64,
                "postgres commit"
            );
        } else {
            tracing::debug!(table = %self.table, %epoch, "epoch committed before; skipped");
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some(conn) = self.client.conn.take() {
            let _ = self.client.rt.block_on(conn.close());
        }
        Ok(())
    }
}

/// Sends `data` through a `COPY … FROM STDIN` statement.
async fn copy_in(conn: &mut PgConnection, statement: &str, data: &[u8]) -> sqlx::Result<()> {
    let mut c = conn.copy_in_raw(statement).await?;
    c.send(data).await?;
    c.finish().await?;
    Ok(())
}
