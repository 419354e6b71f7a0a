//! What joins share: one side's rows indexed by join key (with, per row, its time and
//! whether it has met a row of the other side), and the making of joined rows (the
//! join's extra condition, its projection, NULL padding for outer rows).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatchOptions, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{concat_batches, filter, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::JoinSide;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::{Result, RuntimeError};
use crate::plan::JoinPlan;

/// Join keys of a batch, as comparable bytes, and which rows have a key that can match.
pub struct EncodedKeys {
    rows: Rows,
    /// No key expressions: every row has the same (empty) key.
    keyless: bool,
    pub valid: Vec<bool>,
}

impl EncodedKeys {
    /// Row `i`'s key.
    pub fn key(&self, i: usize) -> &[u8] {
        if self.keyless {
            &[]
        } else {
            self.rows.row(i).data()
        }
    }
}

/// Turns a side's key expressions into comparable bytes.
pub struct KeyEncoder {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    converter: RowConverter,
    null_equals_null: bool,
}

impl KeyEncoder {
    pub fn new(
        exprs: &[Arc<dyn PhysicalExpr>],
        schema: &Schema,
        null_equals_null: bool,
    ) -> Result<Self> {
        let fields = exprs
            .iter()
            .map(|e| Ok(SortField::new(e.data_type(schema)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(KeyEncoder {
            exprs: exprs.to_vec(),
            converter: RowConverter::new(fields)?,
            null_equals_null,
        })
    }

    pub fn encode(&self, batch: &RecordBatch) -> Result<EncodedKeys> {
        let n = batch.num_rows();
        let cols = self
            .exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = self.converter.convert_columns(&cols)?;
        let valid = (0..n)
            .map(|r| self.null_equals_null || cols.iter().all(|c| c.is_valid(r)))
            .collect();
        Ok(EncodedKeys {
            rows,
            keyless: self.exprs.is_empty(),
            valid,
        })
    }
}

/// Each row's time from a timestamp column (plus an offset); rows without one get
/// `i64::MAX` (they never expire).
pub fn row_times(batch: &RecordBatch, column: Option<usize>, offset: i64) -> Result<Vec<i64>> {
    let Some(c) = column else {
        return Ok(vec![i64::MAX; batch.num_rows()]);
    };
    let times = batch
        .column(c)
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| RuntimeError::Internal("a join's time column is not a timestamp".into()))?;
    Ok(times
        .iter()
        .map(|t| t.map_or(i64::MAX, |t| t.saturating_add(offset)))
        .collect())
}

struct Stored {
    batch: RecordBatch,
    matched: Vec<bool>,
    times: Vec<i64>,
    min_time: i64,
    max_time: i64,
}

/// Held rows, whether each has met one, and their times.
pub type HeldRows = (RecordBatch, Vec<bool>, Vec<i64>);

/// A place in the state: stored batch id and row.
pub type RowRef = (u64, u32);

/// One side's rows, indexed by key.
pub struct SideRows {
    schema: SchemaRef,
    stored: super::StateMap<u64, Stored>,
    next_id: u64,
    index: super::StateMap<Box<[u8]>, Vec<RowRef>>,
    indexed: usize,
    live: usize,
}

const MATCHED: &str = "__sluice_matched";
/// Rows per chunk of held rows after compaction.
const CHUNK: usize = 1024;

impl SideRows {
    pub fn new(schema: SchemaRef) -> Self {
        SideRows {
            schema,
            stored: super::StateMap::default(),
            next_id: 0,
            index: super::StateMap::default(),
            indexed: 0,
            live: 0,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Keeps `batch` (its keys already encoded), with whether each row has met one.
    pub fn insert(
        &mut self,
        batch: RecordBatch,
        keys: &EncodedKeys,
        matched: Vec<bool>,
        times: Vec<i64>,
    ) {
        if batch.num_rows() == 0 {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        for (r, ok) in keys.valid.iter().enumerate() {
            if *ok {
                // A key already held is not copied again.
                let k = keys.key(r);
                match self.index.get_mut(k) {
                    Some(refs) => refs.push((id, r as u32)),
                    None => {
                        self.index.insert(k.into(), vec![(id, r as u32)]);
                    }
                }
                self.indexed += 1;
            }
        }
        let min_time = times.iter().copied().min().unwrap_or(i64::MAX);
        let max_time = times.iter().copied().max().unwrap_or(i64::MIN);
        self.live += batch.num_rows();
        self.stored.insert(
            id,
            Stored {
                batch,
                matched,
                times,
                min_time,
                max_time,
            },
        );
    }

    /// Pairs (row of the probing batch, row held here) with equal keys.
    pub fn probe(&self, keys: &EncodedKeys) -> (Vec<u32>, Vec<RowRef>) {
        let (mut probe, mut held) = (Vec::new(), Vec::new());
        for (r, ok) in keys.valid.iter().enumerate() {
            if !*ok {
                continue;
            }
            if let Some(refs) = self.index.get(keys.key(r)) {
                for &rf in refs {
                    if self.stored.contains_key(&rf.0) {
                        probe.push(r as u32);
                        held.push(rf);
                    }
                }
            }
        }
        (probe, held)
    }

    /// The schema of the rows held.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The held rows at `refs`, column by column.
    pub fn gather(&self, refs: &[RowRef]) -> Result<Vec<ArrayRef>> {
        if refs.is_empty() {
            return Ok(self
                .schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), 0))
                .collect());
        }
        let mut ids: Vec<u64> = refs.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let batches: Vec<&RecordBatch> = ids
            .iter()
            .map(|id| {
                self.stored
                    .get(id)
                    .map(|s| &s.batch)
                    .ok_or_else(|| RuntimeError::Internal("a join row vanished".into()))
            })
            .collect::<Result<_>>()?;
        let pos: super::StateMap<u64, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let indices: Vec<(usize, usize)> =
            refs.iter().map(|(id, r)| (pos[id], *r as usize)).collect();
        (0..self.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                Ok(interleave(&arrays, &indices)?)
            })
            .collect()
    }

    /// Gives rows held without a time (they came before any watermark) the time `t`.
    pub fn stamp(&mut self, unstamped: i64, t: i64) {
        for s in self.stored.values_mut() {
            if s.max_time < unstamped {
                continue;
            }
            for x in s.times.iter_mut().filter(|x| **x == unstamped) {
                *x = t;
            }
            s.min_time = s.times.iter().copied().min().unwrap_or(i64::MAX);
            s.max_time = s.times.iter().copied().max().unwrap_or(i64::MIN);
        }
    }

    /// Notes that these held rows have met a row of the other side; returns those that
    /// had met none before (each once).
    pub fn mark_new(&mut self, refs: &[RowRef]) -> Vec<RowRef> {
        let mut out = Vec::new();
        for &(id, r) in refs {
            if let Some(s) = self.stored.get_mut(&id)
                && !s.matched[r as usize]
            {
                s.matched[r as usize] = true;
                out.push((id, r));
            }
        }
        out
    }

    /// Notes that these held rows have met a row of the other side.
    pub fn mark(&mut self, refs: &[RowRef]) {
        for (id, r) in refs {
            if let Some(s) = self.stored.get_mut(id) {
                s.matched[*r as usize] = true;
            }
        }
    }

    /// Lets go of rows whose time is before `bound`; returns those among them that never
    /// met a row of the other side, when `unmatched` is asked for.
    pub fn expire(&mut self, bound: i64, unmatched: bool) -> Result<Option<RecordBatch>> {
        let mut ids: Vec<u64> = self
            .stored
            .iter()
            .filter(|(_, s)| s.min_time < bound)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut out: Vec<RecordBatch> = Vec::new();
        for id in ids {
            let Some(s) = self.stored.get_mut(&id) else {
                continue;
            };
            if unmatched {
                let rows: Vec<u32> = (0..s.batch.num_rows())
                    .filter(|&r| s.times[r] < bound && !s.matched[r])
                    .map(|r| r as u32)
                    .collect();
                for &r in &rows {
                    s.matched[r as usize] = true;
                }
                if !rows.is_empty() {
                    out.push(take_rows(&s.batch, &rows)?);
                }
            }
            if s.max_time < bound {
                self.live -= s.batch.num_rows();
                self.stored.remove(&id);
            }
        }
        if self.indexed > 2 * self.live + 4096 {
            self.reindex()?;
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.schema, &out)?))
    }

    /// Many small batches become one, and the index drops entries of rows let go.
    pub fn compact_if_fragmented(&mut self, encoder: &KeyEncoder) -> Result<()> {
        if self.stored.len() < 256 {
            return Ok(());
        }
        // The small batches are merged, sorted by time and cut into chunks, so that each
        // chunk covers a short span of time and leaves the state whole when the
        // watermark passes it; chunks already made stay as they are.
        let mut small: Vec<u64> = self
            .stored
            .iter()
            .filter(|(_, s)| s.batch.num_rows() < CHUNK / 2)
            .map(|(id, _)| *id)
            .collect();
        if small.len() < 2 {
            return Ok(());
        }
        small.sort_unstable();
        let mut batches = Vec::new();
        let mut matched = Vec::new();
        let mut times = Vec::new();
        for id in small {
            if let Some(s) = self.stored.remove(&id) {
                self.live -= s.batch.num_rows();
                batches.push(s.batch);
                matched.extend(s.matched);
                times.extend(s.times);
            }
        }
        let all = concat_batches(&self.schema, &batches)?;
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        order.sort_by_key(|&r| times[r as usize]);
        for chunk in order.chunks(CHUNK) {
            let batch = take_rows(&all, chunk)?;
            let keys = encoder.encode(&batch)?;
            let m = chunk.iter().map(|&r| matched[r as usize]).collect();
            let t = chunk.iter().map(|&r| times[r as usize]).collect();
            self.insert(batch, &keys, m, t);
        }
        if self.indexed > 2 * self.live + 4096 {
            self.reindex()?;
        }
        Ok(())
    }

    fn reindex(&mut self) -> Result<()> {
        let live: std::collections::HashSet<u64> = self.stored.keys().copied().collect();
        self.index.retain(|_, refs| {
            refs.retain(|r| live.contains(&r.0));
            !refs.is_empty()
        });
        self.indexed = self.index.values().map(Vec::len).sum();
        Ok(())
    }

    fn all_rows(&self) -> Result<HeldRows> {
        let mut ids: Vec<&u64> = self.stored.keys().collect();
        ids.sort_unstable();
        let batches: Vec<RecordBatch> =
            ids.iter().map(|id| self.stored[id].batch.clone()).collect();
        let matched: Vec<bool> = ids
            .iter()
            .flat_map(|id| self.stored[id].matched.iter().copied())
            .collect();
        let times: Vec<i64> = ids
            .iter()
            .flat_map(|id| self.stored[id].times.iter().copied())
            .collect();
        Ok((concat_batches(&self.schema, &batches)?, matched, times))
    }

    /// The held rows, whether each has met one, and their times, for a checkpoint.
    pub fn rows(&self) -> Result<Option<HeldRows>> {
        if self.stored.is_empty() {
            return Ok(None);
        }
        self.all_rows().map(Some)
    }

    /// Puts back rows saved from [`SideRows::rows`].
    pub fn restore(
        &mut self,
        batch: RecordBatch,
        matched: Vec<bool>,
        times: Vec<i64>,
        encoder: &KeyEncoder,
    ) -> Result<()> {
        let keys = encoder.encode(&batch)?;
        self.insert(batch, &keys, matched, times);
        Ok(())
    }
}

