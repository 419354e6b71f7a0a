//! Interval and regular joins of two streams: each arriving row meets the other side's
//! held rows with an equal key at once. An interval join (`r.t BETWEEN l.t + lower AND
//! l.t + upper`) lets go of rows once the watermark says nothing more can meet them, and
//! only then emits an outer join's unmatched rows; a regular join holds rows for ever,
//! or for `state.ttl` of event time. An outer regular join is an updating result: an
//! unmatched row goes out padded at once (`+I`) and is taken back (`-D`) just before its
//! first match goes out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::record_batch::RecordBatch;
use sluice_types::changelog::{op_column, with_op};
use sluice_types::{Message, RowKind, Watermark};

use crate::error::Result;
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::join_state::{
    KeyEncoder, SideRows, TimeOf, joined, meeting_condition, pack, padded, row_times, side_only,
    take_columns, take_rows, unpack,
};
use crate::plan::{JoinPlan, JoinTime};

/// The time of a row that came before any watermark, under a TTL by arrival.
const UNSTAMPED: i64 = i64::MAX - 1;

pub struct StreamJoin {
    plan: JoinPlan,
    sides: [SideRows; 2],
    encoders: [KeyEncoder; 2],
    times: [TimeOf; 2],
    watermark: Watermark,
    late: Arc<AtomicU64>,
    /// Per side, whether its input has ended: the other side's rows need not be kept.
    ended: [bool; 2],
    /// Rows held, for /metrics.
    held: Arc<std::sync::atomic::AtomicI64>,
    /// Outer without a time bound: the output is a changelog.
    updating: bool,
}

impl StreamJoin {
    pub fn new(
        plan: JoinPlan,
        late: Arc<AtomicU64>,
        held: Arc<std::sync::atomic::AtomicI64>,
    ) -> Result<Self> {
        let updating = plan.updating();
        let encoders = [
            KeyEncoder::new(&plan.left_keys, &plan.left_schema, plan.null_equals_null)?,
            KeyEncoder::new(&plan.right_keys, &plan.right_schema, plan.null_equals_null)?,
        ];
        Ok(StreamJoin {
            sides: [
                SideRows::new(plan.left_schema.clone()),
                SideRows::new(plan.right_schema.clone()),
            ],
            encoders,
            times: [(plan.left_time, 0), (plan.right_time, 0)],
            plan,
            watermark: Watermark::MIN,
            late,
            ended: [false; 2],
            held,
            updating,
        })
    }

    /// Puts out rows of `kind` (a changelog's `__op` added when the output is one).
    fn emit(&self, out: &mut Collector, batch: RecordBatch, kind: RowKind) -> Result<()> {
        if !self.updating {
            out.batch(batch);
            return Ok(());
        }
        let mut cols = batch.columns().to_vec();
        cols.push(op_column(kind, batch.num_rows()));
        out.batch(RecordBatch::try_new(
            with_op(&self.plan.output_schema),
            cols,
        )?);
        Ok(())
    }

    fn report_held(&self) {
        self.held.store(self.rows_held() as i64, Ordering::Relaxed);
    }

    /// Rows held, both sides.
    pub fn rows_held(&self) -> usize {
        self.sides[0].len() + self.sides[1].len()
    }

    fn keeps(&self, side: usize) -> bool {
        if side == 0 {
            self.plan.kind.keeps_left()
        } else {
            self.plan.kind.keeps_right()
        }
    }

