//! File source: JSON lines, read in batches; a bounded source. At parallelism above 1 a
//! file is split into chunks of byte ranges, dealt out in turn to tasks that read them
//! side by side (so that they move through the file's event time together). Bad records follow the table's
//! `bad_data` policy (`fail` by default, or `drop`, counted).

mod range;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{JobMetrics, Positions, Result, RuntimeError, Source};
use sluice_types::{ConnectorOptions, OptionProblem};

use crate::dead_letter::DeadLetters;
use crate::error::ConnectorError;
use crate::json::JsonDecoder;
use range::ByteRange;

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

/// Bytes asked of the file at a time.
const READ_SIZE: usize = 1 << 20;

pub struct FileSource {
    table: String,
    path: String,
    file: File,
    schema: SchemaRef,
    decoder: JsonDecoder,
    batch_size: usize,
    bad_data: BadData,
    dead_letters: Option<DeadLetters>,
    /// Lines read since `lines_from` (or, reading the file whole, since its start).
    line_no: u64,
    /// The line number of `lines_from`, once known (counted only to report a bad line).
    line_base: Option<u64>,
    lines_from: u64,
    /// Bytes read into returned batches (and skipped blank or bad lines).
    offset: u64,
    /// The range this source reads, when the file is split; it reads to the end else.
    range: Option<ByteRange>,
    /// The ranges it reads after `range`, in order, and which part of the split it is.
    queue: Vec<ByteRange>,
    part: usize,
    /// Parts of a restored split file not yet handed to other sources by `split`.
    saved: Vec<Vec<(ByteRange, u64)>>,
    /// Bytes taken from the file so far (where the next read starts).
    file_pos: u64,
    metrics: Arc<JobMetrics>,
    /// Bytes read from the file; those before `pos` are in returned batches.
    block: Vec<u8>,
    pos: usize,
    eof: bool,
    /// The current chunk's records, as ranges of `block`.
    spans: Vec<(usize, usize)>,
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
            file,
            schema,
            decoder,
            batch_size,
            bad_data,
            dead_letters,
            line_no: 0,
            line_base: Some(0),
            lines_from: 0,
            offset: 0,
            range: None,
            queue: Vec::new(),
            part: 0,
            saved: Vec::new(),
            file_pos: 0,
            metrics,
            block: Vec::new(),
            pos: 0,
            eof: false,
            spans: Vec::new(),
            line_numbers: Vec::new(),
        })
    }
}

impl FileSource {
    fn io_error(&self, e: std::io::Error) -> RuntimeError {
        RuntimeError::External(format!("reading {}: {e}", self.path))
    }

    /// Reads from `next` on: to the end of the file, or of `range`.
    fn start_at(&mut self, next: u64, range: Option<ByteRange>) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(next))
            .map_err(|e| self.io_error(e))?;
        self.file_pos = next;
        self.offset = next;
        self.range = range;
        self.block.clear();
        self.pos = 0;
        self.eof = false;
        Ok(())
    }

    /// Takes part `part`'s ranges as saved (each with its next byte): reads from the
    /// first not finished, then those after it.
    fn take_part(&mut self, part: usize, ranges: &[(ByteRange, u64)]) -> Result<()> {
        let current = ranges
            .iter()
            .position(|(r, next)| *next < r.end)
            .unwrap_or(ranges.len().saturating_sub(1));
        let Some(&(range, next)) = ranges.get(current) else {
            return Ok(());
        };
        self.part = part;
        self.queue = ranges[current + 1..].iter().map(|(r, _)| *r).collect();
        self.line_base = None;
        self.lines_from = next;
        self.line_no = 0;
        self.start_at(next, Some(range))
    }

    /// Moves on to the next range of this part, if there is one.
    fn next_range(&mut self) -> Result<bool> {
        if self.queue.is_empty() {
            return Ok(false);
        }
        let range = self.queue.remove(0);
        self.line_base = None;
        self.lines_from = range.start;
        self.line_no = 0;
        self.start_at(range.start, Some(range))?;
        Ok(true)
    }

    /// Another source like this one, reading part `part`'s `ranges` from `next` (in the
    /// first).
    fn part(&self, part: usize, ranges: &[(ByteRange, u64)]) -> Result<FileSource> {
        let file = File::open(&self.path)
            .map_err(|e| RuntimeError::External(format!("cannot open {}: {e}", self.path)))?;
        let decoder = JsonDecoder::new(self.schema.clone(), self.batch_size)
            .map_err(|e| RuntimeError::Internal(format!("json decoder: {e}")))?;
        let mut source = FileSource {
            table: self.table.clone(),
            path: self.path.clone(),
            file,
            schema: self.schema.clone(),
            decoder,
            batch_size: self.batch_size,
            bad_data: self.bad_data,
            dead_letters: None,
            line_no: 0,
            line_base: None,
            lines_from: 0,
            offset: 0,
            range: None,
            queue: Vec::new(),
            part,
            saved: Vec::new(),
            file_pos: 0,
            metrics: self.metrics.clone(),
            block: Vec::new(),
            pos: 0,
            eof: false,
            spans: Vec::new(),
            line_numbers: Vec::new(),
        };
        source.take_part(part, ranges)?;
        Ok(source)
    }

    /// Appends the file's next bytes to `block`; at the end (of the file or the range),
    /// sets `eof`.
    fn read_more(&mut self) -> Result<()> {
        let len = self.block.len();
        let want = match self.range {
            Some(r) => (r.end.saturating_sub(self.file_pos) as usize).min(READ_SIZE),
            None => READ_SIZE,
        };
        if want == 0 {
            self.eof = true;
            return Ok(());
        }
        self.block.resize(len + want, 0);
        let n = loop {
            match self.file.read(&mut self.block[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.block.truncate(len);
                    return Err(self.io_error(e));
                }
            }
        };
        self.block.truncate(len + n);
        self.file_pos += n as u64;
        self.eof = n == 0;
        Ok(())
    }
}

