//! Rows as people and files see them: timestamps as RFC 3339 UTC text, a changelog's
//! `__op` as Flink's short forms, JSON lines. The file and Kafka sinks write this, and
//! the live-results stream sends it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::format_millis;

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
