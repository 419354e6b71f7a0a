//! `decode`: JSON lines of generated IoT readings (as the generator writes them to Kafka,
//! ~150 bytes each) to Arrow, in chunks of 8,192 lines: arrow-json's decoder alone (what
//! Sluice used before), Sluice's `JsonDecoder` (its fast path, arrow-json behind it), and
//! two SIMD JSON parsers (sonic-rs, simd-json) parsing the same lines without building
//! anything, for scale. A timed pass drops each batch once decoded, as a job does once
//! the batch is aggregated (so the allocator reuses its memory); an untimed pass then
//! checks every batch of the same decoder against arrow-json's.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_connectors::JsonDecoder;
use sluice_runtime::Source;

use crate::cpu_seconds;

const CHUNK: usize = 8192;

/// `events` IoT readings as JSON lines, and their schema.
fn lines(events: usize) -> Result<(SchemaRef, Vec<u8>, Vec<usize>)> {
    let mut source = crate::generator(
        &[
            ("profile", "iot".to_string()),
            ("rate", "0".into()),
            ("limit", events.to_string()),
            ("start_time", "2024-05-01T00:00:00Z".into()),
        ],
        None,
    )?;
    let schema = source.schema();
    let mut text = Vec::new();
    while let Some(b) = source.next_batch()? {
        sluice_runtime::output::json_lines(&[b], &mut text)?;
    }
    let mut ends = Vec::with_capacity(events);
    for (i, b) in text.iter().enumerate() {
        if *b == b'\n' {
            ends.push(i);
        }
    }
    ensure!(
        ends.len() == events,
        "{} lines for {events} events",
        ends.len()
    );
    Ok((schema, text, ends))
}

/// The lines in chunks, as the sources hand them to their decoders.
fn chunks<'a>(text: &'a [u8], ends: &[usize]) -> Vec<Vec<&'a [u8]>> {
    let mut out = Vec::new();
    let mut start = 0;
    for group in ends.chunks(CHUNK) {
        let mut c = Vec::with_capacity(group.len());
        for &e in group {
            c.push(&text[start..e]);
            start = e + 1;
        }
        out.push(c);
    }
    out
}

/// Decodes every chunk, dropping each batch once counted: the timed pass.
fn decode_dropping(mut decoder: JsonDecoder, chunks: &[Vec<&[u8]>]) -> Result<usize> {
    let mut rows = 0;
    for c in chunks {
        let (batch, bad) = decoder.decode_lines(c)?;
        ensure!(bad.is_empty(), "bad records: {bad:?}");
        rows += batch.map_or(0, |b| b.num_rows());
    }
    Ok(rows)
}

/// Decodes every chunk, keeping the batches: the check pass.
fn decode(mut decoder: JsonDecoder, chunks: &[Vec<&[u8]>]) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for c in chunks {
        let (batch, bad) = decoder.decode_lines(c)?;
        ensure!(bad.is_empty(), "bad records: {bad:?}");
        out.extend(batch);
    }
    Ok(out)
}

/// sonic-rs walking every line's fields (keys and raw values), building nothing.
fn sonic(chunks: &[Vec<&[u8]>]) -> Result<usize> {
    let mut fields = 0;
    for c in chunks {
        for line in c {
            for kv in sonic_rs::to_object_iter(*line) {
                let (_, v) = kv?;
                fields += usize::from(!v.as_raw_str().is_empty());
            }
        }
    }
    Ok(fields)
}

/// simd-json parsing every line into its tape, building nothing.
fn simd_json(chunks: &[Vec<&[u8]>]) -> Result<usize> {
    let mut buffers = simd_json::Buffers::default();
    let mut copy = Vec::new();
    let mut fields = 0;
    for c in chunks {
        for line in c {
            copy.clear();
            copy.extend_from_slice(line);
            let tape = simd_json::to_tape_with_buffers(&mut copy, &mut buffers)?;
            fields += tape.0.len();
        }
    }
    Ok(fields)
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64, f64)> {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let out = f()?;
    Ok((out, t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0))
}

pub(crate) fn run_decode(events: usize) -> Result<()> {
    let (schema, text, ends) = lines(events)?;
    let chunks = chunks(&text, &ends);
    let report = |name: &str, wall: f64, cpu: f64, checked: &str| {
        println!(
            "{}",
            serde_json::json!({
                "scenario": "decode",
                "decoder": name,
                "events": events,
                "bytes_per_event": (text.len() as f64 / events as f64).round(),
                "wall_s": (wall * 1000.0).round() / 1000.0,
                "cpu_s": (cpu * 1000.0).round() / 1000.0,
                "events_per_cpu_s": (events as f64 / cpu).round(),
                "mb_per_cpu_s": (text.len() as f64 / cpu / 1e6).round(),
                "checked": checked,
            })
        );
    };
    // arrow-json on its own, as `JsonDecoder` ran before its fast path.
    let (rows, wall, cpu) =
        timed(|| decode_dropping(JsonDecoder::arrow_only(schema.clone(), CHUNK)?, &chunks))?;
    ensure!(rows == events, "arrow-json: {rows} rows");
    let want = decode(JsonDecoder::arrow_only(schema.clone(), CHUNK)?, &chunks)?;
    let want = concat_batches(&schema, &want)?;
    ensure!(
        want.num_rows() == events,
        "arrow-json: {} rows",
        want.num_rows()
    );
    report("arrow-json", wall, cpu, "the oracle: one row per line");
    let (rows, wall, cpu) =
        timed(|| decode_dropping(JsonDecoder::new(schema.clone(), CHUNK)?, &chunks))?;
    ensure!(rows == events, "JsonDecoder: {rows} rows");
    let got = decode(JsonDecoder::new(schema.clone(), CHUNK)?, &chunks)?;
    let got = concat_batches(&schema, &got)?;
    ensure!(got == want, "JsonDecoder's rows differ from arrow-json's");
    report(
        "sluice JsonDecoder",
        wall,
        cpu,
        "every row equal to arrow-json's",
    );
    let per_line = schema.fields().len();
    let (n, wall, cpu) = timed(|| sonic(&chunks))?;
    ensure!(n == events * per_line, "sonic-rs saw {n} fields");
    report("sonic-rs (parse only)", wall, cpu, "field count");
    let (n, wall, cpu) = timed(|| simd_json(&chunks)).context("simd-json")?;
    ensure!(n > events * per_line, "simd-json's tapes hold {n} nodes");
    report("simd-json (parse only)", wall, cpu, "tape length");
    Ok(())
}
