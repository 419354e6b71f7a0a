//! Groups of a GROUP BY without a window over an append-only input: DataFusion's group
//! table and groups accumulators fed incrementally, with each group's key, its row last
//! put out and the watermark when it last changed, so that at a barrier only the groups
//! that changed go out (as an update of the row put out before, or a new row).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array, new_empty_array,
};
use datafusion::arrow::compute::{cast, interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use sluice_types::RowKind;
use sluice_types::changelog::with_op;

use crate::error::{Result, RuntimeError};
use crate::operators::groups::{AggregateInput, group_schema, new_accumulators};
use crate::plan::AggregatePlan;

/// The key columns of every group, in group order, kept as the chunks they arrived in.
#[derive(Default)]
struct GroupKeys {
    chunks: Vec<Vec<ArrayRef>>,
    /// The first group of each chunk.
    starts: Vec<usize>,
    len: usize,
}

impl GroupKeys {
    fn append(&mut self, columns: Vec<ArrayRef>) {
        let n = columns.first().map_or(0, |c| c.len());
        if n == 0 {
            return;
        }
        self.starts.push(self.len);
        self.chunks.push(columns);
        self.len += n;
    }

    /// The keys of `groups`, in that order.
    fn take(&self, groups: &[u32], types: &[DataType]) -> Result<Vec<ArrayRef>> {
        let at: Vec<(usize, usize)> = groups
            .iter()
            .map(|&g| {
                let g = g as usize;
                let c = self.starts.partition_point(|&s| s <= g) - 1;
                (c, g - self.starts[c])
            })
            .collect();
        types
            .iter()
            .enumerate()
            .map(|(k, t)| {
                if at.is_empty() {
                    return Ok(new_empty_array(t));
                }
                let arrays: Vec<&dyn Array> = self.chunks.iter().map(|c| c[k].as_ref()).collect();
                Ok(interleave(&arrays, &at)?)
            })
            .collect()
    }
}

/// What changed at a barrier, as changelog rows (`__op` last): an update is a `-U` row
/// followed at once by its `+U`.
pub type Changes = Option<RecordBatch>;

pub struct RunningGroups {
    plan: AggregatePlan,
    group_schema: SchemaRef,
    key_types: Vec<DataType>,
    value_types: Vec<DataType>,
    values: Box<dyn GroupValues>,
    keys: GroupKeys,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    indices: Vec<usize>,
    /// By group: changed since the last barrier.
    changed: Vec<bool>,
    /// By group: the aggregate values last put out (valid where `live`).
    emitted: Vec<ArrayRef>,
    /// By group: a row of it is out downstream.
    live: Vec<bool>,
    /// By group: the watermark when it last changed.
    touched: Vec<i64>,
    changelog_schema: SchemaRef,
}

impl RunningGroups {
    pub fn new(plan: AggregatePlan) -> Result<Self> {
        let group_schema = if plan.group_exprs.is_empty() {
            // One group for all rows (a running total): a constant key.
            Arc::new(Schema::new(vec![Field::new("g", DataType::Boolean, false)]))
        } else {
            group_schema(&plan)?
        };
        let key_types: Vec<DataType> = group_schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let k = plan.group_exprs.len();
        let value_types: Vec<DataType> = plan.output_schema.fields()[k..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Ok(RunningGroups {
            values: new_group_values(group_schema.clone(), &GroupOrdering::None)?,
            accumulators: new_accumulators(&plan)?,
            emitted: value_types.iter().map(new_empty_array).collect(),
            changelog_schema: with_op(&plan.output_schema),
            plan,
            group_schema,
            key_types,
            value_types,
            keys: GroupKeys::default(),
            indices: Vec::new(),
            changed: Vec::new(),
            live: Vec::new(),
            touched: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.changed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    fn key_columns(&self, input: &AggregateInput) -> Vec<ArrayRef> {
        if self.plan.group_exprs.is_empty() {
            vec![Arc::new(BooleanArray::from(vec![true; input.num_rows]))]
        } else {
            input.keys.clone()
        }
    }

    /// Adds a batch's rows; `watermark` is when they arrive.
    pub fn update(&mut self, batch: &RecordBatch, watermark: i64) -> Result<()> {
        let input = AggregateInput::evaluate(&self.plan, batch)?;
        if input.num_rows == 0 {
            return Ok(());
        }
        let keys = self.key_columns(&input);
        let before = self.values.len();
        self.values.intern(&keys, &mut self.indices)?;
        let total = self.values.len();
        if total > before {
            // The first row of each new group gives its key.
            let mut first = vec![u32::MAX; total - before];
            for (row, &g) in self.indices.iter().enumerate() {
                if g >= before && first[g - before] == u32::MAX {
                    first[g - before] = row as u32;
                }
            }
            let rows = UInt32Array::from(first);
            let columns = keys
                .iter()
                .map(|c| take(c.as_ref(), &rows, None))
                .collect::<Result<Vec<_>, _>>()?;
            self.keys.append(columns);
            self.changed.resize(total, false);
            self.live.resize(total, false);
            self.touched.resize(total, watermark);
        }
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            acc.update_batch(
                &input.args[i],
                &self.indices,
                input.filters[i].as_ref(),
                total,
            )?;
        }
        for &g in &self.indices {
            self.changed[g] = true;
            self.touched[g] = watermark;
        }
        Ok(())
    }

    /// Every accumulator's state for all groups; the accumulators are rebuilt from it.
    fn states(&mut self) -> Result<Vec<Vec<ArrayRef>>> {
        let n = self.len();
        let all: Vec<u32> = (0..n as u32).collect();
        let mut states = Vec::with_capacity(self.accumulators.len());
        let mut fresh = new_accumulators(&self.plan)?;
        for (acc, f) in self.accumulators.iter_mut().zip(fresh.iter_mut()) {
            let state = acc.state(EmitTo::All)?;
            let idx: Vec<usize> = all.iter().map(|&g| g as usize).collect();
            f.merge_batch(&state, &idx, n)?;
            states.push(state);
        }
        self.accumulators = fresh;
        Ok(states)
    }

    /// The current aggregate values of `groups` (positions into the state arrays).
    fn evaluate(&self, states: &[Vec<ArrayRef>], groups: &UInt32Array) -> Result<Vec<ArrayRef>> {
        let m = groups.len();
        let idx: Vec<usize> = (0..m).collect();
        let mut fresh = new_accumulators(&self.plan)?;
        let mut out = Vec::with_capacity(fresh.len());
        for ((acc, state), t) in fresh.iter_mut().zip(states).zip(&self.value_types) {
            let part = state
                .iter()
                .map(|s| take(s.as_ref(), groups, None))
                .collect::<Result<Vec<_>, _>>()?;
            acc.merge_batch(&part, &idx, m)?;
            let v = acc.evaluate(EmitTo::All)?;
            out.push(if v.data_type() == t { v } else { cast(&v, t)? });
        }
        Ok(out)
    }

    /// The changes since the last barrier: for each changed group, its old row taken
    /// back (when one is out and the values differ) and its new row; unchanged values
    /// put nothing out. Then groups untouched while the watermark moved `ttl_ms` are
    /// deleted downstream and forgotten.
    pub fn flush(&mut self, watermark: i64, ttl_ms: Option<i64>) -> Result<Changes> {
        let changed: Vec<u32> = (0..self.len() as u32)
            .filter(|&g| self.changed[g as usize])
            .collect();
        if watermark != i64::MIN {
            // Groups changed before any watermark count from the first one.
            for t in self.touched.iter_mut().filter(|t| **t == i64::MIN) {
                *t = watermark;
            }
        }
        let expired: Vec<u32> = match ttl_ms {
            // The end of a bounded input is not the passing of time: nothing expires then.
            Some(ttl) if watermark != i64::MIN && watermark != i64::MAX => (0..self.len() as u32)
                .filter(|&g| {
                    self.touched[g as usize].saturating_add(ttl) <= watermark
                        && !self.changed[g as usize]
                })
                .collect(),
            _ => Vec::new(),
        };
        if changed.is_empty() && expired.is_empty() {
            return Ok(None);
        }
        let states = self.states()?;
        let changed_idx = UInt32Array::from(changed.clone());
        let new_values = self.evaluate(&states, &changed_idx)?;
        // Old values where a row is out.
        let old_len = self.emitted.first().map_or(0, |e| e.len());
        let was_live: Vec<bool> = changed.iter().map(|&g| self.live[g as usize]).collect();
        let old_pos: Vec<u32> = changed
            .iter()
            .zip(&was_live)
            .filter(|(_, l)| **l)
            .map(|(&g, _)| g)
            .collect();
        let old_values: Vec<ArrayRef> = self
            .emitted
            .iter()
            .map(|e| take(e.as_ref(), &UInt32Array::from(old_pos.clone()), None))
            .collect::<Result<_, _>>()?;
        let converter = RowConverter::new(
            self.value_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let new_rows = converter.convert_columns(&new_values)?;
        let old_rows = converter.convert_columns(&old_values)?;
        // Rows to put out, in order: each changed group's `-U`/`+U` pair (or `+I`), then
        // the deletes. Picks: (0 = old values, 1 = new values, 2 = all values; row).
        let mut groups: Vec<u32> = Vec::new();
        let mut picks: Vec<(usize, usize)> = Vec::new();
        let mut kinds: Vec<i8> = Vec::new();
        let mut o = 0;
        for (i, (&g, &l)) in changed.iter().zip(&was_live).enumerate() {
            if l {
                if old_rows.row(o) != new_rows.row(i) {
                    groups.extend([g, g]);
                    picks.extend([(0, o), (1, i)]);
                    kinds.extend([RowKind::UpdateBefore as i8, RowKind::UpdateAfter as i8]);
                }
                o += 1;
            } else {
                groups.push(g);
                picks.push((1, i));
                kinds.push(RowKind::Insert as i8);
            }
        }
        for &g in &expired {
            if self.live[g as usize] {
                groups.push(g);
                picks.push((2, g as usize));
                kinds.push(RowKind::Delete as i8);
            }
        }
        let out = if groups.is_empty() {
            None
        } else {
            let mut columns = if self.plan.group_exprs.is_empty() {
                Vec::new()
            } else {
                self.keys.take(&groups, &self.key_types)?
            };
            for ((old, new), all) in old_values.iter().zip(&new_values).zip(&self.emitted) {
                columns.push(interleave(
                    &[old.as_ref(), new.as_ref(), all.as_ref()],
                    &picks,
                )?);
            }
            columns.push(Arc::new(datafusion::arrow::array::Int8Array::from(kinds)));
            Some(RecordBatch::try_new(
                self.changelog_schema.clone(),
                columns,
            )?)
        };
        // Remember what went out: every group's value is its new one if it changed.
        let n = self.len();
        let mut new_at = vec![usize::MAX; n];
        for (i, &g) in changed.iter().enumerate() {
            new_at[g as usize] = i;
        }
        let picks: Vec<(usize, usize)> = (0..n)
            .map(|g| {
                if new_at[g] != usize::MAX {
                    (1, new_at[g])
                } else if g < old_len {
                    (0, g)
                } else {
                    // Never out and unchanged: cannot happen (new groups are changed).
                    (1, 0)
                }
            })
            .collect();
        self.emitted = self
            .emitted
            .iter()
            .zip(&new_values)
            .map(|(old, new)| Ok(interleave(&[old.as_ref(), new.as_ref()], &picks)?))
            .collect::<Result<_>>()?;
        for &g in &changed {
            self.live[g as usize] = true;
            self.changed[g as usize] = false;
        }
        if !expired.is_empty() {
            let mut keep = vec![true; n];
            for &g in &expired {
                keep[g as usize] = false;
            }
            let kept: Vec<u32> = (0..n as u32).filter(|&g| keep[g as usize]).collect();
            let states = self.states()?;
            self.rebuild(&kept, states)?;
        }
        Ok(out)
    }

    /// Keeps only the groups `kept` (ascending), renumbered from 0.
    fn rebuild(&mut self, kept: &[u32], states: Vec<Vec<ArrayRef>>) -> Result<()> {
        let idx = UInt32Array::from(kept.to_vec());
        let keys = self.keys.take(kept, &self.key_types)?;
        let states: Vec<Vec<ArrayRef>> = states
            .iter()
            .map(|s| {
                s.iter()
                    .map(|c| take(c.as_ref(), &idx, None))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        let emitted: Vec<ArrayRef> = self
            .emitted
            .iter()
            .map(|e| take(e.as_ref(), &idx, None))
            .collect::<Result<_, _>>()?;
        let pick = |v: &[bool]| kept.iter().map(|&g| v[g as usize]).collect::<Vec<_>>();
        let live = pick(&self.live);
        let changed = pick(&self.changed);
        let touched: Vec<i64> = kept.iter().map(|&g| self.touched[g as usize]).collect();
        self.install(keys, states, emitted, live, changed, touched)
    }

    /// Puts groups in place: keys, accumulator states, emitted values and flags, all in
    /// the same order.
    fn install(
        &mut self,
        keys: Vec<ArrayRef>,
        states: Vec<Vec<ArrayRef>>,
        emitted: Vec<ArrayRef>,
        live: Vec<bool>,
        changed: Vec<bool>,
        touched: Vec<i64>,
    ) -> Result<()> {
        let n = live.len();
        let mut values = new_group_values(self.group_schema.clone(), &GroupOrdering::None)?;
        let mut indices = Vec::new();
        values.intern(&keys, &mut indices)?;
        if values.len() != n {
            return Err(RuntimeError::Internal(format!(
                "group state holds {} keys but {n} groups",
                values.len()
            )));
        }
        // The table may number the groups in its own order: follow it.
        let mut order = vec![0u32; n];
        for (row, &g) in indices.iter().enumerate() {
            order[g] = row as u32;
        }
        let order = UInt32Array::from(order);
        let by_order = |c: &ArrayRef| take(c.as_ref(), &order, None);
        let at = |g: usize| order.value(g) as usize;
        let mut accumulators = new_accumulators(&self.plan)?;
        for (acc, state) in accumulators.iter_mut().zip(&states) {
            acc.merge_batch(state, &indices, n)?;
        }
        self.keys = GroupKeys::default();
        self.keys
            .append(keys.iter().map(by_order).collect::<Result<_, _>>()?);
        self.emitted = emitted.iter().map(by_order).collect::<Result<_, _>>()?;
        self.live = (0..n).map(|g| live[at(g)]).collect();
        self.changed = (0..n).map(|g| changed[at(g)]).collect();
        self.touched = (0..n).map(|g| touched[at(g)]).collect();
        self.values = values;
        self.accumulators = accumulators;
        Ok(())
    }

    /// The state as rows: keys `g0…`, accumulator states `a{i}_{j}`, values last put out
    /// `e{i}`, then `live`, `changed`, `touched`.
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let n = self.len();
        let states = self.states()?;
        let all: Vec<u32> = (0..n as u32).collect();
        let mut columns = self.keys.take(&all, &self.key_types)?;
        let mut fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("g{i}"), c.data_type().clone(), true))
            .collect();
        for (i, state) in states.iter().enumerate() {
            for (j, c) in state.iter().enumerate() {
                fields.push(Field::new(format!("a{i}_{j}"), c.data_type().clone(), true));
                columns.push(c.clone());
            }
        }
        for (i, e) in self.emitted.iter().enumerate() {
            fields.push(Field::new(format!("e{i}"), e.data_type().clone(), true));
            columns.push(e.clone());
        }
        fields.push(Field::new("live", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(self.live.clone())));
        fields.push(Field::new("changed", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(self.changed.clone())));
        fields.push(Field::new("touched", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(self.touched.clone())));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// Puts back groups saved by [`RunningGroups::snapshot`].
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let short =
            || RuntimeError::Internal("updating aggregate state has too few columns".into());
        let k = self.key_types.len();
        let mut col = k;
        let keys = batch.columns().get(..k).ok_or_else(short)?.to_vec();
        let mut states = Vec::new();
        for a in &self.plan.aggregates {
            let n = a.state_fields()?.len();
            states.push(
                batch
                    .columns()
                    .get(col..col + n)
                    .ok_or_else(short)?
                    .to_vec(),
            );
            col += n;
        }
        let v = self.value_types.len();
        let emitted = batch
            .columns()
            .get(col..col + v)
            .ok_or_else(short)?
            .to_vec();
        col += v;
        let flags = |c: usize| -> Result<Vec<bool>> {
            let a = batch.columns().get(c).ok_or_else(short)?;
            Ok(a.as_boolean_opt()
                .ok_or_else(short)?
                .iter()
                .map(|b| b.unwrap_or(false))
                .collect())
        };
        let live = flags(col)?;
        let changed = flags(col + 1)?;
        let touched: Vec<i64> = batch
            .columns()
            .get(col + 2)
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(short)?
            .values()
            .to_vec();
        self.install(keys, states, emitted, live, changed, touched)
    }
}
