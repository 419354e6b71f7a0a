//! The fast path of JSON decoding: one pass over each line straight into Arrow builders,
//! for tables whose columns are all text, numbers, booleans or timestamps.
//!
//! It accepts only what it is sure arrow-json reads the same way (strict JSON, each
//! column at most once, RFC 3339 timestamps) and gives up on the whole chunk at the first
//! thing it is not sure of; [`super::JsonDecoder`] then decodes the chunk with arrow-json,
//! which also finds and reports the bad records. Its results are therefore arrow-json's,
//! by construction, and the tests compare the two on the same input.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, BooleanBuilder, NullBufferBuilder, PrimitiveArray,
    PrimitiveBuilder, StringArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;

mod cursor;
mod timestamp;

use cursor::{Cursor, Quick, Scalar, same, utf8};

use timestamp::LastDate;
#[cfg(test)]
use timestamp::parse_timestamp;

/// Why the fast path gave up: the chunk goes to arrow-json instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GiveUp;

type Fast<T> = Result<T, GiveUp>;

/// Column types that can take a [`Quick`] value instead of parsing the text.
trait Native: lexical_core::FromLexical {
    fn quick(_value: Quick) -> Option<Self> {
        None
    }
}

impl Native for f64 {
    fn quick(value: Quick) -> Option<f64> {
        value.float
    }
}

impl Native for i64 {
    fn quick(value: Quick) -> Option<i64> {
        value.integer
    }
}

macro_rules! parsed_only {
    ($($t:ty),*) => { $(impl Native for $t {})* };
}
parsed_only!(f32, i8, i16, i32, u8, u16, u32, u64);

/// One column being built.
trait Column: Send {
    fn push(&mut self, value: Scalar<'_>) -> Fast<()>;
    fn push_null(&mut self);
    fn finish(&mut self) -> ArrayRef;
}

/// A column taking one kind of scalar straight into its Arrow builder.
macro_rules! scalar_column {
    ($name:ident, $builder:ty, $variant:ident) => {
        struct $name($builder);

        impl Column for $name {
            #[inline]
            fn push(&mut self, value: Scalar<'_>) -> Fast<()> {
                match value {
                    Scalar::$variant(v) => {
                        self.0.append_value(v);
                        Ok(())
                    }
                    _ => Err(GiveUp),
                }
            }
            fn push_null(&mut self) {
                self.0.append_null();
            }
            fn finish(&mut self) -> ArrayRef {
                Arc::new(self.0.finish())
            }
        }
    };
}

scalar_column!(Boolean, BooleanBuilder, Bool);

/// A text column: the strings' bytes side by side, checked as UTF-8 once, when the
/// column is finished (a chunk holding a string that is not gives up as a whole).
struct Text {
    offsets: Vec<i32>,
    values: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl Text {
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Text {
            offsets,
            values: Vec::with_capacity(rows * 16),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    #[inline]
    fn push(&mut self, value: Scalar<'_>) -> Fast<()> {
        match value {
            Scalar::Str(v) => self.push_str(v),
            _ => Err(GiveUp),
        }
    }

    #[inline(always)]
    fn push_str(&mut self, v: &[u8]) -> Fast<()> {
        self.values.extend_from_slice(v);
        self.offsets
            .push(i32::try_from(self.values.len()).map_err(|_| GiveUp)?);
        self.nulls.append_non_null();
        Ok(())
    }

    fn push_null(&mut self) {
        self.offsets.push(*self.offsets.last().unwrap_or(&0));
        self.nulls.append_null();
    }

    /// The column, or [`GiveUp`] if its bytes are not UTF-8.
    fn finish(&mut self) -> Fast<ArrayRef> {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let values = std::mem::take(&mut self.values);
        let array = StringArray::try_new(
            OffsetBuffer::new(offsets.into()),
            values.into(),
            self.nulls.finish(),
        )
        .map_err(|_| GiveUp)?;
        Ok(Arc::new(array))
    }
}

/// Integers take integer text only, floats any number; both parse with lexical-core, as
/// arrow-json does.
struct Number<T: ArrowPrimitiveType> {
    builder: PrimitiveBuilder<T>,
    integer: bool,
}

impl<T> Column for Number<T>
where
    T: ArrowPrimitiveType,
    T::Native: Native,
{
    #[inline]
    fn push(&mut self, value: Scalar<'_>) -> Fast<()> {
        match value {
            Scalar::Num { text, int, value } if int || !self.integer => {
                let v = match T::Native::quick(value) {
                    Some(v) => v,
                    None => lexical_core::parse::<T::Native>(text).map_err(|_| GiveUp)?,
                };
                self.builder.append_value(v);
                Ok(())
            }
            _ => Err(GiveUp),
        }
    }
    fn push_null(&mut self) {
        self.builder.append_null();
    }
    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.builder.finish())
    }
}

/// A timestamp without a time zone: RFC 3339 text (read as UTC when it names no offset)
/// or an integer in the column's unit.
struct Timestamp {
    unit: TimeUnit,
    last_date: LastDate,
    values: Vec<i64>,
    valid: Vec<bool>,
}

impl Column for Timestamp {
    #[inline]
    fn push(&mut self, value: Scalar<'_>) -> Fast<()> {
        let v = match value {
            Scalar::Str(s) => self.last_date.parse(s, self.unit).ok_or(GiveUp)?,
            Scalar::Num {
                text,
                int: true,
                value,
            } => match value.integer {
                Some(v) => v,
                None => lexical_core::parse::<i64>(text).map_err(|_| GiveUp)?,
            },
            _ => return Err(GiveUp),
        };
        self.values.push(v);
        self.valid.push(true);
        Ok(())
    }
    fn push_null(&mut self) {
        self.values.push(0);
        self.valid.push(false);
    }
    fn finish(&mut self) -> ArrayRef {
        let values = std::mem::take(&mut self.values);
        let valid = std::mem::take(&mut self.valid);
        let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
        fn array<T: ArrowPrimitiveType<Native = i64>>(
            v: Vec<i64>,
            n: Option<NullBuffer>,
        ) -> ArrayRef {
            Arc::new(PrimitiveArray::<T>::new(v.into(), n))
        }
        match self.unit {
            TimeUnit::Second => array::<TimestampSecondType>(values, nulls),
            TimeUnit::Millisecond => array::<TimestampMillisecondType>(values, nulls),
            TimeUnit::Microsecond => array::<TimestampMicrosecondType>(values, nulls),
            TimeUnit::Nanosecond => array::<TimestampNanosecondType>(values, nulls),
        }
    }
}

/// A column being built: the common types called directly (inlined into the line's
/// loop), the others through [`Column`]'s table.
enum Builder {
    Text(Text),
    Float64(Number<Float64Type>),
    Int64(Number<Int64Type>),
    Timestamp(Timestamp),
    Other(Box<dyn Column>),
}

impl Builder {
    #[inline(always)]
    fn push(&mut self, value: Scalar<'_>) -> Fast<()> {
        match self {
            Builder::Text(c) => c.push(value),
            Builder::Float64(c) => c.push(value),
            Builder::Int64(c) => c.push(value),
            Builder::Timestamp(c) => c.push(value),
            Builder::Other(c) => c.push(value),
        }
    }

