//! JSON lines to Arrow (bulk decoding, falling back to line by line to find bad
//! records), and Arrow timestamps to RFC 3339 text for output.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::format_millis;

/// One record that could not be decoded.
#[derive(Debug, Clone)]
pub struct BadRecord {
    /// Index of the record in the chunk given to [`JsonDecoder::decode_lines`].
    pub index: usize,
    pub error: String,
}

/// Decodes newline-separated JSON objects into batches of a fixed schema.
pub struct JsonDecoder {
    schema: SchemaRef,
    decoder: Decoder,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef, batch_size: usize) -> Result<Self, ArrowError> {
        let decoder = Self::decoder(&schema, batch_size)?;
        Ok(JsonDecoder { schema, decoder })
    }

    fn decoder(schema: &SchemaRef, batch_size: usize) -> Result<Decoder, ArrowError> {
        ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_size.max(1))
            .build_decoder()
    }

    /// Decodes `records` (each one JSON object). Returns the good rows in order and the
    /// bad records; one bad record costs a line-by-line pass over its chunk only.
    pub fn decode_lines(
        &mut self,
        records: &[&[u8]],
    ) -> Result<(Option<RecordBatch>, Vec<BadRecord>), ArrowError> {
        if records.is_empty() {
            return Ok((None, Vec::new()));
        }
        let mut joined = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            joined.extend_from_slice(r);
            joined.push(b'\n');
        }
        if let Ok(Some(batch)) = self.decode_all(&joined)
            && batch.num_rows() == records.len()
        {
            return Ok((Some(batch), Vec::new()));
        }
        // Slow path: find the bad ones.
        self.decoder = Self::decoder(&self.schema, records.len())?;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (index, r) in records.iter().enumerate() {
            match self.decode_all(r) {
                Ok(Some(b)) if b.num_rows() == 1 => good.push(b),
                Ok(_) => bad.push(BadRecord {
                    index,
                    error: "not a JSON object".into(),
                }),
                Err(e) => {
                    self.decoder = Self::decoder(&self.schema, records.len())?;
                    bad.push(BadRecord {
                        index,
                        error: clean_error(&e),
                    });
                }
            }
        }
        let batch = if good.is_empty() {
            None
        } else {
            Some(concat_batches(&self.schema, &good)?)
        };
        Ok((batch, bad))
    }

    fn decode_all(&mut self, mut bytes: &[u8]) -> Result<Option<RecordBatch>, ArrowError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let read = self.decoder.decode(bytes)?;
            if read == 0 {
                if let Some(b) = self.decoder.flush()? {
                    out.push(b);
                } else {
                    break;
                }
            }
            bytes = &bytes[read..];
        }
        if let Some(b) = self.decoder.flush()? {
            out.push(b);
        }
        match out.len() {
            0 => Ok(None),
            1 => Ok(out.pop()),
            _ => Ok(Some(concat_batches(&self.schema, &out)?)),
        }
    }
}

fn clean_error(e: &ArrowError) -> String {
    let s = e.to_string();
    s.trim_start_matches("Json error: ")
        .trim_start_matches("Parser error: ")
        .to_string()
}

/// Rows as JSON lines, as the file and Kafka sinks write them: one object per row, every
/// column present (nulls explicit), timestamps as RFC 3339 UTC text.
pub fn json_lines(batches: &[RecordBatch], out: &mut Vec<u8>) -> Result<(), ArrowError> {
    let mut w = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(out);
    for b in batches {
        w.write(&for_output(b)?)?;
    }
    w.finish()
}

/// The batch as people and files see it: timestamps as RFC 3339 UTC text, and a
/// changelog's `__op` as an `op` column of Flink's short forms (`+I`, `-U`, `+U`, `-D`).
pub fn for_output(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let batch = timestamps_as_text(batch)?;
    let Some(kinds) = sluice_types::changelog::row_kinds(&batch) else {
        return Ok(batch);
    };
    let text: StringArray = kinds
        .iter()
        .map(|k| {
            k.and_then(sluice_types::RowKind::from_i8)
                .map(|k| k.short())
        })
        .collect();
    let n = batch.num_columns() - 1;
    let schema = batch.schema();
    let mut fields: Vec<Field> = schema.fields()[..n]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("op", DataType::Utf8, false));
    let mut columns = batch.columns()[..n].to_vec();
    columns.push(Arc::new(text));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// The batch with every timestamp column turned into RFC 3339 UTC text.
pub fn timestamps_as_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Timestamp(..)))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Timestamp(..) = f.data_type() {
            let ms = cast(c, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            let ms = ms.as_primitive::<TimestampMillisecondType>();
            let text: StringArray = (0..ms.len())
                .map(|i| (!ms.is_null(i)).then(|| format_millis(ms.value(i))))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
            columns.push(Arc::new(text));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
