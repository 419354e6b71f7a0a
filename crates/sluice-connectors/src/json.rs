//! JSON lines to Arrow: the fast path ([`flat`]) where it reads a chunk, else arrow-json
//! in bulk, falling back to line by line to find bad records. The way out (Arrow to JSON lines) is `sluice_runtime::output`, re-exported
//! here.

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;
use datafusion::arrow::record_batch::RecordBatch;

mod flat;

use flat::FlatDecoder;

/// After the fast path gives up on a chunk, the chunks it skips before trying again (a
/// stream whose records it cannot read costs it little).
const FAST_PATH_PAUSE: u32 = 16;

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
    flat: Option<FlatDecoder>,
    /// Chunks left before the fast path is tried again.
    paused: u32,
}

impl JsonDecoder {
    pub fn new(schema: SchemaRef, batch_size: usize) -> Result<Self, ArrowError> {
        let decoder = Self::decoder(&schema, batch_size)?;
        Ok(JsonDecoder {
            flat: FlatDecoder::new(&schema),
            schema,
            decoder,
            paused: 0,
        })
    }

    /// A decoder that never takes the fast path: arrow-json alone, the oracle of the
    /// fast path in fuzzing and benchmarks.
    pub fn arrow_only(schema: SchemaRef, batch_size: usize) -> Result<Self, ArrowError> {
        let mut d = Self::new(schema, batch_size)?;
        d.flat = None;
        Ok(d)
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
        if let Some(flat) = &self.flat {
            if self.paused == 0 {
                match flat.decode(records) {
                    Ok(batch) => return Ok((Some(batch), Vec::new())),
                    Err(flat::GiveUp) => self.paused = FAST_PATH_PAUSE,
                }
            } else {
                self.paused -= 1;
            }
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

pub use sluice_runtime::output::{for_output, json_lines, timestamps_as_text};