    fn push_null(&mut self) {
        match self {
            Builder::Text(c) => c.push_null(),
            Builder::Float64(c) => c.push_null(),
            Builder::Int64(c) => c.push_null(),
            Builder::Timestamp(c) => c.push_null(),
            Builder::Other(c) => c.push_null(),
        }
    }

    fn finish(&mut self) -> Fast<ArrayRef> {
        Ok(match self {
            Builder::Text(c) => c.finish()?,
            Builder::Float64(c) => c.finish(),
            Builder::Int64(c) => c.finish(),
            Builder::Timestamp(c) => c.finish(),
            Builder::Other(c) => c.finish(),
        })
    }
}

fn column(data_type: &DataType, capacity: usize) -> Option<Builder> {
    fn number<T>(capacity: usize, integer: bool) -> Number<T>
    where
        T: ArrowPrimitiveType,
        T::Native: Native,
    {
        Number::<T> {
            builder: PrimitiveBuilder::with_capacity(capacity),
            integer,
        }
    }
    fn other(c: impl Column + 'static) -> Builder {
        Builder::Other(Box::new(c))
    }
    Some(match data_type {
        DataType::Utf8 => Builder::Text(Text::with_capacity(capacity)),
        DataType::Boolean => other(Boolean(BooleanBuilder::with_capacity(capacity))),
        DataType::Float64 => Builder::Float64(number(capacity, false)),
        DataType::Float32 => other(number::<Float32Type>(capacity, false)),
        DataType::Int8 => other(number::<Int8Type>(capacity, true)),
        DataType::Int16 => other(number::<Int16Type>(capacity, true)),
        DataType::Int32 => other(number::<Int32Type>(capacity, true)),
        DataType::Int64 => Builder::Int64(number(capacity, true)),
        DataType::UInt8 => other(number::<UInt8Type>(capacity, true)),
        DataType::UInt16 => other(number::<UInt16Type>(capacity, true)),
        DataType::UInt32 => other(number::<UInt32Type>(capacity, true)),
        DataType::UInt64 => other(number::<UInt64Type>(capacity, true)),
        DataType::Timestamp(unit, None) => Builder::Timestamp(Timestamp {
            unit: *unit,
            last_date: LastDate::default(),
            values: Vec::with_capacity(capacity),
            valid: Vec::with_capacity(capacity),
        }),
        _ => return None,
    })
}

/// Decodes flat JSON objects; see the module's note for what it accepts.
pub(crate) struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<Box<[u8]>>,
    /// Per column, `"name"` as it appears in a line (names holding a quote or a
    /// backslash have none: their keys are always read and compared).
    quoted: Vec<Option<Box<[u8]>>>,
    nullable: Vec<bool>,
}

