//! An epoch's rows cut to each key's last one before they leave for the database: the
//! upsert keeps only that row anyway, so a key updated a thousand times in an epoch
//! costs one row on the wire and in the table, not a thousand.

use std::collections::HashMap;

use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

/// The rows of `batches` that are the last of their key (the columns `key`), in input
/// order, as one batch; `None` when there are no rows.
pub(super) fn last_per_key(
    batches: &[RecordBatch],
    key: &[usize],
) -> Result<Option<RecordBatch>, String> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let fields = key
        .iter()
        .map(|&k| SortField::new(first.schema().field(k).data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
    let rows = batches
        .iter()
        .map(|b| {
            let cols: Vec<_> = key.iter().map(|&k| b.column(k).clone()).collect();
            converter.convert_columns(&cols).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut last = HashMap::with_capacity(total.min(1 << 20));
    for (b, r) in rows.iter().enumerate() {
        for i in 0..r.num_rows() {
            last.insert(r.row(i), (b, i));
        }
    }
    if last.is_empty() {
        return Ok(None);
    }
    let mut picks: Vec<(usize, usize)> = last.into_values().collect();
    picks.sort_unstable();
    let all: Vec<&RecordBatch> = batches.iter().collect();
    interleave_record_batch(&all, &picks)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use std::sync::Arc;

    fn batch(keys: &[&str], values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([
            ("k", Arc::new(StringArray::from(keys.to_vec())) as _),
            ("v", Arc::new(Int64Array::from(values.to_vec())) as _),
        ])
        .unwrap()
    }

    #[test]
    fn each_key_keeps_its_last_row_in_input_order() {
        let batches = [
            batch(&["a", "b", "a"], &[1, 2, 3]),
            batch(&["c", "b"], &[4, 5]),
        ];
        let out = last_per_key(&batches, &[0]).unwrap().unwrap();
        let keys: Vec<&str> = out.column(0).as_string::<i32>().iter().flatten().collect();
        let values: Vec<i64> = out.column(1).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(keys, ["a", "c", "b"]);
        assert_eq!(values, [3, 4, 5]);
    }

    #[test]
    fn nothing_in_nothing_out() {
        assert!(last_per_key(&[], &[0]).unwrap().is_none());
        assert!(last_per_key(&[batch(&[], &[])], &[0]).unwrap().is_none());
    }
}
