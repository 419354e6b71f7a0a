//! The hash that sends a key's rows to one task: fixed and versioned, because it decides
//! which task (and, across workers, which partition of a topic) holds a key's state, and
//! a checkpoint's state is only valid under the hash it was taken with. Version 1 is
//! Kafka's default partitioner (murmur2 of the key's bytes, made positive, modulo the
//! partitions) over a key's canonical bytes: a single text key is its UTF-8 bytes, as a
//! producer keyed by that column writes them, so a stage keyed by the column a topic is
//! keyed by finds each key in the partition Kafka put it in.

use std::fmt::Write as _;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;

/// The version of [`key_hashes`]; recorded in every checkpoint's plan.
pub const KEY_HASH_VERSION: u32 = 1;

/// Kafka's `Utils.murmur2` (the Java client's default partitioner, and librdkafka's
/// `murmur2_random` for keyed records).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition (or task) of a key's hash among `partitions`, as Kafka chooses it.
pub fn partition_of(hash: u32, partitions: usize) -> usize {
    (hash as usize) % partitions.max(1)
}

/// Appends row `row` of `column` in its canonical form: text as its UTF-8 bytes, binary
/// as is, numbers and booleans as their decimal text (times and dates arrive cast to
/// their integer value); a null as a NUL byte.
fn canonical(
    column: &dyn Array,
    row: usize,
    out: &mut Vec<u8>,
    text: &mut String,
) -> Result<(), ArrowError> {
    if column.is_null(row) {
        out.push(0);
        return Ok(());
    }
    macro_rules! number {
        ($t:ty) => {{
            text.clear();
            let _ = write!(text, "{}", column.as_primitive::<$t>().value(row));
            out.extend_from_slice(text.as_bytes());
        }};
    }
    match column.data_type() {
        DataType::Utf8 => out.extend_from_slice(column.as_string::<i32>().value(row).as_bytes()),
        DataType::LargeUtf8 => {
            out.extend_from_slice(column.as_string::<i64>().value(row).as_bytes())
        }
        DataType::Utf8View => out.extend_from_slice(column.as_string_view().value(row).as_bytes()),
        DataType::Binary => out.extend_from_slice(column.as_binary::<i32>().value(row)),
        DataType::LargeBinary => out.extend_from_slice(column.as_binary::<i64>().value(row)),
        DataType::Boolean => {
            let v = column.as_boolean().value(row);
            out.extend_from_slice(if v { b"true" } else { b"false" });
        }
        DataType::Int8 => number!(Int8Type),
        DataType::Int16 => number!(Int16Type),
        DataType::Int32 => number!(Int32Type),
        DataType::Int64 => number!(Int64Type),
        DataType::UInt8 => number!(UInt8Type),
        DataType::UInt16 => number!(UInt16Type),
        DataType::UInt32 => number!(UInt32Type),
        DataType::UInt64 => number!(UInt64Type),
        DataType::Float32 => number!(Float32Type),
        DataType::Float64 => number!(Float64Type),
        // Anything else (decimals, lists, structs) as Arrow displays it.
        _ => {
            let f = arrow::util::display::ArrayFormatter::try_new(
                column,
                &arrow::util::display::FormatOptions::default(),
            )?;
            text.clear();
            let _ = write!(text, "{}", f.value(row));
            out.extend_from_slice(text.as_bytes());
        }
    }
    Ok(())
}

/// Each row's key hash (version [`KEY_HASH_VERSION`]): murmur2 of the row's key columns
/// in canonical form, joined by the unit separator (0x1f), made positive.
pub fn key_hashes(columns: &[ArrayRef], rows: usize, out: &mut Vec<u32>) -> Result<(), ArrowError> {
    out.clear();
    out.reserve(rows);
    let positive = |b: &[u8]| (murmur2(b) as u32) & 0x7fff_ffff;
    // The common case, one text key: its bytes straight from the array.
    if let [c] = columns
        && c.data_type() == &DataType::Utf8
    {
        let s = c.as_string::<i32>();
        for row in 0..rows {
            out.push(if s.is_null(row) {
                positive(&[0])
            } else {
                positive(s.value(row).as_bytes())
            });
        }
        return Ok(());
    }
    // Times and dates hash as their integer value: cast once per batch, not per row.
    let columns = columns
        .iter()
        .map(|c| match c.data_type() {
            DataType::Timestamp(_, _)
            | DataType::Date64
            | DataType::Time64(_)
            | DataType::Duration(_) => arrow::compute::cast(c, &DataType::Int64),
            DataType::Date32 | DataType::Time32(_) => arrow::compute::cast(c, &DataType::Int32),
            _ => Ok(c.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut bytes = Vec::with_capacity(64);
    let mut text = String::new();
    for row in 0..rows {
        bytes.clear();
        for (i, c) in columns.iter().enumerate() {
            if i > 0 {
                bytes.push(0x1f);
            }
            canonical(c.as_ref(), row, &mut bytes, &mut text)?;
        }
        out.push(positive(&bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    /// The cases of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_is_kafkas() {
        for (data, want) in [
            (&b"21"[..], -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(murmur2(data), want, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn a_text_key_hashes_as_its_bytes_and_other_keys_as_their_text() {
        let names: ArrayRef = Arc::new(StringArray::from(vec![Some("sensor-7"), None]));
        let mut h = Vec::new();
        key_hashes(std::slice::from_ref(&names), 2, &mut h).unwrap();
        assert_eq!(h[0], (murmur2(b"sensor-7") as u32) & 0x7fff_ffff);
        assert_eq!(h[1], (murmur2(&[0]) as u32) & 0x7fff_ffff);
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![42, -1]));
        key_hashes(std::slice::from_ref(&ids), 2, &mut h).unwrap();
        assert_eq!(h[0], (murmur2(b"42") as u32) & 0x7fff_ffff);
        key_hashes(&[names, ids], 2, &mut h).unwrap();
        assert_eq!(h[0], (murmur2(b"sensor-7\x1f42") as u32) & 0x7fff_ffff);
        assert!(h.iter().all(|&x| x <= 0x7fff_ffff));
        let times: ArrayRef = Arc::new(arrow::array::TimestampMillisecondArray::from(vec![
            1_714_564_800_000,
            5,
        ]));
        key_hashes(&[times], 2, &mut h).unwrap();
        assert_eq!(h[0], (murmur2(b"1714564800000") as u32) & 0x7fff_ffff);
    }
}
