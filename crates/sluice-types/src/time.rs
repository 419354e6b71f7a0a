//! Event time and progress as types: a [`Watermark`] is a promise that no more
//! on-time rows older than it will arrive; an [`Epoch`] numbers checkpoints.

use std::fmt;

/// Event-time watermark in milliseconds since the Unix epoch (UTC).
///
/// `Watermark::MIN` means "nothing known yet"; `Watermark::MAX` means the input
/// has ended and every window may close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(i64);

impl Watermark {
    pub const MIN: Watermark = Watermark(i64::MIN);
    pub const MAX: Watermark = Watermark(i64::MAX);

    pub fn from_millis(ms: i64) -> Self {
        Watermark(ms)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn is_known(self) -> bool {
        self != Watermark::MIN
    }

    /// The watermark implied by a maximum event time and a declared delay.
    pub fn from_max_event_time(max_event_ms: i64, delay_ms: i64) -> Self {
        Watermark(max_event_ms.saturating_sub(delay_ms))
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Watermark::MIN => f.write_str("-"),
            Watermark::MAX => f.write_str("end of input"),
            Watermark(ms) => f.write_str(&format_millis(ms)),
        }
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC text (`2024-05-01T12:00:00.000Z`).
/// The wall clock, ms since the Unix epoch: the one clock for "when" (checkpoint and
/// bad-record times, watermark lag).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn format_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A checkpoint number. Epochs only grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl Epoch {
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// "5 minutes", "1 hour 30 minutes", "10s", "250ms".
pub fn parse_interval_text(text: &str) -> Result<i64, String> {
    let mut total = 0f64;
    let mut words = Vec::new();
    for part in text.split_whitespace() {
        let split = part
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(part.len());
        let (num, unit) = part.split_at(split);
        if !num.is_empty() {
            words.push(num.to_string());
        }
        if !unit.is_empty() {
            words.push(unit.to_string());
        }
    }
    if words.is_empty() || words.len() % 2 != 0 {
        return Err(format!(
            "'{text}' is not an interval (write e.g. '5 minutes' or '10s')"
        ));
    }
    for pair in words.chunks(2) {
        let n: f64 = pair[0]
            .parse()
            .map_err(|_| format!("'{text}' is not an interval"))?;
        total += n * unit_millis(&pair[1])
            .ok_or_else(|| format!("unknown time unit '{}'", pair[1]))? as f64;
    }
    Ok(total.round() as i64)
}

fn unit_millis(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "w" | "week" | "weeks" => 7 * 86_400_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_millis(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(format_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn watermark_orders_and_displays() {
        assert!(Watermark::MIN < Watermark::from_millis(0));
        assert!(Watermark::from_millis(0) < Watermark::MAX);
        assert_eq!(Watermark::from_max_event_time(600_000, 600_000).millis(), 0);
        assert_eq!(Watermark::MAX.to_string(), "end of input");
    }
}