    /// Lets go of what the watermark has made unreachable; emits outer rows.
    fn expire(&mut self, wm: Watermark, out: &mut Collector) -> Result<()> {
        let w = wm.millis();
        let bounds = match self.plan.time {
            JoinTime::Interval { lower_ms, upper_ms } if wm == Watermark::MAX => {
                let _ = (lower_ms, upper_ms);
                [i64::MAX, i64::MAX]
            }
            // A left row at t meets right rows up to t + upper; a right row at t meets
            // left rows from t - upper to t - lower.
            JoinTime::Interval { lower_ms, upper_ms } => {
                [w.saturating_sub(upper_ms), w.saturating_add(lower_ms)]
            }
            JoinTime::Regular { ttl_ms: Some(ttl) } => {
                let b = w.saturating_sub(ttl);
                [b, b]
            }
            JoinTime::Regular { ttl_ms: None } | JoinTime::Window | JoinTime::Lookup { .. } => {
                return Ok(());
            }
        };
        for (side, bound) in bounds.into_iter().enumerate() {
            if self.times[side].0.is_none() && !self.ttl_by_arrival() {
                continue;
            }
            // An updating join's unmatched rows went out when they came.
            let keeps = self.keeps(side) && !self.updating;
            if let Some(rows) = self.sides[side].expire(bound, keeps)? {
                out.batch(padded(&self.plan, &rows, side == 0)?);
            }
        }
        Ok(())
    }

    /// A regular join with a TTL over a side without a time column: its rows are timed
    /// by the watermark when they arrive.
    fn ttl_by_arrival(&self) -> bool {
        matches!(self.plan.time, JoinTime::Regular { ttl_ms: Some(_) })
    }

    /// How far the output's watermark stays behind the input's: joined rows carry
    /// times up to this much older than the rows that made them.
    fn slack(&self) -> i64 {
        match self.plan.time {
            JoinTime::Interval { lower_ms, upper_ms } => upper_ms.max(-lower_ms).max(0),
            _ => 0,
        }
    }
}

impl Operator for StreamJoin {
    fn name(&self) -> &str {
        "join"
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        self.process_port(0, batch, out)
    }

