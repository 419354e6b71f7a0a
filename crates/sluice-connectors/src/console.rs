//! Console sink: prints rows as a readable table, timestamps as RFC 3339 UTC.

use std::io::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use sluice_runtime::{Result, RuntimeError, Sink};

use crate::json::for_output;

pub struct ConsoleSink {
    table: String,
}

impl ConsoleSink {
    pub fn new(table: &str) -> Self {
        ConsoleSink {
            table: table.to_string(),
        }
    }
}

impl Sink for ConsoleSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let text = pretty_format_batches(&[for_output(batch)?])?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{} ({} rows)\n{text}", self.table, batch.num_rows())
            .map_err(|e| RuntimeError::External(format!("cannot write to the console: {e}")))
    }

    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