/// Newlines in the first `bytes` bytes of the file at `path`.
fn count_lines(path: &str, bytes: u64) -> std::io::Result<u64> {
    let mut file = File::open(path)?.take(bytes);
    let mut buf = vec![0u8; READ_SIZE];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

/// The offset just after the first newline at or after `at` (or the file's end).
fn line_end(file: &mut File, at: u64) -> std::io::Result<u64> {
    file.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = at;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(pos);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
    }
}

impl Source for FileSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Positions {
        match self.range {
            Some(r) => std::iter::once((r.key(self.part), self.offset as i64))
                .chain(
                    self.queue
                        .iter()
                        .map(|q| (q.key(self.part), q.start as i64)),
                )
                .collect(),
            None => Positions::from([
                ("bytes".to_string(), self.offset as i64),
                ("line".to_string(), self.line_no as i64),
            ]),
        }
    }

    fn seek(&mut self, position: &Positions) -> Result<()> {
        if let Some(mut parts) = ByteRange::saved(position) {
            // A split file: this source takes the first part, `split` the others.
            let first = parts.remove(0);
            self.saved = parts;
            return self.take_part(0, &first);
        }
        let Some(&bytes) = position.get("bytes") else {
            return Ok(());
        };
        self.start_at(bytes.max(0) as u64, None)?;
        self.line_no = position.get("line").copied().unwrap_or(0).max(0) as u64;
        Ok(())
    }

    fn split(&mut self, n: usize) -> Result<Vec<Box<dyn Source>>> {
        if !self.saved.is_empty() {
            // Restored: the ranges saved, as they were cut.
            let saved = std::mem::take(&mut self.saved);
            return saved
                .iter()
                .enumerate()
                .map(|(i, ranges)| Ok(Box::new(self.part(i + 1, ranges)?) as Box<dyn Source>))
                .collect();
        }
        // Only a file not yet read, and one dead-letter file per table.
        if self.range.is_some() || self.offset > 0 || self.dead_letters.is_some() || n < 2 {
            return Ok(Vec::new());
        }
        let size = self.file.metadata().map_err(|e| self.io_error(e))?.len();
        let mut probe = File::open(&self.path).map_err(|e| self.io_error(e))?;
        // At least 8 chunks a part, so that the parts stay close in the file.
        let chunks = (size.div_ceil(range::CHUNK_BYTES) as usize).max(8 * n);
        let ranges = range::cut(size, chunks, |at| line_end(&mut probe, at))
            .map_err(|e| self.io_error(e))?;
        if ranges.len() < 2 {
            return Ok(Vec::new());
        }
        let parts: Vec<Vec<(ByteRange, u64)>> = range::deal(&ranges, n)
            .into_iter()
            .map(|p| p.into_iter().map(|r| (r, r.start)).collect())
            .collect();
        self.take_part(0, &parts[0])?;
        parts[1..]
            .iter()
            .enumerate()
            .map(|(i, ranges)| Ok(Box::new(self.part(i + 1, ranges)?) as Box<dyn Source>))
            .collect()
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            self.block.drain(..self.pos);
            self.pos = 0;
            self.spans.clear();
            self.line_numbers.clear();
            let mut p = 0;
            while self.spans.len() < self.batch_size {
                let end = match memchr::memchr(b'\n', &self.block[p..]) {
                    Some(n) => p + n + 1,
                    None if !self.eof => {
                        self.read_more()?;
                        continue;
                    }
                    None if p < self.block.len() => self.block.len(),
                    None => break,
                };
                self.line_no += 1;
                if !self.block[p..end].iter().all(u8::is_ascii_whitespace) {
                    self.spans.push((p, end));
                    self.line_numbers.push(self.line_no);
                }
                p = end;
            }
            self.offset += p as u64;
            self.pos = p;
            if self.spans.is_empty() {
                if self.next_range()? {
                    continue;
                }
                return Ok(None);
            }
            let records: Vec<&[u8]> = self.spans.iter().map(|&(a, b)| &self.block[a..b]).collect();
            let (batch, bad) = self
                .decoder
                .decode_lines(&records)
                .map_err(|e| RuntimeError::Internal(format!("json decoder: {e}")))?;
            if !bad.is_empty() {
                // Line numbers in the file: those before this source's first counted
                // once, when first needed.
                if self.line_base.is_none() {
                    self.line_base = count_lines(&self.path, self.lines_from)
                        .inspect_err(|e| tracing::warn!("counting the lines of {}: {e}", self.path))
                        .ok();
                }
                let base = self.line_base.unwrap_or(0);
                for b in &bad {
                    self.line_numbers[b.index] += base;
                }
            }
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
