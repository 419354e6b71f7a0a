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
    ArrayRef, ArrowPrimitiveType, BooleanBuilder, PrimitiveArray, PrimitiveBuilder, StringBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;

mod timestamp;

use timestamp::LastDate;
#[cfg(test)]
use timestamp::parse_timestamp;

/// Why the fast path gave up: the chunk goes to arrow-json instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GiveUp;

type Fast<T> = Result<T, GiveUp>;

/// A scalar as the line holds it.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    /// A string without escapes (already valid UTF-8: the whole line is checked).
    Str(&'a str),
    /// A number's text, checked against JSON's grammar; `int` if it has no fraction or
    /// exponent; its value where the scan could tell it exactly.
    Num {
        text: &'a [u8],
        int: bool,
        value: Quick,
    },
    Bool(bool),
}

/// A number's value read during the scan: an integer of up to 18 digits, or a float
/// whose digits and power of ten are both exact in an `f64` (so one multiplication or
/// division rounds it correctly, as lexical-core would: Clinger's fast path).
#[derive(Debug, Clone, Copy, Default)]
struct Quick {
    integer: Option<i64>,
    float: Option<f64>,
}

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

scalar_column!(Text, StringBuilder, Str);
scalar_column!(Boolean, BooleanBuilder, Bool);

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
            Scalar::Str(s) => self
                .last_date
                .parse(s.as_bytes(), self.unit)
                .ok_or(GiveUp)?,
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

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(c) => c.finish(),
            Builder::Float64(c) => c.finish(),
            Builder::Int64(c) => c.finish(),
            Builder::Timestamp(c) => c.finish(),
            Builder::Other(c) => c.finish(),
        }
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
        DataType::Utf8 => {
            Builder::Text(Text(StringBuilder::with_capacity(capacity, capacity * 16)))
        }
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
        let arrays = columns.iter_mut().map(|c| c.finish()).collect();
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
        let text = simdutf8::basic::from_utf8(line).map_err(|_| GiveUp)?;
        let mut c = Cursor {
            b: text.as_bytes(),
            s: text,
            i: 0,
        };
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
                        self.lookup(key.as_bytes(), guess)
                    }
                };
                c.ws();
                c.expect(b':')?;
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

/// Reads one line of valid UTF-8.
struct Cursor<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

