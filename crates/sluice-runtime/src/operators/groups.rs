//! Grouped aggregation state for one window: DataFusion's group-value tables and its
//! vectorized (groups) accumulators, so any DataFusion aggregate works incrementally.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::GroupsAccumulatorAdapter;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateMode, aggregate_expressions};

use crate::error::{Result, RuntimeError};
use crate::plan::AggregatePlan;

/// The evaluated inputs of an aggregate for one batch: group keys, arguments, filters.
pub struct AggregateInput {
    pub keys: Vec<ArrayRef>,
    pub args: Vec<Vec<ArrayRef>>,
    pub filters: Vec<Option<BooleanArray>>,
    pub num_rows: usize,
}

impl AggregateInput {
    pub fn evaluate(plan: &AggregatePlan, batch: &RecordBatch) -> Result<Self> {
        let n = batch.num_rows();
        let keys = plan
            .group_exprs
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        // Arguments, then ORDER BY expressions for order-sensitive aggregates
        // (first_value(x ORDER BY t), array_agg(… ORDER BY …)), as DataFusion feeds them.
        let args = aggregate_expressions(&plan.aggregates, &AggregateMode::Single, 0)?
            .iter()
            .map(|exprs| {
                exprs
                    .iter()
                    .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filters = plan
            .filters
            .iter()
            .map(|f| match f {
                None => Ok(None),
                Some(f) => {
                    let arr = f.evaluate(batch)?.into_array(n)?;
                    Ok(Some(arr.as_boolean().clone()))
                }
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(AggregateInput {
            keys,
            args,
            filters,
            num_rows: n,
        })
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &datafusion::arrow::array::UInt32Array) -> Result<Self> {
        use datafusion::arrow::compute::take;
        let t = |a: &ArrayRef| take(a.as_ref(), indices, None);
        Ok(AggregateInput {
            keys: self.keys.iter().map(t).collect::<Result<_, _>>()?,
            args: self
                .args
                .iter()
                .map(|v| v.iter().map(t).collect::<Result<Vec<_>, _>>())
                .collect::<Result<_, _>>()?,
            filters: self
                .filters
                .iter()
                .map(|f| {
                    f.as_ref()
                        .map(|f| {
                            let a: ArrayRef = Arc::new(f.clone());
                            t(&a).map(|x| x.as_boolean().clone())
                        })
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            num_rows: indices.len(),
        })
    }
}

/// Groups and accumulators of one window.
pub struct GroupedAggregation {
    group_values: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    group_indices: Vec<usize>,
    output_schema: SchemaRef,
}

/// The schema of the group columns, for DataFusion's group-value tables.
pub fn group_schema(plan: &AggregatePlan) -> Result<SchemaRef> {
    let fields = plan
        .group_exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Field::new(
                format!("g{i}"),
                e.data_type(&plan.input_schema)?,
                true,
            ))
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// One groups accumulator per aggregate of the plan (DataFusion's vectorized one where it
/// has one, else its row accumulator behind an adapter).
pub fn new_accumulators(plan: &AggregatePlan) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    plan.aggregates
        .iter()
        .map(|a| -> Result<Box<dyn GroupsAccumulator>> {
            if a.groups_accumulator_supported() {
                Ok(a.create_groups_accumulator()?)
            } else {
                let a = a.clone();
                Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                    a.create_accumulator()
                })))
            }
        })
        .collect()
}

impl GroupedAggregation {
    pub fn new(plan: &AggregatePlan, group_schema: &SchemaRef) -> Result<Self> {
        let group_values = new_group_values(group_schema.clone(), &GroupOrdering::None)?;
        let accumulators = new_accumulators(plan)?;
        Ok(GroupedAggregation {
            group_values,
            accumulators,
            group_indices: Vec::new(),
            output_schema: plan.output_schema.clone(),
        })
    }

    pub fn update(&mut self, input: &AggregateInput) -> Result<()> {
        if input.num_rows == 0 {
            return Ok(());
        }
        self.group_values
            .intern(&input.keys, &mut self.group_indices)?;
        let total = self.group_values.len();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            acc.update_batch(
                &input.args[i],
                &self.group_indices,
                input.filters[i].as_ref(),
                total,
            )?;
        }
        Ok(())
    }

    /// The state as rows: group columns `g0…`, then each accumulator's state columns
    /// `a{i}_{j}`. The groups stay in place (they are rebuilt from the same rows).
    pub fn snapshot(
        &mut self,
        plan: &AggregatePlan,
        group_schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let mut columns = self.group_values.emit(EmitTo::All)?;
        let mut fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("g{i}"), c.data_type().clone(), true))
            .collect();
        for (i, acc) in self.accumulators.iter_mut().enumerate() {
            for (j, c) in acc.state(EmitTo::All)?.into_iter().enumerate() {
                fields.push(Field::new(format!("a{i}_{j}"), c.data_type().clone(), true));
                columns.push(c);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        *self = Self::restore(plan, group_schema, &batch)?;
        Ok(batch)
    }

    /// Rebuilds groups and accumulators from rows made by [`GroupedAggregation::snapshot`].
    pub fn restore(
        plan: &AggregatePlan,
        group_schema: &SchemaRef,
        batch: &RecordBatch,
    ) -> Result<Self> {
        let mut g = GroupedAggregation::new(plan, group_schema)?;
        let k = group_schema.fields().len();
        if batch.num_columns() < k {
            return Err(RuntimeError::Internal(
                "window state has too few columns".into(),
            ));
        }
        let keys: Vec<ArrayRef> = batch.columns()[..k].to_vec();
        g.group_values.intern(&keys, &mut g.group_indices)?;
        let total = g.group_values.len();
        let mut col = k;
        for (acc, a) in g.accumulators.iter_mut().zip(&plan.aggregates) {
            let n = a.state_fields()?.len();
            let Some(state) = batch.columns().get(col..col + n) else {
                return Err(RuntimeError::Internal(
                    "window state has too few columns".into(),
                ));
            };
            acc.merge_batch(state, &g.group_indices, total)?;
            col += n;
        }
        Ok(g)
    }

    pub fn num_groups(&self) -> usize {
        self.group_values.len()
    }

    /// Final rows: group columns then one column per aggregate.
    pub fn emit(mut self) -> Result<RecordBatch> {
        let mut columns = self.group_values.emit(EmitTo::All)?;
        for acc in &mut self.accumulators {
            columns.push(acc.evaluate(EmitTo::All)?);
        }
        let columns = columns
            .into_iter()
            .zip(self.output_schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.output_schema.clone(), columns)?)
    }
}
