//! Any bytes as JSON records against the IoT schema: rows or bad records, never a panic.
#![no_main]

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use libfuzzer_sys::fuzz_target;
use sluice_connectors::JsonDecoder;

fuzz_target!(|data: &[u8]| {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("temperature", DataType::Float64, true),
        Field::new("readings", DataType::Int64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]));
    let Ok(mut decoder) = JsonDecoder::new(schema, 64) else {
        return;
    };
    let records: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let _ = decoder.decode_lines(&records);
});
