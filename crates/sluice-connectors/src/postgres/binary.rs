//! Arrow to PostgreSQL's binary `COPY` format: numbers, times and text go over as the
//! server stores them, so neither side prints or parses them. Used when every column
//! of the table has the type Sluice would create for it (`binary_types`); otherwise the
//! sink writes COPY's text format.

use std::borrow::Cow;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type,
};
use datafusion::arrow::record_batch::RecordBatch;

/// The signature, flags and header extension that open a binary COPY stream.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A field count of -1 ends the stream.
const TRAILER: &[u8] = &[0xff, 0xff];

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01 (UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// The column types (`pg_type.typname`, as `information_schema.columns.udt_name` shows
/// them) that take an Arrow type's binary form unchanged; `None` where Sluice writes
/// the type only as text (unsigned 64-bit, decimals, nested types).
pub(super) fn binary_types(t: &DataType) -> Option<&'static [&'static str]> {
    Some(match t {
        DataType::Boolean => &["bool"],
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => &["int2"],
        DataType::Int32 | DataType::UInt16 => &["int4"],
        DataType::Int64 | DataType::UInt32 => &["int8"],
        DataType::Float16 | DataType::Float32 => &["float4"],
        DataType::Float64 => &["float8"],
        // Both store microseconds from 2000-01-01; text ending in `Z` lands the same.
        DataType::Timestamp(_, _) => &["timestamptz", "timestamp"],
        DataType::Date32 | DataType::Date64 => &["date"],
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => &["bytea"],
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => &["text", "varchar"],
        _ => return None,
    })
}

