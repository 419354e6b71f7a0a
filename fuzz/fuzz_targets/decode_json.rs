//! Any bytes as JSON records against the IoT schema: rows or bad records, never a panic,
//! and the same as arrow-json's alone (the decoder's fast path changes nothing).
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
    let (Ok(mut decoder), Ok(mut oracle)) = (
        JsonDecoder::new(schema.clone(), 64),
        JsonDecoder::arrow_only(schema, 64),
    ) else {
        return;
    };
    let records: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    // The fast path reads what arrow-json reads, to the same rows and bad records.
    match (decoder.decode_lines(&records), oracle.decode_lines(&records)) {
        (Ok((rows, bad)), Ok((want_rows, want_bad))) => {
            assert_eq!(rows, want_rows);
            assert_eq!(format!("{bad:?}"), format!("{want_bad:?}"));
        }
        (Err(_), Err(_)) => {}
        (got, want) => panic!("{got:?} but arrow-json: {want:?}"),
    }
});