    fn process_port(&mut self, port: usize, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let side = port.min(1);
        let other = 1 - side;
        let mut batch = batch;
        let mut times = row_times(&batch, self.times[side].0, self.times[side].1)?;
        if self.times[side].0.is_none() && self.ttl_by_arrival() {
            let stamp = if self.watermark == Watermark::MIN {
                UNSTAMPED
            } else {
                self.watermark.millis()
            };
            times = vec![stamp; batch.num_rows()];
        }
        if matches!(self.plan.time, JoinTime::Interval { .. }) {
            // A row older than the watermark may have missed rows already let go of.
            let w = self.watermark.millis();
            let on_time: Vec<u32> = (0..batch.num_rows())
                .filter(|&r| times[r] >= w && times[r] != i64::MAX)
                .map(|r| r as u32)
                .collect();
            if on_time.len() < batch.num_rows() {
                self.late
                    .fetch_add((batch.num_rows() - on_time.len()) as u64, Ordering::Relaxed);
                batch = take_rows(&batch, &on_time)?;
                times = on_time.iter().map(|&r| times[r as usize]).collect();
            }
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.encoders[side].encode(&batch)?;
        let (probe, held) = self.sides[other].probe(&keys);
        let mine = take_columns(&batch, &probe)?;
        let theirs = self.sides[other].gather(&held)?;
        let (left, right) = if side == 0 {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let (left, right, probe, held) = meeting_condition(&self.plan, left, right, probe, held)?;
        let n = probe.len();
        let mut matched = vec![false; batch.num_rows()];
        for r in &probe {
            matched[*r as usize] = true;
        }
        match self.plan.kind.semi_side() {
            // This side's rows that found a match go out, each once.
            Some(s) if s == side => {
                let rows: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|&r| matched[r as usize])
                    .collect();
                if !rows.is_empty() {
                    let n = rows.len();
                    out.batch(side_only(&self.plan, take_columns(&batch, &rows)?, n)?);
                }
            }
            // Held rows of the other side meeting their first match go out.
            Some(_) => {
                let newly = self.sides[other].mark_new(&held);
                if !newly.is_empty() {
                    let n = newly.len();
                    out.batch(side_only(&self.plan, self.sides[other].gather(&newly)?, n)?);
                }
            }
            None if self.plan.kind.one_side() => {} // anti: at expiry
            None if n > 0 => {
                if self.updating && self.keeps(other) {
                    // Held rows meeting their first match: their padded rows are taken
                    // back first.
                    let newly = self.sides[other].mark_new(&held);
                    if !newly.is_empty() {
                        let rows = self.sides[other].gather(&newly)?;
                        let n = newly.len();
                        let rows = RecordBatch::try_new_with_options(
                            self.sides[other].schema(),
                            rows,
                            &datafusion::arrow::array::RecordBatchOptions::new()
                                .with_row_count(Some(n)),
                        )?;
                        self.emit(out, padded(&self.plan, &rows, other == 0)?, RowKind::Delete)?;
                    }
                }
                self.emit(out, joined(&self.plan, left, right, n)?, RowKind::Insert)?;
            }
            None => {}
        }
        self.sides[other].mark(&held);
        if self.updating && self.keeps(side) {
            // This side's rows without a match go out padded now, taken back later.
            let unmatched: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&r| !matched[r as usize])
                .collect();
            if !unmatched.is_empty() {
                let rows = take_rows(&batch, &unmatched)?;
                self.emit(out, padded(&self.plan, &rows, side == 0)?, RowKind::Insert)?;
            }
        }
        if self.ended[other] {
            if self.updating {
                return Ok(());
            }
            // Nothing more comes from the other side: these rows can meet nothing else.
            if self.keeps(side) {
                let unmatched: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|&r| !matched[r as usize])
                    .collect();
                if !unmatched.is_empty() {
                    out.batch(padded(
                        &self.plan,
                        &take_rows(&batch, &unmatched)?,
                        side == 0,
                    )?);
                }
            }
            return Ok(());
        }
        self.sides[side].insert(batch, &keys, matched, times);
        self.sides[side].compact_if_fragmented(&self.encoders[side])?;
        self.report_held();
        Ok(())
    }

    fn on_port_end(&mut self, port: usize, out: &mut Collector) -> Result<()> {
        let side = port.min(1);
        self.ended[side] = true;
        // The other side's held rows can meet nothing more; an outer side's unmatched
        // rows go out now.
        let other = 1 - side;
        if self.keeps(other)
            && !self.updating
            && let Some(rows) = self.sides[other].expire(i64::MAX, true)?
        {
            out.batch(padded(&self.plan, &rows, other == 0)?);
        }
        self.sides[other] = SideRows::new(if other == 0 {
            self.plan.left_schema.clone()
        } else {
            self.plan.right_schema.clone()
        });
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            if self.watermark == Watermark::MIN && self.ttl_by_arrival() {
                for side in &mut self.sides {
                    side.stamp(UNSTAMPED, watermark.millis());
                }
            }
            self.watermark = watermark;
            self.expire(watermark, out)?;
            self.report_held();
        }
        let passed = if watermark == Watermark::MAX {
            watermark
        } else {
            Watermark::from_millis(watermark.millis().saturating_sub(self.slack()))
        };
        out.message(Message::Watermark(passed));
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Snapshot> {
        let mut batches = Vec::new();
        for side in 0..2 {
            if let Some((rows, matched, times)) = self.sides[side].rows()? {
                batches.push(pack(&self.plan, side == 0, &rows, matched, times)?);
            }
        }
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis(), "ended": self.ended }),
            batches,
        })
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        if let Some(w) = state.values.get("watermark").and_then(|v| v.as_i64()) {
            self.watermark = Watermark::from_millis(w);
        }
        if let Some(e) = state
            .values
            .get("ended")
            .and_then(|v| serde_json::from_value::<[bool; 2]>(v.clone()).ok())
        {
            self.ended = e;
        }
        for b in &state.batches {
            for (left_side, rows, matched, times) in unpack(&self.plan, b)? {
                let side = usize::from(!left_side);
                self.sides[side].restore(rows, matched, times, &self.encoders[side])?;
            }
        }
        Ok(())
    }
}