impl FlatDecoder {
    /// `None` when a column's type is not one the fast path reads (or there are no
    /// columns, or more than 64).
    pub(crate) fn new(schema: &SchemaRef) -> Option<Self> {
        if schema.fields().is_empty() || schema.fields().len() > 64 {
            return None;
        }
        for f in schema.fields() {
            column(f.data_type(), 0)?;
        }
        Some(FlatDecoder {
            schema: schema.clone(),
            names: schema
                .fields()
                .iter()
                .map(|f| f.name().as_bytes().into())
                .collect(),
            quoted: schema
                .fields()
                .iter()
                .map(|f| {
                    let n = f.name().as_bytes();
                    (!n.iter().any(|b| matches!(b, b'"' | b'\\')))
                        .then(|| [b"\"", n, b"\""].concat().into())
                })
                .collect(),
            nullable: schema.fields().iter().map(|f| f.is_nullable()).collect(),
        })
    }

    /// All `records` as one batch, or [`GiveUp`] at the first thing the fast path does
    /// not read.
    pub(crate) fn decode(&self, records: &[&[u8]]) -> Fast<RecordBatch> {
        let mut columns = self
            .schema
            .fields()
            .iter()
            .map(|f| column(f.data_type(), records.len()).ok_or(GiveUp))
            .collect::<Fast<Vec<_>>>()?;
        let mut guess = 0;
        for r in records {
            self.row(r, &mut columns, &mut guess)?;
        }
        let arrays = columns
            .iter_mut()
            .map(|c| c.finish())
            .collect::<Fast<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|_| GiveUp)
    }

    /// The column named `key`, trying first the one after the last found (fields
    /// usually come in the same order on every line).
    fn lookup(&self, key: &[u8], guess: &mut usize) -> Option<usize> {
        let n = self.names.len();
        for k in 0..n {
            let i = (*guess + k) % n;
            if *self.names[i] == *key {
                *guess = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    fn row(&self, line: &[u8], columns: &mut [Builder], guess: &mut usize) -> Fast<()> {
        // Outside strings the grammar takes ASCII only, so a line is UTF-8 where its
        // strings are: those a column keeps are checked with it, the others here.
        let mut c = Cursor { b: line, i: 0 };
        c.ws();
        c.expect(b'{')?;
        c.ws();
        let mut seen = 0u64;
        if c.peek() == Some(b'}') {
            c.i += 1;
        } else {
            loop {
                // Keys usually come in the same order on every line: the expected one is
                // matched as a whole, quotes included, else the key is read and looked up.
                let expected = self.quoted[*guess]
                    .as_deref()
                    .filter(|q| c.b.get(c.i..c.i + q.len()).is_some_and(|k| same(k, q)));
                let field = match expected {
                    Some(q) => {
                        c.i += q.len();
                        let f = *guess;
                        *guess = if f + 1 == self.names.len() { 0 } else { f + 1 };
                        Some(f)
                    }
                    None => {
                        c.expect(b'"')?;
                        let key = c.plain_string()?;
                        let found = self.lookup(key, guess);
                        if found.is_none() {
                            utf8(key)?;
                        }
                        found
                    }
                };
                // Compact JSON (`"key":value`) first, then any whitespace.
                if c.peek() == Some(b':') {
                    c.i += 1;
                } else {
                    c.ws();
                    c.expect(b':')?;
                }
                c.ws();
                match field {
                    Some(f) => {
                        if seen & (1 << f) != 0 {
                            return Err(GiveUp);
                        }
                        seen |= 1 << f;
                        match c.scalar()? {
                            Some(v) => columns[f].push(v)?,
                            None if self.nullable[f] => columns[f].push_null(),
                            None => return Err(GiveUp),
                        }
                    }
                    None => c.skip_value(0)?,
                }
                c.ws();
                match c.next()? {
                    b',' => c.ws(),
                    b'}' => break,
                    _ => return Err(GiveUp),
                }
            }
        }
        c.ws();
        if c.i != c.b.len() {
            return Err(GiveUp);
        }
        if seen == u64::MAX >> (64 - columns.len()) {
            return Ok(());
        }
        for (f, col) in columns.iter_mut().enumerate() {
            if seen & (1 << f) == 0 {
                if !self.nullable[f] {
                    return Err(GiveUp);
                }
                col.push_null();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
