//! A PostgreSQL table as a lookup join's other side: rows are fetched by key, all the
//! keys a batch lacks in one query (`WHERE (k…) IN (SELECT * FROM unnest($1, …))`),
//! values read as text and cast to the declared column types. A server that goes away
//! is waited for, as the sink does.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{Lookup, LookupFactory, Result, RuntimeError};
use sluice_types::{ConnectorOptions, Interrupt, OptionProblem};
use sqlx::Row;

use super::client::PgClient;
use super::encode::{quote_ident, quote_table};
use crate::error::ConnectorError;

/// Options of a PostgreSQL table joined as a lookup table.
pub const LOOKUP_OPTIONS: &[&str] = &["url", "table", "lookup.cache.ttl"];

pub fn check_lookup(options: &ConnectorOptions) -> std::result::Result<(), OptionProblem> {
    if options.get("url").is_none_or(str::is_empty) {
        return Err(OptionProblem::new(
            Some("connector"),
            "a postgres table needs url = 'postgres://user@host:port/db'",
        ));
    }
    Ok(())
}

/// Opens one connection per task of the join.
pub struct PostgresLookupFactory {
    url: String,
    table: String,
    schema: SchemaRef,
    interrupt: Interrupt,
}

impl PostgresLookupFactory {
    pub fn new(
        name: &str,
        options: &ConnectorOptions,
        schema: SchemaRef,
        interrupt: &Interrupt,
    ) -> std::result::Result<Self, ConnectorError> {
        check_lookup(options)
            .map_err(|p| ConnectorError::Config(format!("table {name}: {}", p.message)))?;
        Ok(PostgresLookupFactory {
            url: options.get("url").unwrap_or_default().to_string(),
            table: options.get("table").unwrap_or(name).to_string(),
            schema,
            interrupt: interrupt.clone(),
        })
    }
}

impl LookupFactory for PostgresLookupFactory {
    fn open(&self) -> Result<Box<dyn Lookup>> {
        let mut client = PgClient::new(&self.url, &self.table)
            .map_err(|e| RuntimeError::External(e.to_string()))?;
        client.interrupt = self.interrupt.clone();
        Ok(Box::new(PostgresLookup {
            client,
            table: self.table.clone(),
            schema: self.schema.clone(),
        }))
    }
}

struct PostgresLookup {
    client: PgClient,
    table: String,
    schema: SchemaRef,
}

impl Lookup for PostgresLookup {
    fn fetch(&mut self, keys: &RecordBatch) -> Result<RecordBatch> {
        let select: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| format!("{}::text", quote_ident(f.name())))
            .collect();
        let key_cols: Vec<String> = keys
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}::text", quote_ident(f.name())))
            .collect();
        let params: Vec<String> = (1..=keys.num_columns())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))",
            select.join(", "),
            quote_table(&self.table),
            key_cols.join(", "),
            params.join(", ")
        );
        // Key values as text, one array per key column.
        let mut values: Vec<Vec<Option<String>>> = Vec::new();
        for c in keys.columns() {
            let text = cast(c, &DataType::Utf8)?;
            let text = text
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| RuntimeError::Internal("a key as text is not text".into()))?;
            values.push(text.iter().map(|v| v.map(str::to_string)).collect());
        }
        let n = self.schema.fields().len();
        let rows = self.client.with_retry("looking up rows", |conn| {
            let sql = sql.clone();
            let values = values.clone();
            Box::pin(async move {
                let mut q = sqlx::query(&sql);
                for v in values {
                    q = q.bind(v);
                }
                let rows = q.fetch_all(conn).await?;
                let mut cols: Vec<Vec<Option<String>>> = vec![Vec::new(); n];
                for r in &rows {
                    for (i, col) in cols.iter_mut().enumerate() {
                        col.push(r.try_get::<Option<String>, _>(i)?);
                    }
                }
                Ok(cols)
            })
        })?;
        let arrays = rows
            .into_iter()
            .zip(self.schema.fields())
            .map(|(col, f)| {
                let text: ArrayRef = Arc::new(StringArray::from(col));
                let out = cast(&text, f.data_type())?;
                if out.null_count() > text.null_count() {
                    return Err(RuntimeError::User(format!(
                        "postgres table {}: a value of column {} is not a {}",
                        self.table,
                        f.name(),
                        f.data_type()
                    )));
                }
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| {
            RuntimeError::User(format!(
                "postgres table {}: rows do not fit the declared columns: {e}",
                self.table
            ))
        })
    }
}
