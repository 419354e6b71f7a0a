//! The columns a table declares, taken from those a fixed-shape source produces (a
//! generator profile, this machine's metrics), cast to the declared types.

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{Result, RuntimeError};

/// For each declared column, its index among the columns a generator produces.
pub fn declared_columns(
    table: &str,
    what: &str,
    produced: &SchemaRef,
    declared: &SchemaRef,
) -> Result<Vec<usize>, String> {
    declared
        .fields()
        .iter()
        .map(|f| {
            produced.index_of(f.name()).map_err(|_| {
                let names: Vec<&str> = produced
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                format!(
                    "table {table}: {what} does not produce a column {} (it produces: {})",
                    f.name(),
                    names.join(", ")
                )
            })
        })
        .collect()
}

/// The declared columns of generated ones, cast to the declared types.
pub fn select_declared(
    all: &[ArrayRef],
    columns: &[usize],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let out = columns
        .iter()
        .zip(schema.fields())
        .map(|(&i, f)| {
            let c = &all[i];
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), out)
        .map_err(|e| RuntimeError::Internal(format!("generator: {e}")))
}