/// One column of a batch, ready to write a value at a time: borrowed where Arrow holds
/// the values PostgreSQL takes, widened or shifted into a vector where not.
enum Field<'a> {
    Bool(&'a datafusion::arrow::array::BooleanArray),
    I16(Cow<'a, [i16]>),
    I32(Cow<'a, [i32]>),
    I64(Cow<'a, [i64]>),
    F32(Cow<'a, [f32]>),
    F64(&'a [f64]),
    Text(&'a dyn Array),
}

fn widen<T, U>(values: &[T], f: impl Fn(T) -> U) -> Cow<'static, [U]>
where
    T: Copy,
    U: Clone,
{
    Cow::Owned(values.iter().map(|v| f(*v)).collect())
}

/// Microseconds from 2000-01-01 (nanoseconds rounded to the nearest, as PostgreSQL does).
fn micros(a: &ArrayRef, unit: &TimeUnit) -> Cow<'static, [i64]> {
    match unit {
        TimeUnit::Second => widen(a.as_primitive::<TimestampSecondType>().values(), |s| {
            s.saturating_mul(1_000_000) - PG_EPOCH_MICROS
        }),
        TimeUnit::Millisecond => widen(
            a.as_primitive::<TimestampMillisecondType>().values(),
            |ms| ms.saturating_mul(1_000) - PG_EPOCH_MICROS,
        ),
        TimeUnit::Microsecond => widen(
            a.as_primitive::<TimestampMicrosecondType>().values(),
            |us| us - PG_EPOCH_MICROS,
        ),
        TimeUnit::Nanosecond => widen(a.as_primitive::<TimestampNanosecondType>().values(), |ns| {
            ns.div_euclid(1_000) + i64::from(ns.rem_euclid(1_000) >= 500) - PG_EPOCH_MICROS
        }),
    }
}

fn field(a: &ArrayRef) -> Result<Field<'_>, String> {
    Ok(match a.data_type() {
        DataType::Boolean => Field::Bool(a.as_boolean()),
        DataType::Int8 => Field::I16(widen(a.as_primitive::<Int8Type>().values(), i16::from)),
        DataType::UInt8 => Field::I16(widen(a.as_primitive::<UInt8Type>().values(), i16::from)),
        DataType::Int16 => Field::I16(Cow::Borrowed(a.as_primitive::<Int16Type>().values())),
        DataType::UInt16 => Field::I32(widen(a.as_primitive::<UInt16Type>().values(), i32::from)),
        DataType::Int32 => Field::I32(Cow::Borrowed(a.as_primitive::<Int32Type>().values())),
        DataType::UInt32 => Field::I64(widen(a.as_primitive::<UInt32Type>().values(), i64::from)),
        DataType::Int64 => Field::I64(Cow::Borrowed(a.as_primitive::<Int64Type>().values())),
        DataType::Float16 => Field::F32(widen(a.as_primitive::<Float16Type>().values(), |h| {
            h.to_f32()
        })),
        DataType::Float32 => Field::F32(Cow::Borrowed(a.as_primitive::<Float32Type>().values())),
        DataType::Float64 => Field::F64(a.as_primitive::<Float64Type>().values()),
        DataType::Timestamp(unit, _) => Field::I64(micros(a, unit)),
        DataType::Date32 => Field::I32(widen(a.as_primitive::<Date32Type>().values(), |d| {
            d - PG_EPOCH_DAYS
        })),
        DataType::Date64 => Field::I32(widen(a.as_primitive::<Date64Type>().values(), |ms| {
            ms.div_euclid(86_400_000) as i32 - PG_EPOCH_DAYS
        })),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => Field::Text(a.as_ref()),
        other => return Err(format!("no binary COPY form for {other}")),
    })
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn bytes_at(a: &dyn Array, row: usize) -> &[u8] {
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(row).as_bytes(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(row).as_bytes(),
        DataType::Utf8View => a.as_string_view().value(row).as_bytes(),
        DataType::Binary => a.as_binary::<i32>().value(row),
        DataType::LargeBinary => a.as_binary::<i64>().value(row),
        _ => a.as_binary_view().value(row),
    }
}

/// Appends a batch's rows to `out` in binary COPY format (without the header and
/// trailer, which open and end the whole stream).
fn copy_binary(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), String> {
    let fields = batch
        .columns()
        .iter()
        .map(field)
        .collect::<Result<Vec<_>, _>>()?;
    let count = (fields.len() as i16).to_be_bytes();
    for row in 0..batch.num_rows() {
        out.extend_from_slice(&count);
        for (f, a) in fields.iter().zip(batch.columns()) {
            if a.is_null(row) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            match f {
                Field::Bool(b) => put(out, &[u8::from(b.value(row))]),
                Field::I16(v) => put(out, &v[row].to_be_bytes()),
                Field::I32(v) => put(out, &v[row].to_be_bytes()),
                Field::I64(v) => put(out, &v[row].to_be_bytes()),
                Field::F32(v) => put(out, &v[row].to_be_bytes()),
                Field::F64(v) => put(out, &v[row].to_be_bytes()),
                Field::Text(a) => put(out, bytes_at(*a, row)),
            }
        }
    }
    Ok(())
}

/// A whole binary COPY stream of `batches`: header, rows, trailer.
pub fn copy_binary_stream(batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut out = HEADER.to_vec();
    for b in batches {
        copy_binary(b, &mut out)?;
    }
    out.extend_from_slice(TRAILER);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        BooleanArray, Date32Array, Float64Array, Int8Array, StringArray, TimestampMillisecondArray,
        TimestampNanosecondArray,
    };
    use std::sync::Arc;

    #[test]
    fn rows_as_postgres_stores_them() {
        let b = RecordBatch::try_from_iter([
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a\tb"), None])) as _,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(1.5), None])) as _,
            ),
            (
                "t",
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(946_684_800_001),
                    None,
                ])) as _,
            ),
            ("k", Arc::new(Int8Array::from(vec![Some(-2), Some(3)])) as _),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), None])) as _,
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![Some(10_958), None])) as _,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        copy_binary(&b, &mut out).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&6i16.to_be_bytes());
        for field in [
            &b"a\tb"[..],
            &1.5f64.to_be_bytes(),
            &1_000i64.to_be_bytes(),
            &(-2i16).to_be_bytes(),
            &[1],
            &1i32.to_be_bytes(),
        ] {
            want.extend_from_slice(&(field.len() as i32).to_be_bytes());
            want.extend_from_slice(field);
        }
        want.extend_from_slice(&6i16.to_be_bytes());
        for null_or in [None, None, None, Some(&3i16.to_be_bytes()[..]), None, None] {
            match null_or {
                None => want.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    want.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    want.extend_from_slice(v);
                }
            }
        }
        assert_eq!(out, want);
    }

    #[test]
    fn nanoseconds_round_to_the_nearest_microsecond() {
        let a: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![
            946_684_800_000_001_499,
            946_684_800_000_001_500,
            946_684_799_999_998_400,
        ]));
        assert_eq!(micros(&a, &TimeUnit::Nanosecond).as_ref(), [1, 2, -2]);
    }

    #[test]
    fn unsigned_64_bit_and_decimals_go_as_text() {
        assert!(binary_types(&DataType::UInt64).is_none());
        assert!(binary_types(&DataType::Decimal128(10, 2)).is_none());
        assert_eq!(binary_types(&DataType::Int8), Some(&["int2"][..]));
    }
}
