//! The shuffle of a distributed job: rows of a source partition cross to the worker
//! that holds their key through an internal Kafka topic, `sluice.<job>.<table>`, as
//! Arrow batches. Exactly once without Kafka transactions: every row carries the source
//! offset it was decoded from and the writer is deterministic (a replay writes the same
//! rows again), so a reader keeps, per source partition, the highest offset it has
//! taken (in its checkpoint) and drops what it has seen. Each source partition also
//! writes its progress (largest event time, idle, ended) into every shuffle partition,
//! in order with its rows; a reader's watermark is the least over the source
//! partitions, held until each has reported (`SourcePoll::Progress`).
//!
//! Here: the records' format and the reader's bookkeeping, both pure; the writer
//! (`shuffle/writer.rs`) and the reader (`shuffle/source.rs`) do the I/O.

pub mod source;
pub mod writer;

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

/// The format version written as each record's first byte.
pub const FORMAT_VERSION: u8 = 1;
/// The column a shuffled batch carries last: each row's source offset.
pub const OFFSET_COLUMN: &str = "__offset";

/// The internal topic of a job's table.
pub fn topic_name(job: &str, table: &str) -> String {
    format!("sluice.{job}.{table}")
}

/// A source partition's progress as its writer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Progress {
    /// The largest event time read from the partition so far.
    pub max_event: Option<i64>,
    /// No record has come for the table's idle timeout.
    pub idle: bool,
    /// A bounded source read to its end: nothing more will come from the partition.
    pub end: bool,
}

/// One record of a shuffle topic.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Rows of source partition `partition`, with [`OFFSET_COLUMN`] last, in offset order.
    Rows {
        partition: u32,
        batch: RecordBatch,
    },
    Progress {
        partition: u32,
        progress: Progress,
    },
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a shuffle record of format {0} (this build reads {FORMAT_VERSION})")]
    Version(u8),
    #[error("a shuffle record that is cut short")]
    Short,
    #[error("a shuffle record's rows: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("a shuffle record's progress: {0}")]
    Json(#[from] serde_json::Error),
}

const ROWS: u8 = 0;
const PROGRESS: u8 = 1;

impl Frame {
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let (kind, partition) = match self {
            Frame::Rows { partition, .. } => (ROWS, *partition),
            Frame::Progress { partition, .. } => (PROGRESS, *partition),
        };
        let mut out = vec![FORMAT_VERSION, kind];
        out.extend_from_slice(&partition.to_be_bytes());
        match self {
            Frame::Rows { batch, .. } => {
                let mut w = StreamWriter::try_new(&mut out, &batch.schema())?;
                w.write(batch)?;
                w.finish()?;
            }
            Frame::Progress { progress, .. } => serde_json::to_writer(&mut out, progress)?,
        }
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let [version, kind, p0, p1, p2, p3, rest @ ..] = bytes else {
            return Err(FrameError::Short);
        };
        if *version != FORMAT_VERSION {
            return Err(FrameError::Version(*version));
        }
        let partition = u32::from_be_bytes([*p0, *p1, *p2, *p3]);
        if *kind == PROGRESS {
            return Ok(Frame::Progress {
                partition,
                progress: serde_json::from_slice(rest)?,
            });
        }
        let reader = StreamReader::try_new(Cursor::new(rest), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        Ok(Frame::Rows { partition, batch })
    }
}

/// `batch` with each row's source offset as a last column.
pub fn with_offsets(batch: &RecordBatch, offsets: &[i64]) -> Result<RecordBatch, FrameError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(offsets.to_vec())));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// What a reader has taken, per source partition: the highest offset, whether the
/// partition has ended. Saved in the reader's checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    pub highest: Vec<Option<i64>>,
    pub ended: Vec<bool>,
}

/// What the reader makes of one record.
#[derive(Debug)]
pub enum Taking {
    /// Rows not seen before, without the offset column.
    Rows {
        partition: usize,
        batch: RecordBatch,
    },
    /// Everything in the record had been taken already.
    Nothing,
    Progress {
        partition: usize,
        progress: Progress,
    },
}

impl Taken {
    pub fn new(partitions: usize) -> Self {
        Taken {
            highest: vec![None; partitions],
            ended: vec![false; partitions],
        }
    }

    /// Every source partition has ended.
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// Takes a record: keeps the rows of offsets above the partition's highest, checking
    /// that they have the table's columns (`schema`).
    pub fn take(&mut self, frame: Frame, schema: &SchemaRef) -> Result<Taking, String> {
        let partition = match &frame {
            Frame::Rows { partition, .. } | Frame::Progress { partition, .. } => {
                *partition as usize
            }
        };
        if partition >= self.highest.len() {
            return Err(format!(
                "a record of source partition {partition}, but the source has {}",
                self.highest.len()
            ));
        }
        let batch = match frame {
            Frame::Progress { progress, .. } => {
                self.ended[partition] |= progress.end;
                return Ok(Taking::Progress {
                    partition,
                    progress,
                });
            }
            Frame::Rows { batch, .. } => batch,
        };
        let n = schema.fields().len();
        let shape_matches = batch.num_columns() == n + 1
            && schema
                .fields()
                .iter()
                .zip(batch.schema().fields())
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        let Some(offsets) = batch
            .columns()
            .last()
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .filter(|_| shape_matches)
        else {
            return Err(format!(
                "rows of another shape than the table's ({:?})",
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
            ));
        };
        let Some(max) = arrow::compute::max(offsets) else {
            return Ok(Taking::Nothing);
        };
        let highest = self.highest[partition];
        if highest.is_some_and(|h| max <= h) {
            return Ok(Taking::Nothing);
        }
        let kept = match highest {
            None => batch,
            Some(h) => {
                let keep: BooleanArray = offsets
                    .iter()
                    .map(|o| Some(o.is_some_and(|o| o > h)))
                    .collect();
                filter_record_batch(&batch, &keep).map_err(|e| e.to_string())?
            }
        };
        self.highest[partition] = Some(max);
        let rows = kept
            .project(&(0..n).collect::<Vec<_>>())
            .and_then(|r| r.with_schema(schema.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Taking::Rows {
            partition,
            batch: rows,
        })
    }
}

#[cfg(test)]
mod tests;
