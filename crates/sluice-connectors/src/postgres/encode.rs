//! Arrow to PostgreSQL: column types for `CREATE TABLE`, quoted identifiers, and rows in
//! COPY's text format.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// A PostgreSQL type that holds an Arrow type. Timestamps are UTC, so `timestamptz`.
pub fn pg_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => "numeric",
        DataType::Float16 | DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Timestamp(_, _) => "timestamptz",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea",
        _ => "text",
    }
}

/// `"name"`, with inner quotes doubled: no identifier can break out of its quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name as written by the user, `schema.table` or `table`, each part quoted.
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

fn escape_into(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Appends a batch's rows to `out` in COPY text format (tab-separated, `\N` for null).
pub fn copy_text(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), String> {
    let options = FormatOptions::default();
    enum Col<'a> {
        Millis(&'a datafusion::arrow::array::TimestampMillisecondArray),
        /// Bytes, as `bytea`'s hex form (`\x00ff`).
        Bytes(ArrayFormatter<'a>),
        Other(ArrayFormatter<'a>),
    }
    let mut cols = Vec::with_capacity(batch.num_columns());
    for c in batch.columns() {
        cols.push(match c.data_type() {
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                Col::Millis(c.as_primitive::<TimestampMillisecondType>())
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Col::Bytes(
                ArrayFormatter::try_new(c.as_ref(), &options).map_err(|e| e.to_string())?,
            ),
            _ => Col::Other(
                ArrayFormatter::try_new(c.as_ref(), &options).map_err(|e| e.to_string())?,
            ),
        });
    }
    let mut text = String::new();
    for row in 0..batch.num_rows() {
        for (i, (col, arr)) in cols.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            if arr.is_null(row) {
                out.extend_from_slice(b"\\N");
                continue;
            }
            text.clear();
            match col {
                Col::Millis(a) => text.push_str(&sluice_types::format_millis(a.value(row))),
                Col::Bytes(f) => {
                    use std::fmt::Write;
                    write!(text, "\\x{}", f.value(row)).map_err(|e| e.to_string())?;
                }
                Col::Other(f) => {
                    use std::fmt::Write;
                    write!(text, "{}", f.value(row)).map_err(|e| e.to_string())?;
                }
            }
            escape_into(out, &text);
        }
        out.push(b'\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use std::sync::Arc;

    #[test]
    fn escapes_and_nulls() {
        let b = RecordBatch::try_from_iter([
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a\tb\\c\nd"), None])) as _,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(1.5), None])) as _,
            ),
            (
                "t",
                Arc::new(TimestampMillisecondArray::from(vec![Some(0), None])) as _,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        copy_text(&b, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\tb\\\\c\\nd\t1.5\t1970-01-01T00:00:00.000Z\n\\N\t\\N\t\\N\n"
        );
    }

    #[test]
    fn identifiers_cannot_escape_their_quotes() {
        assert_eq!(
            quote_ident("a\"; drop table x; --"),
            "\"a\"\"; drop table x; --\""
        );
        assert_eq!(quote_table("public.My Table"), "\"public\".\"My Table\"");
    }
}
