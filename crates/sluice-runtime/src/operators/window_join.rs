//! Window join: both sides' rows are held per window (by the window's end); when the
//! watermark passes a window's end its rows are joined on the keys, once, and an outer
//! join's unmatched rows are emitted with NULLs. Rows of a window already joined are
//! late.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::{Message, Watermark};

use crate::error::Result;
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::join_state::{
    KeyEncoder, SideRows, joined, meeting_condition, pack, padded, row_times, side_only,
    take_columns, take_rows, unpack,
};
use crate::plan::JoinPlan;

pub struct WindowJoin {
    plan: JoinPlan,
    encoders: [KeyEncoder; 2],
    /// Per window end: each side's rows.
    windows: BTreeMap<i64, [Vec<RecordBatch>; 2]>,
    watermark: Watermark,
    late: Arc<AtomicU64>,
}

impl WindowJoin {
    pub fn new(plan: JoinPlan, late: Arc<AtomicU64>) -> Result<Self> {
        let encoders = [
            KeyEncoder::new(&plan.left_keys, &plan.left_schema, plan.null_equals_null)?,
            KeyEncoder::new(&plan.right_keys, &plan.right_schema, plan.null_equals_null)?,
        ];
        Ok(WindowJoin {
            plan,
            encoders,
            windows: BTreeMap::new(),
            watermark: Watermark::MIN,
            late,
        })
    }

    fn time_of(&self, side: usize) -> (Option<usize>, i64) {
        let col = if side == 0 {
            self.plan.left_time
        } else {
            self.plan.right_time
        };
        (col, self.plan.time_offset_ms)
    }

    /// Joins one window's rows and emits the result.
    fn close(&self, sides: [Vec<RecordBatch>; 2], out: &mut Collector) -> Result<()> {
        let [l, r] = sides;
        let left = concat_batches(&self.plan.left_schema, &l)?;
        let right = concat_batches(&self.plan.right_schema, &r)?;
        let mut held = SideRows::new(self.plan.right_schema.clone());
        let rkeys = self.encoders[1].encode(&right)?;
        let n_right = right.num_rows();
        held.insert(
            right.clone(),
            &rkeys,
            vec![false; n_right],
            vec![i64::MAX; n_right],
        );
        let lkeys = self.encoders[0].encode(&left)?;
        let (probe, refs) = held.probe(&lkeys);
        let lcols = take_columns(&left, &probe)?;
        let rcols = held.gather(&refs)?;
        let (lcols, rcols, probe, refs) = meeting_condition(&self.plan, lcols, rcols, probe, refs)?;
        let n = probe.len();
        match self.plan.kind.semi_side() {
            Some(0) => {
                let mut rows: Vec<u32> = probe.clone();
                rows.dedup();
                if !rows.is_empty() {
                    let n = rows.len();
                    out.batch(side_only(&self.plan, take_columns(&left, &rows)?, n)?);
                }
            }
            Some(_) => {
                let mut rows: Vec<u32> = refs.iter().map(|r| r.1).collect();
                rows.sort_unstable();
                rows.dedup();
                if !rows.is_empty() {
                    let n = rows.len();
                    out.batch(side_only(&self.plan, take_columns(&right, &rows)?, n)?);
                }
            }
            None if self.plan.kind.one_side() => {}
            None if n > 0 => out.batch(joined(&self.plan, lcols, rcols, n)?),
            None => {}
        }
        if self.plan.kind.keeps_left() {
            let mut met = vec![false; left.num_rows()];
            for &p in &probe {
                met[p as usize] = true;
            }
            let rows: Vec<u32> = (0..left.num_rows() as u32)
                .filter(|&i| !met[i as usize])
                .collect();
            if !rows.is_empty() {
                out.batch(padded(&self.plan, &take_rows(&left, &rows)?, true)?);
            }
        }
        if self.plan.kind.keeps_right() {
            let mut met = vec![false; n_right];
            for &(_, row) in &refs {
                met[row as usize] = true;
            }
            let rows: Vec<u32> = (0..n_right as u32).filter(|&i| !met[i as usize]).collect();
            if !rows.is_empty() {
                out.batch(padded(&self.plan, &take_rows(&right, &rows)?, false)?);
            }
        }
        Ok(())
    }
}

impl Operator for WindowJoin {
    fn name(&self) -> &str {
        "window join"
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.process_port(0, batch, out)
    }

    fn process_port(
        &mut self,
        port: usize,
        batch: RecordBatch,
        _out: &mut Collector,
    ) -> Result<()> {
        let side = port.min(1);
        let (col, offset) = self.time_of(side);
        let ends = row_times(&batch, col, offset)?;
        let w = self.watermark.millis();
        let mut by_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        let mut late = 0u64;
        for (r, &end) in ends.iter().enumerate() {
            if end <= w || end == i64::MAX {
                late += 1;
            } else {
                by_window.entry(end).or_default().push(r as u32);
            }
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        for (end, rows) in by_window {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_rows(&batch, &rows)?
            };
            self.windows.entry(end).or_default()[side].push(part);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            while let Some(entry) = self.windows.first_entry() {
                if *entry.key() > watermark.millis() && watermark != Watermark::MAX {
                    break;
                }
                let sides = entry.remove();
                self.close(sides, out)?;
            }
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let mut batches = Vec::new();
        for sides in self.windows.values() {
            for (side, rows) in sides.iter().enumerate() {
                for b in rows {
                    let n = b.num_rows();
                    batches.push(pack(&self.plan, side == 0, b, vec![false; n], vec![0; n])?);
                }
            }
        }
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis() }),
            batches,
        })
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        if let Some(w) = state.values.get("watermark").and_then(|v| v.as_i64()) {
            self.watermark = Watermark::from_millis(w);
        }
        for b in &state.batches {
            for (left_side, rows, _, _) in unpack(&self.plan, b)? {
                let side = usize::from(!left_side);
                let (col, offset) = self.time_of(side);
                let ends = row_times(&rows, col, offset)?;
                let mut by_window: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
                for (r, &end) in ends.iter().enumerate() {
                    by_window.entry(end).or_default().push(r as u32);
                }
                for (end, idx) in by_window {
                    self.windows.entry(end).or_default()[side].push(take_rows(&rows, &idx)?);
                }
            }
        }
        Ok(())
    }
}
