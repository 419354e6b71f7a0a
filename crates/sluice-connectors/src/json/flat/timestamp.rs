//! RFC 3339 timestamps as the fast path of JSON decoding reads them: exactly what
//! arrow-json accepts for a timestamp column without a time zone, else nothing.

use datafusion::arrow::datatypes::TimeUnit;

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM]` (no offset: UTC) in `unit`; `None` for
/// anything else, leap seconds and values out of range included.
#[cfg(test)]
pub(crate) fn parse_timestamp(s: &[u8], unit: TimeUnit) -> Option<i64> {
    LastDate::default().parse(s, unit)
}

/// Parses timestamps, keeping the day of the last date read: the times of a stream come
/// mostly from one day, whose date is then checked and counted once.
#[derive(Debug, Default)]
pub(crate) struct LastDate {
    text: [u8; 10],
    /// Days since 1970-01-01 of `text`, once it has held a valid date.
    days: Option<i64>,
}

/// Two ASCII digits at `i` as a number.
#[inline(always)]
fn two(s: &[u8], i: usize) -> Option<i64> {
    let (a, b) = (s[i].wrapping_sub(b'0'), s[i + 1].wrapping_sub(b'0'));
    (a < 10 && b < 10).then_some(i64::from(a) * 10 + i64::from(b))
}

const POW10: [i64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

impl LastDate {
    /// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM]` (no offset: UTC) in `unit`; `None` for
    /// anything else, leap seconds and values out of range included.
    #[inline]
    pub(crate) fn parse(&mut self, s: &[u8], unit: TimeUnit) -> Option<i64> {
        if s.len() < 19 {
            return None;
        }
        let days = match self.days {
            Some(days) if s[..10] == self.text => days,
            _ => {
                let days = date(&s[..10])?;
                self.text.copy_from_slice(&s[..10]);
                self.days = Some(days);
                days
            }
        };
        if !matches!(s[10], b'T' | b' ') || s[13] != b':' || s[16] != b':' {
            return None;
        }
        let (hour, minute, second) = (two(s, 11)?, two(s, 14)?, two(s, 17)?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if s.get(i) == Some(&b'.') {
            i += 1;
            let from = i;
            while let Some(d) = s.get(i).map(|b| b.wrapping_sub(b'0'))
                && d < 10
            {
                nanos = nanos * 10 + i64::from(d);
                i += 1;
            }
            let n = i - from;
            if n == 0 || n > 9 {
                return None;
            }
            nanos *= POW10[9 - n];
        }
        let offset = match &s[i..] {
            [] | [b'Z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (two(s, i + 1)?, two(s, i + 4)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let o = h * 3600 + m * 60;
                if *sign == b'-' { -o } else { o }
            }
            _ => return None,
        };
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
        match unit {
            TimeUnit::Second => Some(secs),
            TimeUnit::Millisecond => Some(secs * 1_000 + nanos / 1_000_000),
            TimeUnit::Microsecond => Some(secs * 1_000_000 + nanos / 1_000),
            TimeUnit::Nanosecond => secs.checked_mul(1_000_000_000)?.checked_add(nanos),
        }
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01, if it is a date.
fn date(s: &[u8]) -> Option<i64> {
    if s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let year = two(s, 0)? * 100 + two(s, 2)?;
    let (month, day) = (two(s, 5)?, two(s, 8)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_date_reads_as_a_fresh_one() {
        let times = [
            "2024-02-29T10:00:00Z",
            "2024-02-29T23:59:59.999",
            "2024-02-29 00:00:01+01:00",
            "2024-02-30T10:00:00Z",
            "2024-02-29T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-02-29T24:00:00Z",
            "2024-02-29X10:00:00Z",
            "2024-02-29T10:00:00.1234567891",
            "1969-12-31T23:59:59.5Z",
            "2024-02-29T10:00",
            "2024-03-01T00:00:00-00:30",
        ];
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let mut kept = LastDate::default();
            for t in times.iter().chain(times.iter().rev()) {
                let fresh = parse_timestamp(t.as_bytes(), unit);
                assert_eq!(kept.parse(t.as_bytes(), unit), fresh, "{t} in {unit:?}");
            }
        }
        assert_eq!(
            parse_timestamp(b"2024-02-29T10:00:00Z", TimeUnit::Second),
            Some(1_709_200_800)
        );
        assert_eq!(
            parse_timestamp(b"2024-02-30T10:00:00Z", TimeUnit::Second),
            None
        );
    }
}
