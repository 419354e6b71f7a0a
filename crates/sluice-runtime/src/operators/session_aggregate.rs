//! Session window aggregate: rows are kept per group key until their session closes
//! (the watermark passes the last event plus the gap); then the session's rows are
//! aggregated once and emitted with the session's start and end. Two events less than a
//! gap apart share a session, so a late-arriving event may join two open sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, TimestampMillisecondArray};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_plan::PhysicalExpr;
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::groups::{AggregateInput, GroupedAggregation, group_schema};
use crate::plan::{AggregatePlan, WindowKind};

#[derive(Clone, Copy)]
struct Entry {
    time: i64,
    batch: u32,
    row: u32,
}

pub struct SessionAggregate {
    plan: AggregatePlan,
    gap_ms: i64,
    key_exprs: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    group_schema: SchemaRef,
    start_col: Option<usize>,
    end_col: Option<usize>,
    pending: Vec<RecordBatch>,
    keys: HashMap<Box<[u8]>, Vec<Entry>>,
    live_rows: usize,
    total_rows: usize,
    watermark: Watermark,
    late: Arc<AtomicU64>,
}

impl SessionAggregate {
    pub fn new(plan: AggregatePlan, late: Arc<AtomicU64>) -> Result<Self> {
        let WindowKind::Session { gap_ms } = plan.window else {
            return Err(RuntimeError::Internal("not a session window".into()));
        };
        let key_exprs = plan.key_exprs();
        let fields = key_exprs
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(&plan.input_schema)?)))
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        let converter = RowConverter::new(fields)?;
        let group_schema = group_schema(&plan)?;
        let start_col = plan.input_schema.index_of("window_start").ok();
        let end_col = plan.input_schema.index_of("window_end").ok();
        Ok(SessionAggregate {
            plan,
            gap_ms,
            key_exprs,
            converter,
            group_schema,
            start_col,
            end_col,
            pending: Vec::new(),
            keys: HashMap::new(),
            live_rows: 0,
            total_rows: 0,
            watermark: Watermark::MIN,
            late,
        })
    }

    fn close_until(&mut self, wm: Watermark, out: &mut Collector) -> Result<()> {
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
            return Ok(());
        }
        self.live_rows -= closed.len();
        let refs: Vec<&RecordBatch> = self.pending.iter().collect();
        let rows = interleave_record_batch(&refs, &closed)?;
        let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
        if let Some(i) = self.start_col {
            columns[i] = Arc::new(TimestampMillisecondArray::from(
                bounds.iter().map(|b| b.0).collect::<Vec<_>>(),
            ));
        }
        if let Some(i) = self.end_col {
            columns[i] = Arc::new(TimestampMillisecondArray::from(
                bounds.iter().map(|b| b.1).collect::<Vec<_>>(),
            ));
        }
        let rows = RecordBatch::try_new(rows.schema(), columns)?;
        let mut agg = GroupedAggregation::new(&self.plan, &self.group_schema)?;
        agg.update(&AggregateInput::evaluate(&self.plan, &rows)?)?;
        out.batch(agg.emit()?);
        self.compact()?;
        Ok(())
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

    pub fn buffered_rows(&self) -> usize {
        self.live_rows
    }

    /// Keeps a batch's rows under their keys; with `check_late`, rows of sessions that
    /// may already have closed are dropped and counted.
    fn insert(&mut self, batch: RecordBatch, check_late: bool) -> Result<()> {
        let n = batch.num_rows();

        if n == 0 {
            return Ok(());
        }
        let win = self.plan.group_exprs[self.plan.window_key]
            .evaluate(&batch)?
            .into_array(n)?;
        let win = win
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal("window key is not a timestamp".into()))?
            .clone();
        let key_cols = self
            .key_exprs
            .iter()
            .map(|e| e.evaluate(&batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&key_cols)?;
        let batch_no = self.pending.len() as u32;
        let mut kept = 0usize;
        let mut late = 0u64;
        for i in 0..n {
            if win.is_null(i) {
                continue;
            }
            let mut t = win.value(i);
            if self.plan.window_key_is_end {
                t -= self.gap_ms;
            }
            if check_late
                && (WindowKind::Session {
                    gap_ms: self.gap_ms,
                })
                .is_late(t, self.watermark.millis())
            {
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
}

impl Operator for SessionAggregate {
    fn name(&self) -> &str {
        "session aggregate"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        self.insert(batch, true)
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
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

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        for b in state.batches {
            self.insert(b, false)?;
        }
        if let Some(wm) = state
            .values
            .get("watermark")
            .and_then(serde_json::Value::as_i64)
        {
            self.watermark = Watermark::from_millis(wm);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.close_until(watermark, out)?;
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }
}