const SIDE: &str = "__sluice_side";
const TIME: &str = "__sluice_time";

/// The one schema a join's saved rows have: left columns, right columns (all
/// nullable), the side a row is of, and whether it has met one.
fn packed_schema(plan: &JoinPlan) -> SchemaRef {
    let mut fields: Vec<Field> = Vec::new();
    for (i, f) in plan
        .left_schema
        .fields()
        .iter()
        .chain(plan.right_schema.fields().iter())
        .enumerate()
    {
        fields.push(Field::new(format!("c{i}"), f.data_type().clone(), true));
    }
    fields.push(Field::new(SIDE, DataType::UInt8, false));
    fields.push(Field::new(MATCHED, DataType::Boolean, false));
    fields.push(Field::new(TIME, DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

/// One side's rows in the packed layout (see [`unpack`]).
pub fn pack(
    plan: &JoinPlan,
    left_side: bool,
    rows: &RecordBatch,
    matched: Vec<bool>,
    times: Vec<i64>,
) -> Result<RecordBatch> {
    let n = rows.num_rows();
    let mut cols = if left_side {
        let mut c = rows.columns().to_vec();
        c.extend(null_columns(&plan.right_schema, n));
        c
    } else {
        let mut c = null_columns(&plan.left_schema, n);
        c.extend(rows.columns().iter().cloned());
        c
    };
    cols.push(Arc::new(datafusion::arrow::array::UInt8Array::from(vec![
        u8::from(!left_side);
        n
    ])));
    cols.push(Arc::new(BooleanArray::from(matched)));
    cols.push(Arc::new(datafusion::arrow::array::Int64Array::from(times)));
    Ok(RecordBatch::try_new(packed_schema(plan), cols)?)
}

/// One side's saved rows: which side, the rows, whether each has met one, their times.
pub type Unpacked = (bool, RecordBatch, Vec<bool>, Vec<i64>);

/// Saved rows back per side.
pub fn unpack(plan: &JoinPlan, packed: &RecordBatch) -> Result<Vec<Unpacked>> {
    let nl = plan.left_schema.fields().len();
    let nr = plan.right_schema.fields().len();
    if packed.num_columns() != nl + nr + 3 {
        return Err(RuntimeError::Internal(
            "a join's saved rows do not fit this job".into(),
        ));
    }
    let side = packed
        .column(nl + nr)
        .as_primitive_opt::<datafusion::arrow::datatypes::UInt8Type>()
        .ok_or_else(|| RuntimeError::Internal("a join's saved sides are unreadable".into()))?;
    let matched = packed
        .column(nl + nr + 1)
        .as_boolean_opt()
        .ok_or_else(|| RuntimeError::Internal("a join's saved flags are unreadable".into()))?;
    let times = packed
        .column(nl + nr + 2)
        .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
        .ok_or_else(|| RuntimeError::Internal("a join's saved times are unreadable".into()))?;
    let mut out = Vec::new();
    for left_side in [true, false] {
        let rows: Vec<u32> = (0..packed.num_rows())
            .filter(|&r| (side.value(r) == 0) == left_side)
            .map(|r| r as u32)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let part = take_rows(packed, &rows)?;
        let (range, schema) = if left_side {
            (0..nl, plan.left_schema.clone())
        } else {
            (nl..nl + nr, plan.right_schema.clone())
        };
        let batch = RecordBatch::try_new_with_options(
            schema,
            part.columns()[range].to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?;
        let m = rows.iter().map(|&r| matched.value(r as usize)).collect();
        let t = rows.iter().map(|&r| times.value(r as usize)).collect();
        out.push((left_side, batch, m, t));
    }
    Ok(out)
}

/// Where a side's row time is: column and offset.
pub type TimeOf = (Option<usize>, i64);

/// The rows of `batch` at `rows`.
/// (Unlike arrow's `take_record_batch`, it keeps the row count of a batch without
/// columns.)
pub fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        take_columns(batch, rows)?,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

/// Columns of `batch` at `rows`.
pub fn take_columns(batch: &RecordBatch, rows: &[u32]) -> Result<Vec<ArrayRef>> {
    let idx = UInt32Array::from(rows.to_vec());
    Ok(batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &idx, None))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Which candidate pairs meet the join's extra condition (all, without one).
pub fn condition(
    plan: &JoinPlan,
    left: &[ArrayRef],
    right: &[ArrayRef],
    n: usize,
) -> Result<Option<BooleanArray>> {
    let Some(f) = &plan.filter else {
        return Ok(None);
    };
    let cols: Vec<ArrayRef> = f
        .column_indices()
        .iter()
        .map(|ci| match ci.side {
            JoinSide::Left => left[ci.index].clone(),
            _ => right[ci.index].clone(),
        })
        .collect();
    let batch = RecordBatch::try_new_with_options(
        f.schema().clone(),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?;
    let v = f.expression().evaluate(&batch)?.into_array(n)?;
    let b = v
        .as_boolean_opt()
        .ok_or_else(|| RuntimeError::Internal("a join condition is not boolean".into()))?;
    // NULL is not true.
    Ok(Some(b.iter().map(|x| Some(x == Some(true))).collect()))
}

/// Joined pairs: left columns, right columns, and per pair what came with it.
pub type Pairs<A, B> = (Vec<ArrayRef>, Vec<ArrayRef>, Vec<A>, Vec<B>);

/// Candidate pairs (left columns, right columns, and per pair something to keep with it,
/// such as the rows they came from) narrowed to those meeting the join's condition.
pub fn meeting_condition<A: Copy, B: Copy>(
    plan: &JoinPlan,
    left: Vec<ArrayRef>,
    right: Vec<ArrayRef>,
    a: Vec<A>,
    b: Vec<B>,
) -> Result<Pairs<A, B>> {
    let n = a.len();
    match condition(plan, &left, &right, n)? {
        None => Ok((left, right, a, b)),
        Some(mask) => {
            let kept: Vec<usize> = (0..n).filter(|&i| mask.value(i)).collect();
            Ok((
                keep(left, &mask)?,
                keep(right, &mask)?,
                kept.iter().map(|&i| a[i]).collect(),
                kept.iter().map(|&i| b[i]).collect(),
            ))
        }
    }
}

/// Keeps the entries of `cols` where `mask` is true.
pub fn keep(cols: Vec<ArrayRef>, mask: &BooleanArray) -> Result<Vec<ArrayRef>> {
    cols.iter().map(|c| Ok(filter(c.as_ref(), mask)?)).collect()
}

/// Output rows from left and right columns (left then right, then the projection).
pub fn joined(
    plan: &JoinPlan,
    left: Vec<ArrayRef>,
    right: Vec<ArrayRef>,
    n: usize,
) -> Result<RecordBatch> {
    let mut cols = left;
    cols.extend(right);
    side_only(plan, cols, n)
}

/// NULL columns standing for a side that had no match.
pub fn null_columns(schema: &Schema, n: usize) -> Vec<ArrayRef> {
    schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), n))
        .collect()
}

/// Joined columns (or one side's, for semi and anti joins) as output: the join's
/// projection applied.
pub fn side_only(plan: &JoinPlan, cols: Vec<ArrayRef>, n: usize) -> Result<RecordBatch> {
    let cols = match &plan.projection {
        Some(p) => p.iter().map(|&i| cols[i].clone()).collect(),
        None => cols,
    };
    Ok(RecordBatch::try_new_with_options(
        plan.output_schema.clone(),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

/// Unmatched rows of one side: padded with NULLs for the other (outer joins), or alone
/// (anti joins).
pub fn padded(plan: &JoinPlan, rows: &RecordBatch, left_side: bool) -> Result<RecordBatch> {
    let n = rows.num_rows();
    if plan.kind.one_side() {
        return side_only(plan, rows.columns().to_vec(), n);
    }
    if left_side {
        joined(
            plan,
            rows.columns().to_vec(),
            null_columns(&plan.right_schema, n),
            n,
        )
    } else {
        joined(
            plan,
            null_columns(&plan.left_schema, n),
            rows.columns().to_vec(),
            n,
        )
    }
}
