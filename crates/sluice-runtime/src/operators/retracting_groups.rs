//! Groups of a GROUP BY without a window over a changelog input: each group keeps its
//! live input rows (with multiplicities; a retraction takes one back), and a changed
//! group's aggregates are recomputed from them at the barrier. Any aggregate works, min
//! and max included, and a group left with no rows is deleted downstream.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int8Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::logical_expr::EmitTo;
use sluice_types::RowKind;
use sluice_types::changelog::{data_columns, kinds_of, with_op};

use crate::error::{Result, RuntimeError};
use crate::operators::groups::{AggregateInput, new_accumulators};
use crate::plan::AggregatePlan;

#[derive(Default)]
struct Group {
    /// Live input rows (encoded) and how many times each is in.
    rows: super::StateMap<Box<[u8]>, i64>,
    /// The aggregate values last put out (encoded), if a row of the group is out.
    emitted: Option<Box<[u8]>>,
    /// The watermark when it last changed.
    touched: i64,
    changed: bool,
}

/// A row going out: its group's key, its values (both encoded) and its kind.
type Change = (Box<[u8]>, Box<[u8]>, RowKind);

pub struct RetractingGroups {
    plan: AggregatePlan,
    /// Group keys (none: one group for all rows).
    keys: Option<RowConverter>,
    /// The input's columns.
    input: RowConverter,
    /// The aggregate values.
    values: RowConverter,
    value_types: Vec<DataType>,
    groups: super::StateMap<Box<[u8]>, Group>,
    changelog_schema: SchemaRef,
}

fn converter(types: impl Iterator<Item = DataType>) -> Result<RowConverter> {
    Ok(RowConverter::new(types.map(SortField::new).collect())?)
}

