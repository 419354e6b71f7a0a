//! The scan of one line: JSON's grammar checked byte by byte, each scalar handed out as
//! the line holds it ([`Scalar`]), with a number's value where it can be told exactly.

use super::{Fast, GiveUp};

/// A scalar as the line holds it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scalar<'a> {
    /// A string without escapes, as bytes: UTF-8 is checked where it is kept (a text
    /// column checks its whole buffer once, when finished; a timestamp reads ASCII only).
    Str(&'a [u8]),
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
pub(super) struct Quick {
    pub(super) integer: Option<i64>,
    pub(super) float: Option<f64>,
}

/// Reads one line.
pub(super) struct Cursor<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

const MAX_DEPTH: usize = 64;

impl<'a> Cursor<'a> {
    pub(super) fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    pub(super) fn next(&mut self) -> Fast<u8> {
        let b = self.peek().ok_or(GiveUp)?;
        self.i += 1;
        Ok(b)
    }

    pub(super) fn expect(&mut self, want: u8) -> Fast<()> {
        if self.next()? == want {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// After an opening quote: the string up to its closing quote, if it has no escapes.
    /// Its bytes are not checked as UTF-8.
    pub(super) fn plain_string(&mut self) -> Fast<&'a [u8]> {
        let rest = &self.b[self.i..];
        match quote_or_backslash(rest) {
            Some(n) if rest[n] == b'"' => {
                let s = &rest[..n];
                self.i += n + 1;
                Ok(s)
            }
            _ => Err(GiveUp),
        }
    }

    /// After an opening quote: past the closing quote, escapes and UTF-8 checked.
    fn skip_string(&mut self) -> Fast<()> {
        loop {
            let rest = &self.b[self.i..];
            let n = quote_or_backslash(rest).ok_or(GiveUp)?;
            utf8(&rest[..n])?;
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
    pub(super) fn scalar(&mut self) -> Fast<Option<Scalar<'a>>> {
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
    pub(super) fn skip_value(&mut self, depth: usize) -> Fast<()> {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        match self.peek().ok_or(GiveUp)? {
            b'"' => {
                self.i += 1;
                self.skip_string()
            }
            b'{' => self.skip_items(b'}', depth, true),
            b'[' => self.skip_items(b']', depth, false),
            _ => self.scalar().map(|_| ()),
        }
    }

    /// At `{` or `[`: past its items and `close`, each item of an object after its
    /// `"key":`.
    fn skip_items(&mut self, close: u8, depth: usize, keyed: bool) -> Fast<()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            if keyed {
                self.expect(b'"')?;
                self.skip_string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
            }
            self.skip_value(depth + 1)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                c if c == close => return Ok(()),
                _ => return Err(GiveUp),
            }
        }
    }
}

/// [`GiveUp`] unless `b` is UTF-8.
pub(super) fn utf8(b: &[u8]) -> Fast<()> {
    if b.is_ascii() || std::str::from_utf8(b).is_ok() {
        Ok(())
    } else {
        Err(GiveUp)
    }
}

/// Equality of short slices (keys), eight bytes at a time, without a call out to
/// `memcmp`: the last word overlaps the one before rather than going byte by byte.
#[inline]
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    fn word(s: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    }
    let mut diff = word(a, n - 8) ^ word(b, n - 8);
    let mut i = 0;
    while i + 8 < n {
        diff |= word(a, i) ^ word(b, i);
        i += 8;
    }
    diff == 0
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
