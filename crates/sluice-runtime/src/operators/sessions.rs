//! Rows kept per key until their session closes (the watermark passes the last event
//! plus the gap): the buffer behind the session aggregate and the session assigner. Two
//! events less than a gap apart share a session, so a late-arriving event may join two
//! open sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{Schema, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_plan::PhysicalExpr;
use sluice_types::Watermark;

use crate::error::{Result, RuntimeError};
use crate::operator::Snapshot;
use crate::plan::WindowKind;

#[derive(Clone, Copy)]
struct Entry {
    time: i64,
    batch: u32,
    row: u32,
}

/// The rows of sessions that closed, with each row's session `(start, end)`.
pub(crate) struct Closed {
    pub rows: RecordBatch,
    pub bounds: Vec<(i64, i64)>,
}

impl Closed {
    /// The rows with the columns `start` and `end` (where present) set to their session's
    /// bounds.
    pub fn with_bounds(&self, start: Option<usize>, end: Option<usize>) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = self.rows.columns().to_vec();
        let col = |f: fn(&(i64, i64)) -> i64| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(
                self.bounds.iter().map(f).collect::<Vec<_>>(),
            ))
        };
        if let Some(i) = start {
            columns[i] = col(|b| b.0);
        }
        if let Some(i) = end {
            columns[i] = col(|b| b.1);
        }
        Ok(RecordBatch::try_new(self.rows.schema(), columns)?)
    }
}

pub(crate) struct Sessions {
    gap_ms: i64,
    /// Each row's event time: this expression less `offset`.
    time: Arc<dyn PhysicalExpr>,
    offset: i64,
    /// The greatest watermark seen: rows of sessions it may have closed are late.
    watermark: Watermark,
    late: Arc<AtomicU64>,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    pending: Vec<RecordBatch>,
    keys: super::StateMap<Box<[u8]>, Vec<Entry>>,
    live_rows: usize,
    total_rows: usize,
}

impl Sessions {
    /// Sessions of `gap_ms` per value of `key_exprs` over rows of `schema`, each row at
    /// the time `time` less `offset` gives it; late rows are counted in `late`.
    pub fn new(
        gap_ms: i64,
        key_exprs: Vec<Arc<dyn PhysicalExpr>>,
        (time, offset): (Arc<dyn PhysicalExpr>, i64),
        schema: &Schema,
        late: Arc<AtomicU64>,
    ) -> Result<Self> {
        let fields = key_exprs
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(schema)?)))
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(Sessions {
            gap_ms,
            time,
            offset,
            watermark: Watermark::MIN,
            late,
            key_exprs,
            converter: RowConverter::new(fields)?,
            pending: Vec::new(),
            keys: super::StateMap::default(),
            live_rows: 0,
            total_rows: 0,
        })
    }

    /// Keeps a batch's rows under their keys, each at its event time (rows without one
    /// are skipped). With `check_late`, rows of sessions that may already have closed are
    /// dropped and counted as late.
    pub fn insert(&mut self, batch: RecordBatch, check_late: bool) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = self.time.evaluate(&batch)?.into_array(n)?;
        let times = times
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal("a session's time is not a timestamp".into()))?;
        let key_cols = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&key_cols)?;
        let batch_no = self.pending.len() as u32;
        let window = WindowKind::Session {
            gap_ms: self.gap_ms,
        };
        let mut kept = 0usize;
        let mut late = 0u64;
        for i in 0..n {
            if times.is_null(i) {
                continue;
            }
            let t = times.value(i) - self.offset;
            if check_late && window.is_late(t, self.watermark.millis()) {
                late += 1;
                continue;
            }
            let entry = Entry {
                time: t,
                batch: batch_no,
                row: i as u32,
            };
            let row = rows.row(i);
            match self.keys.get_mut(row.as_ref()) {
                Some(v) => v.push(entry),
                None => {
                    self.keys.insert(row.as_ref().into(), vec![entry]);
                }
            }
            kept += 1;
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        self.pending.push(batch);
        self.live_rows += kept;
        self.total_rows += n;
        Ok(())
    }

    /// Takes a newer watermark: the rows of every session it closes come out.
    pub fn advance(&mut self, watermark: Watermark) -> Result<Option<Closed>> {
        if watermark <= self.watermark {
            return Ok(None);
        }
        self.watermark = watermark;
        self.close_until(watermark)
    }

    /// Takes out the rows of every session that ends at or before `wm` (all of them at
    /// the end of the input).
    fn close_until(&mut self, wm: Watermark) -> Result<Option<Closed>> {
        let mut closed: Vec<(usize, usize)> = Vec::new();
        let mut bounds: Vec<(i64, i64)> = Vec::new();
        let gap = self.gap_ms;
        self.keys.retain(|_, entries| {
            entries.sort_by_key(|e| (e.time, e.batch, e.row));
            let mut cut = 0; // entries[..cut] belong to closed sessions
            let mut s = 0;
            while s < entries.len() {
                let mut e = s;
                while e + 1 < entries.len() && entries[e + 1].time - entries[e].time < gap {
                    e += 1;
                }
                let (start, end) = (entries[s].time, entries[e].time + gap);
                if end > wm.millis() && wm != Watermark::MAX {
                    break;
                }
                for x in &entries[s..=e] {
                    closed.push((x.batch as usize, x.row as usize));
                    bounds.push((start, end));
                }
                cut = e + 1;
                s = e + 1;
            }
            entries.drain(..cut);
            !entries.is_empty()
        });
        if closed.is_empty() {
            return Ok(None);
        }
        self.live_rows -= closed.len();
        let refs: Vec<&RecordBatch> = self.pending.iter().collect();
        let rows = interleave_record_batch(&refs, &closed)?;
        self.compact()?;
        Ok(Some(Closed { rows, bounds }))
    }

    /// Rewrites the kept rows into one batch once most buffered rows are gone.
    fn compact(&mut self) -> Result<()> {
        if self.live_rows == 0 {
            self.pending.clear();
            self.total_rows = 0;
            return Ok(());
        }
        if self.live_rows * 2 > self.total_rows {
            return Ok(());
        }
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(self.live_rows);
        for entries in self.keys.values_mut() {
            for e in entries.iter_mut() {
                order.push((e.batch as usize, e.row as usize));
                e.batch = 0;
                e.row = (order.len() - 1) as u32;
            }
        }
        let refs: Vec<&RecordBatch> = self.pending.iter().collect();
        let batch = interleave_record_batch(&refs, &order)?;
        self.pending = vec![batch];
        self.total_rows = self.live_rows;
        Ok(())
    }

    /// The rows of open sessions, as they came in, and the watermark: a checkpoint.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut order: Vec<(usize, usize)> = Vec::with_capacity(self.live_rows);
        for entries in self.keys.values() {
            order.extend(entries.iter().map(|e| (e.batch as usize, e.row as usize)));
        }
        let batches = if order.is_empty() {
            Vec::new()
        } else {
            let refs: Vec<&RecordBatch> = self.pending.iter().collect();
            vec![interleave_record_batch(&refs, &order)?]
        };
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis() }),
            batches,
        })
    }

    /// Takes back a checkpoint: its watermark, and its rows without the lateness check.
    pub fn restore(&mut self, state: Snapshot) -> Result<()> {
        if let Some(wm) = state
            .values
            .get("watermark")
            .and_then(serde_json::Value::as_i64)
        {
            self.watermark = Watermark::from_millis(wm);
        }
        for b in state.batches {
            self.insert(b, false)?;
        }
        Ok(())
    }
}