impl RetractingGroups {
    pub fn new(plan: AggregatePlan) -> Result<Self> {
        let k = plan.group_exprs.len();
        let keys = if k == 0 {
            None
        } else {
            Some(converter(
                plan.output_schema.fields()[..k]
                    .iter()
                    .map(|f| f.data_type().clone()),
            )?)
        };
        let value_types: Vec<DataType> = plan.output_schema.fields()[k..]
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Ok(RetractingGroups {
            keys,
            input: converter(
                plan.input_schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone()),
            )?,
            values: converter(value_types.iter().cloned())?,
            value_types,
            groups: super::StateMap::default(),
            changelog_schema: with_op(&plan.output_schema),
            plan,
        })
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn key_rows(&self, data: &RecordBatch) -> Result<Vec<Box<[u8]>>> {
        let n = data.num_rows();
        match &self.keys {
            None => Ok(vec![Box::default(); n]),
            Some(conv) => {
                let cols = self
                    .plan
                    .group_exprs
                    .iter()
                    .map(|e| e.evaluate(data).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let cols = cols
                    .iter()
                    .zip(self.plan.output_schema.fields())
                    .map(|(c, f)| {
                        if c.data_type() == f.data_type() {
                            Ok(c.clone())
                        } else {
                            cast(c, f.data_type())
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = conv.convert_columns(&cols)?;
                Ok(rows.iter().map(|r| r.as_ref().into()).collect())
            }
        }
    }

    /// Applies a changelog batch: inserts add a row to its group, retractions take one
    /// back. `watermark` is when they arrive.
    pub fn update(&mut self, batch: &RecordBatch, watermark: i64) -> Result<()> {
        let kinds = kinds_of(batch);
        let data = data_columns(batch);
        let keys = self.key_rows(&data)?;
        let rows = self.input.convert_columns(data.columns())?;
        for (i, key) in keys.into_iter().enumerate() {
            let sign = if kinds[i].is_retraction() { -1 } else { 1 };
            let g = self.groups.entry(key).or_default();
            let row: Box<[u8]> = rows.row(i).as_ref().into();
            let count = g.rows.entry(row.clone()).or_insert(0);
            *count += sign;
            if *count == 0 {
                g.rows.remove(&row);
            }
            g.changed = true;
            g.touched = watermark;
        }
        Ok(())
    }

    /// The aggregate values of each group in `keys`, from its live rows (a group with
    /// none gets a row anyway; the caller deletes it).
    fn compute(&self, keys: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let mut encoded: Vec<&[u8]> = Vec::new();
        let mut group_of: Vec<usize> = Vec::new();
        for (gi, key) in keys.iter().enumerate() {
            if let Some(g) = self.groups.get(*key) {
                for (row, &count) in &g.rows {
                    for _ in 0..count.max(0) {
                        encoded.push(row);
                        group_of.push(gi);
                    }
                }
            }
        }
        let parser = self.input.parser();
        let columns = self
            .input
            .convert_rows(encoded.iter().map(|r| parser.parse(r)))?;
        let batch = RecordBatch::try_new_with_options(
            self.plan.input_schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(encoded.len())),
        )?;
        let input = AggregateInput::evaluate(&self.plan, &batch)?;
        let m = keys.len();
        let mut out = Vec::new();
        for ((mut acc, args), (filter, t)) in new_accumulators(&self.plan)?
            .into_iter()
            .zip(&input.args)
            .zip(input.filters.iter().zip(&self.value_types))
        {
            acc.update_batch(args, &group_of, filter.as_ref(), m)?;
            let v = acc.evaluate(EmitTo::All)?;
            out.push(if v.data_type() == t { v } else { cast(&v, t)? });
        }
        Ok(out)
    }

    fn decode_keys(&self, keys: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        match &self.keys {
            None => Ok(Vec::new()),
            Some(conv) => {
                let parser = conv.parser();
                Ok(conv.convert_rows(keys.iter().map(|k| parser.parse(k)))?)
            }
        }
    }

    fn decode_values(&self, rows: &[&[u8]]) -> Result<Vec<ArrayRef>> {
        let parser = self.values.parser();
        Ok(self
            .values
            .convert_rows(rows.iter().map(|r| parser.parse(r)))?)
    }

    /// The changes since the last barrier (see `RunningGroups::flush`); a group left
    /// without rows, or untouched while the watermark moved `ttl_ms`, is deleted.
    pub fn flush(&mut self, watermark: i64, ttl_ms: Option<i64>) -> Result<Option<RecordBatch>> {
        let changed: Vec<Box<[u8]>> = self
            .groups
            .iter()
            .filter(|(_, g)| g.changed)
            .map(|(k, _)| k.clone())
            .collect();
        if watermark != i64::MIN {
            // Groups changed before any watermark count from the first one.
            for g in self.groups.values_mut().filter(|g| g.touched == i64::MIN) {
                g.touched = watermark;
            }
        }
        let expired: Vec<Box<[u8]>> = match ttl_ms {
            // The end of a bounded input is not the passing of time: nothing expires then.
            Some(ttl) if watermark != i64::MIN && watermark != i64::MAX => self
                .groups
                .iter()
                .filter(|(_, g)| !g.changed && g.touched.saturating_add(ttl) <= watermark)
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        };
        if changed.is_empty() && expired.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&[u8]> = changed.iter().map(|k| k.as_ref()).collect();
        let values = self.compute(&refs)?;
        let new_rows = self.values.convert_columns(&values)?;
        // Rows going out: (key, encoded values, kind); an update's `-U` right before its
        // `+U`.
        let mut out: Vec<Change> = Vec::new();
        for (i, key) in changed.iter().enumerate() {
            let Some(g) = self.groups.get_mut(key) else {
                continue;
            };
            g.changed = false;
            let new: Box<[u8]> = new_rows.row(i).as_ref().into();
            if g.rows.is_empty() {
                if let Some(old) = g.emitted.take() {
                    out.push((key.clone(), old, RowKind::Delete));
                }
                self.groups.remove(key);
                continue;
            }
            match g.emitted.replace(new.clone()) {
                Some(old) if old == new => {}
                Some(old) => {
                    out.push((key.clone(), old, RowKind::UpdateBefore));
                    out.push((key.clone(), new, RowKind::UpdateAfter));
                }
                None => out.push((key.clone(), new, RowKind::Insert)),
            }
        }
        for key in &expired {
            if let Some(g) = self.groups.remove(key)
                && let Some(old) = g.emitted
            {
                out.push((key.clone(), old, RowKind::Delete));
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        let keys: Vec<&[u8]> = out.iter().map(|(k, _, _)| k.as_ref()).collect();
        let vals: Vec<&[u8]> = out.iter().map(|(_, v, _)| v.as_ref()).collect();
        let mut columns = self.decode_keys(&keys)?;
        columns.extend(self.decode_values(&vals)?);
        columns.push(Arc::new(Int8Array::from(
            out.iter().map(|(_, _, k)| *k as i8).collect::<Vec<_>>(),
        )));
        Ok(Some(RecordBatch::try_new(
            self.changelog_schema.clone(),
            columns,
        )?))
    }

    /// The state as rows: each group's live input rows with `count` and `touched`. (At a
    /// barrier every group's row out is its current value, so values are recomputed on
    /// restore.)
    pub fn snapshot(&mut self) -> Result<RecordBatch> {
        let mut encoded: Vec<&[u8]> = Vec::new();
        let mut counts = Vec::new();
        let mut touched = Vec::new();
        for g in self.groups.values() {
            for (row, &count) in &g.rows {
                encoded.push(row);
                counts.push(count);
                touched.push(g.touched);
            }
        }
        let parser = self.input.parser();
        let mut columns = self
            .input
            .convert_rows(encoded.iter().map(|r| parser.parse(r)))?;
        let mut fields: Vec<Field> = self
            .plan
            .input_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new("count", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(counts)));
        fields.push(Field::new("touched", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(touched)));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(encoded.len())),
        )?)
    }

    /// Puts back groups saved by [`RetractingGroups::snapshot`].
    pub fn restore(&mut self, batch: &RecordBatch) -> Result<()> {
        let short =
            || RuntimeError::Internal("updating aggregate state has too few columns".into());
        let w = self.plan.input_schema.fields().len();
        let int = |c: usize| -> Result<Vec<i64>> {
            Ok(batch
                .columns()
                .get(c)
                .and_then(|a| a.as_primitive_opt::<Int64Type>())
                .ok_or_else(short)?
                .values()
                .to_vec())
        };
        let counts = int(w)?;
        let touched = int(w + 1)?;
        let data = RecordBatch::try_new_with_options(
            self.plan.input_schema.clone(),
            batch.columns().get(..w).ok_or_else(short)?.to_vec(),
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(batch.num_rows())),
        )?;
        let keys = self.key_rows(&data)?;
        let rows = self.input.convert_columns(data.columns())?;
        self.groups.clear();
        for (i, key) in keys.into_iter().enumerate() {
            let g = self.groups.entry(key).or_default();
            g.rows.insert(rows.row(i).as_ref().into(), counts[i]);
            g.touched = touched[i];
        }
        // Every group's row out is its current value.
        let all: Vec<Box<[u8]>> = self.groups.keys().cloned().collect();
        let refs: Vec<&[u8]> = all.iter().map(|k| k.as_ref()).collect();
        let values = self.compute(&refs)?;
        let encoded = self.values.convert_columns(&values)?;
        for (i, key) in all.iter().enumerate() {
            if let Some(g) = self.groups.get_mut(key) {
                g.emitted = Some(encoded.row(i).as_ref().into());
            }
        }
        Ok(())
    }
}