const MAX_DEPTH: usize = 64;

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Fast<u8> {
        let b = self.peek().ok_or(GiveUp)?;
        self.i += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Fast<()> {
        if self.next()? == want {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// After an opening quote: the string up to its closing quote, if it has no escapes.
    fn plain_string(&mut self) -> Fast<&'a str> {
        let rest = &self.b[self.i..];
        match quote_or_backslash(rest) {
            Some(n) if rest[n] == b'"' => {
                let s = &self.s[self.i..self.i + n];
                self.i += n + 1;
                Ok(s)
            }
            _ => Err(GiveUp),
        }
    }

    /// After an opening quote: past the closing quote, escapes checked.
    fn skip_string(&mut self) -> Fast<()> {
        loop {
            let rest = &self.b[self.i..];
            let n = quote_or_backslash(rest).ok_or(GiveUp)?;
            self.i += n + 1;
            if rest[n] == b'"' {
                return Ok(());
            }
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                // A \u escape: four hex digits; surrogates are left to arrow-json.
                b'u' => {
                    let hex = self.b.get(self.i..self.i + 4).ok_or(GiveUp)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return Err(GiveUp);
                    }
                    let code =
                        u16::from_str_radix(std::str::from_utf8(hex).map_err(|_| GiveUp)?, 16)
                            .map_err(|_| GiveUp)?;
                    if (0xD800..0xE000).contains(&code) {
                        return Err(GiveUp);
                    }
                    self.i += 4;
                }
                _ => return Err(GiveUp),
            }
        }
    }

    /// A number per JSON's grammar: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
    #[inline(always)]
    fn number(&mut self) -> Fast<Scalar<'a>> {
        const POW10: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
            1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
        ];
        let start = self.i;
        // The digits as one integer (while it fits), and how many there are.
        let mut mantissa = 0u64;
        let mut count = 0usize;
        let mut digits = |c: &mut Self| {
            let from = c.i;
            while let Some(d @ b'0'..=b'9') = c.peek() {
                mantissa = mantissa.wrapping_mul(10).wrapping_add((d - b'0') as u64);
                c.i += 1;
            }
            count += c.i - from;
            c.i - from
        };
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(GiveUp),
        }
        let mut int = true;
        let mut fraction = 0;
        if self.peek() == Some(b'.') {
            self.i += 1;
            int = false;
            fraction = digits(self);
            if fraction == 0 {
                return Err(GiveUp);
            }
        }
        let mut exponent: Option<i64> = Some(0);
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            int = false;
            let sign = match self.peek() {
                Some(b'-') => -1,
                Some(b'+') => 1,
                _ => 0,
            };
            if sign != 0 {
                self.i += 1;
            }
            let from = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            if self.i == from {
                return Err(GiveUp);
            }
            exponent = std::str::from_utf8(&self.b[from..self.i])
                .ok()
                .and_then(|e| e.parse::<i64>().ok())
                .filter(|e| *e <= 400)
                .map(|e| if sign < 0 { -e } else { e });
        }
        // arrow-json reads a number on while these follow; let it judge such text.
        if let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.peek() {
            return Err(GiveUp);
        }
        let mut value = Quick::default();
        if int && count <= 18 {
            let v = mantissa as i64;
            value.integer = Some(if negative { -v } else { v });
        }
        if count <= 15
            && let Some(e) = exponent.map(|e| e - fraction as i64)
            && (-22..=22).contains(&e)
        {
            let m = mantissa as f64;
            let v = if e < 0 {
                m / POW10[(-e) as usize]
            } else {
                m * POW10[e as usize]
            };
            value.float = Some(if negative { -v } else { v });
        }
        Ok(Scalar::Num {
            text: &self.b[start..self.i],
            int,
            value,
        })
    }

    fn literal(&mut self, word: &[u8]) -> Fast<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// A column's value: `None` for `null`; strings with escapes, objects and arrays
    /// give up.
    #[inline(always)]
    fn scalar(&mut self) -> Fast<Option<Scalar<'a>>> {
        Ok(Some(match self.peek().ok_or(GiveUp)? {
            b'"' => {
                self.i += 1;
                Scalar::Str(self.plain_string()?)
            }
            b'-' | b'0'..=b'9' => self.number()?,
            b't' => {
                self.literal(b"true")?;
                Scalar::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Scalar::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                return Ok(None);
            }
            _ => return Err(GiveUp),
        }))
    }

    /// Past a value of a field no column reads, checked as JSON.
    fn skip_value(&mut self, depth: usize) -> Fast<()> {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        match self.peek().ok_or(GiveUp)? {
            b'"' => {
                self.i += 1;
                self.skip_string()
            }
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.expect(b'"')?;
                    self.skip_string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b'}' => return Ok(()),
                        _ => return Err(GiveUp),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b']' => return Ok(()),
                        _ => return Err(GiveUp),
                    }
                }
            }
            _ => self.scalar().map(|_| ()),
        }
    }
}

/// Byte-wise equality of short slices, without a call out to `memcmp`.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first `"` or `\\` in `b`, eight bytes at a time (strings in records are short, and
/// a SIMD search costs more to set up than it saves on them).
fn quote_or_backslash(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits = zero_byte(w ^ (ONES * b'"' as u64)) | zero_byte(w ^ (ONES * b'\\' as u64));
        if hits != 0 {
            // The lowest flagged byte is a true match (borrows only run upwards).
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| i + p)
}

#[cfg(test)]
mod tests;
