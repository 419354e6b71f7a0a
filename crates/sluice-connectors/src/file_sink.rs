//! File sink: JSON lines (one object per row, timestamps as RFC 3339 UTC text) or Parquet.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use sluice_runtime::{Result, RuntimeError, Sink};

use crate::error::ConnectorError;
use crate::json::timestamps_as_text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Parquet,
}

enum Writer {
    Json(datafusion::arrow::json::Writer<BufWriter<File>, LineDelimited>),
    Parquet(Option<ArrowWriter<File>>),
}

pub struct FileSink {
    path: String,
    writer: Writer,
}

impl FileSink {
    pub fn create(
        path: &Path,
        format: FileFormat,
        schema: SchemaRef,
    ) -> Result<Self, ConnectorError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ConnectorError::Io(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = File::create(path)
            .map_err(|e| ConnectorError::Io(format!("cannot create {shown}: {e}")))?;
        let writer = match format {
            // Explicit nulls: every line has every column.
            FileFormat::Json => Writer::Json(
                WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, LineDelimited>(BufWriter::new(file)),
            ),
            FileFormat::Parquet => Writer::Parquet(Some(
                ArrowWriter::try_new(file, schema, None)
                    .map_err(|e| ConnectorError::Io(format!("{shown}: {e}")))?,
            )),
        };
        Ok(FileSink {
            path: shown,
            writer,
        })
    }

    fn io(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::External(format!("writing {}: {e}", self.path))
    }
}

impl Sink for FileSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let r = match &mut self.writer {
            Writer::Json(w) => w
                .write(&timestamps_as_text(batch)?)
                .map_err(|e| e.to_string()),
            Writer::Parquet(Some(w)) => w.write(batch).map_err(|e| e.to_string()),
            Writer::Parquet(None) => Err("the file is already closed".to_string()),
        };
        r.map_err(|e| self.io(e))
    }

    /// Rows up to a watermark become visible in the file (JSON; Parquet writes at the end).
    fn on_watermark(&mut self, _watermark: sluice_types::Watermark) -> Result<()> {
        if let Writer::Json(w) = &mut self.writer {
            w.get_mut().flush().map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        let r = match &mut self.writer {
            Writer::Json(w) => w
                .finish()
                .map_err(|e| e.to_string())
                .and_then(|_| w.get_mut().flush().map_err(|e| e.to_string())),
            Writer::Parquet(w) => match w.take() {
                Some(w) => w.close().map(|_| ()).map_err(|e| e.to_string()),
                None => Ok(()),
            },
        };
        r.map_err(|e| self.io(e))
    }
}
