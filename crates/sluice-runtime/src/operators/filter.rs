//! Filter: keeps the rows for which a DataFusion predicate is true (WHERE, HAVING).

use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::PhysicalExpr;

use crate::error::Result;
use crate::operator::{Collector, Operator};

pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Filter { predicate }
    }
}

impl Operator for Filter {
    fn name(&self) -> &str {
        "filter"
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let mask = self
            .predicate
            .evaluate(&batch)?
            .into_array(batch.num_rows())?;
        let mask = mask.as_boolean_opt().ok_or_else(|| {
            crate::RuntimeError::Internal("a filter predicate did not give booleans".into())
        })?;
        if mask.true_count() == batch.num_rows() {
            out.batch(batch);
        } else {
            out.batch(filter_record_batch(&batch, mask)?);
        }
        Ok(())
    }
}
