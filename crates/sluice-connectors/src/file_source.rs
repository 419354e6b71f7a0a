//! File source: JSON lines, read in batches; a bounded source. Bad records follow the
//! table's `bad_data` policy (`fail` by default, or `drop`, counted).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{JobMetrics, Positions, Result, RuntimeError, Source};
use sluice_types::{ConnectorOptions, OptionProblem};

use crate::dead_letter::DeadLetters;
use crate::error::ConnectorError;
use crate::json::JsonDecoder;

/// What to do with a record that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadData {
    Fail,
    Drop,
    DeadLetter,
}

impl BadData {
    /// Checks `bad_data` (and `dead_letter.path` when it asks for dead letters).
    pub fn check_options(options: &ConnectorOptions) -> Result<(), OptionProblem> {
        if let Some(b) = options.get("bad_data") {
            let policy = BadData::parse_with_dead_letter(b)
                .map_err(|m| OptionProblem::new(Some("bad_data"), m))?;
            if policy == BadData::DeadLetter && options.get("dead_letter.path").is_none() {
                return Err(OptionProblem::new(
                    Some("bad_data"),
                    "bad_data = 'dead_letter' needs dead_letter.path = '…' (a JSON-lines file)",
                ));
            }
        }
        Ok(())
    }

    /// The table's policy and, for `dead_letter`, the opened dead-letter file.
    pub fn open(
        table: &str,
        options: &ConnectorOptions,
    ) -> Result<(BadData, Option<DeadLetters>), ConnectorError> {
        BadData::check_options(options)
            .map_err(|p| ConnectorError::Config(format!("table {table}: {}", p.message)))?;
        let policy = BadData::parse_with_dead_letter(options.get("bad_data").unwrap_or("fail"))
            .map_err(ConnectorError::Config)?;
        let letters = match (policy, options.get("dead_letter.path")) {
            (BadData::DeadLetter, Some(path)) => Some(DeadLetters::open(path)?),
            _ => None,
        };
        Ok((policy, letters))
    }

    /// For sources that can keep dead letters.
    pub fn parse_with_dead_letter(s: &str) -> Result<Self, String> {
        match s {
            "dead_letter" => Ok(BadData::DeadLetter),
            other => BadData::parse(other).map_err(|_| {
                format!("bad_data must be 'fail', 'drop' or 'dead_letter', not '{other}'")
            }),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(BadData::Fail),
            "drop" => Ok(BadData::Drop),
            "dead_letter" => Err("bad_data = 'dead_letter' is not available here".into()),
            other => Err(format!("bad_data must be 'fail' or 'drop', not '{other}'")),
        }
    }
}

pub struct FileSource {
    table: String,
    path: String,
    reader: BufReader<File>,
    schema: SchemaRef,
    decoder: JsonDecoder,
    batch_size: usize,
    bad_data: BadData,
    dead_letters: Option<DeadLetters>,
    line_no: u64,
    /// Bytes read into returned batches (and skipped blank or bad lines).
    offset: u64,
    metrics: Arc<JobMetrics>,
    buf: Vec<u8>,
    ends: Vec<usize>,
    line_numbers: Vec<u64>,
}

impl FileSource {
    pub fn open(
        table: &str,
        options: &ConnectorOptions,
        schema: SchemaRef,
        metrics: Arc<JobMetrics>,
    ) -> Result<Self, ConnectorError> {
        let path = options.get("path").unwrap_or_default().to_string();
        let file = File::open(&path)
            .map_err(|e| ConnectorError::Io(format!("table {table}: cannot open {path}: {e}")))?;
        let batch_size = options
            .get("batch_size")
            .and_then(|b| b.parse().ok())
            .unwrap_or(8192);
        let (bad_data, dead_letters) = BadData::open(table, options)?;
        let decoder = JsonDecoder::new(schema.clone(), batch_size)
            .map_err(|e| ConnectorError::Config(format!("table {table}: {e}")))?;
        Ok(FileSource {
            table: table.to_string(),
            path,
            reader: BufReader::with_capacity(1 << 20, file),
            schema,
            decoder,
            batch_size,
            bad_data,
            dead_letters,
            line_no: 0,
            offset: 0,
            metrics,
            buf: Vec::new(),
            ends: Vec::new(),
            line_numbers: Vec::new(),
        })
    }
}

impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Positions {
        Positions::from([
            ("bytes".to_string(), self.offset as i64),
            ("line".to_string(), self.line_no as i64),
        ])
    }

    fn seek(&mut self, position: &Positions) -> Result<()> {
        let Some(&bytes) = position.get("bytes") else {
            return Ok(());
        };
        self.reader
            .seek(SeekFrom::Start(bytes.max(0) as u64))
            .map_err(|e| RuntimeError::External(format!("reading {}: {e}", self.path)))?;
        self.offset = bytes.max(0) as u64;
        self.line_no = position.get("line").copied().unwrap_or(0).max(0) as u64;
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            self.buf.clear();
            self.ends.clear();
            self.line_numbers.clear();
            while self.ends.len() < self.batch_size {
                let start = self.buf.len();
                let n = self
                    .reader
                    .read_until(b'\n', &mut self.buf)
                    .map_err(|e| RuntimeError::External(format!("reading {}: {e}", self.path)))?;
                if n == 0 {
                    break;
                }
                self.offset += n as u64;
                self.line_no += 1;
                let line = &self.buf[start..];
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    self.buf.truncate(start);
                    continue;
                }
                self.ends.push(self.buf.len());
                self.line_numbers.push(self.line_no);
            }
            if self.ends.is_empty() {
                return Ok(None);
            }
            let mut records: Vec<&[u8]> = Vec::with_capacity(self.ends.len());
            let mut start = 0;
            for &end in &self.ends {
                records.push(&self.buf[start..end]);
                start = end;
            }
            let (batch, bad) = self
                .decoder
                .decode_lines(&records)
                .map_err(|e| RuntimeError::Internal(format!("json decoder: {e}")))?;
            if let Some(first) = bad.first() {
                match self.bad_data {
                    BadData::Fail => {
                        return Err(RuntimeError::User(format!(
                            "table {}: {} line {}: {} (set bad_data = 'drop' to skip bad records)",
                            self.table, self.path, self.line_numbers[first.index], first.error
                        )));
                    }
                    BadData::Drop | BadData::DeadLetter => {
                        for b in &bad {
                            if let Some(dl) = self.dead_letters.as_mut() {
                                dl.write(
                                    records[b.index],
                                    &b.error,
                                    &self.path,
                                    0,
                                    self.line_numbers[b.index] as i64,
                                )?;
                            }
                            tracing::debug!(
                                table = %self.table,
                                line = self.line_numbers[b.index],
                                error = %b.error,
                                "dropped a bad record"
                            );
                        }
                        self.metrics.add_bad_records(bad.iter().map(|b| {
                            sluice_runtime::BadRecord::new(
                                &self.table,
                                &self.path,
                                0,
                                self.line_numbers[b.index] as i64,
                                &b.error,
                                records[b.index],
                            )
                        }));
                    }
                }
            }
            if let Some(b) = batch {
                return Ok(Some(b));
            }
        }
    }
}
