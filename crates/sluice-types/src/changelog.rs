//! Updating results: a changelog stream's rows each say what they do to the result, in
//! a last column `__op` (Flink's row kinds: insert, update-before, update-after,
//! delete). An append-only stream has no such column.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

/// The name of the column that carries each row's [`RowKind`].
pub const OP_COLUMN: &str = "__op";

/// What a row of a changelog does to the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// A new row (`+I`).
    Insert = 0,
    /// The old version of an updated row, taken back (`-U`); its new version follows.
    UpdateBefore = 1,
    /// The new version of an updated row (`+U`).
    UpdateAfter = 2,
    /// A row taken back for good (`-D`).
    Delete = 3,
}

impl RowKind {
    pub const ALL: [RowKind; 4] = [
        RowKind::Insert,
        RowKind::UpdateBefore,
        RowKind::UpdateAfter,
        RowKind::Delete,
    ];

    pub fn from_i8(v: i8) -> Option<RowKind> {
        RowKind::ALL.get(usize::try_from(v).ok()?).copied()
    }

    /// Whether the row is taken back (counts as -1 in a sum over the changelog).
    pub fn is_retraction(self) -> bool {
        matches!(self, RowKind::UpdateBefore | RowKind::Delete)
    }

    /// Flink's short form, as written in a file's `op` column.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }
}

/// The `__op` field.
pub fn op_field() -> Field {
    Field::new(OP_COLUMN, DataType::Int8, false)
}

/// `schema` with the `__op` column appended.
pub fn with_op(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(op_field());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Whether rows of this schema are a changelog (their last column is `__op`).
pub fn is_changelog(schema: &Schema) -> bool {
    schema
        .fields()
        .last()
        .is_some_and(|f| f.name() == OP_COLUMN && f.data_type() == &DataType::Int8)
}

/// A column of `n` rows all of kind `kind`.
pub fn op_column(kind: RowKind, n: usize) -> ArrayRef {
    Arc::new(Int8Array::from(vec![kind as i8; n]))
}

/// The row kinds of a changelog batch (its last column); `None` for an append-only one.
pub fn row_kinds(batch: &RecordBatch) -> Option<&Int8Array> {
    if !is_changelog(&batch.schema()) {
        return None;
    }
    batch
        .columns()
        .last()
        .and_then(|c| c.as_primitive_opt::<Int8Type>())
}

/// The batch without its `__op` column (as it is, when it has none).
pub fn data_columns(batch: &RecordBatch) -> RecordBatch {
    if is_changelog(&batch.schema()) {
        let keep: Vec<usize> = (0..batch.num_columns() - 1).collect();
        // Projecting existing columns of a valid batch cannot fail.
        batch.project(&keep).unwrap_or_else(|_| batch.clone())
    } else {
        batch.clone()
    }
}

/// The kind of each row: those of a changelog batch, inserts for an append-only one.
pub fn kinds_of(batch: &RecordBatch) -> Vec<RowKind> {
    match row_kinds(batch) {
        Some(ops) => (0..ops.len())
            .map(|i| {
                if ops.is_null(i) {
                    RowKind::Insert
                } else {
                    RowKind::from_i8(ops.value(i)).unwrap_or(RowKind::Insert)
                }
            })
            .collect(),
        None => vec![RowKind::Insert; batch.num_rows()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_retractions_are_the_takebacks() {
        for k in RowKind::ALL {
            assert_eq!(RowKind::from_i8(k as i8), Some(k));
        }
        assert_eq!(RowKind::from_i8(4), None);
        assert_eq!(RowKind::from_i8(-1), None);
        let back: Vec<bool> = RowKind::ALL.iter().map(|k| k.is_retraction()).collect();
        assert_eq!(back, vec![false, true, false, true]);
    }

    #[test]
    fn a_changelog_batch_is_told_apart_and_its_data_columns_kept() {
        let data = Schema::new(vec![Field::new("k", DataType::Utf8, false)]);
        let schema = with_op(&data);
        assert!(is_changelog(&schema));
        assert!(!is_changelog(&data));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["a", "a"])),
                Arc::new(Int8Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        assert_eq!(
            kinds_of(&batch),
            vec![RowKind::UpdateBefore, RowKind::UpdateAfter]
        );
        assert_eq!(data_columns(&batch).num_columns(), 1);
    }
}
