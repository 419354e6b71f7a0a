//! Turns SQL interval literals (`INTERVAL '5' MINUTE`, `INTERVAL '5 minutes'`) into milliseconds.

use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Interval, Value};

/// Milliseconds of an interval literal, or a sentence saying why it is not one.
pub fn interval_millis(expr: &Expr) -> Result<i64, String> {
    let Expr::Interval(Interval {
        value,
        leading_field,
        ..
    }) = expr
    else {
        return Err(format!(
            "expected an interval such as INTERVAL '5' MINUTE, found {expr}"
        ));
    };
    let text = match value.as_ref() {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
            other => return Err(format!("expected a quoted interval value, found {other}")),
        },
        other => return Err(format!("expected a quoted interval value, found {other}")),
    };
    let ms = match leading_field {
        Some(field) => {
            let n: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))?;
            n * unit_millis_of_field(field)? as f64
        }
        None => parse_interval_text(&text)? as f64,
    };
    if ms <= 0.0 {
        return Err(format!("interval {expr} must be positive"));
    }
    Ok(ms.round() as i64)
}

fn unit_millis_of_field(field: &DateTimeField) -> Result<i64, String> {
    Ok(match field {
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1,
        DateTimeField::Second | DateTimeField::Seconds => 1_000,
        DateTimeField::Minute | DateTimeField::Minutes => 60_000,
        DateTimeField::Hour | DateTimeField::Hours => 3_600_000,
        DateTimeField::Day | DateTimeField::Days => 86_400_000,
        DateTimeField::Week(_) | DateTimeField::Weeks => 7 * 86_400_000,
        other => return Err(format!("interval unit {other} has no fixed length")),
    })
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
    fn parses_text_intervals() {
        assert_eq!(parse_interval_text("5 minutes").unwrap(), 300_000);
        assert_eq!(parse_interval_text("1 hour 30 minutes").unwrap(), 5_400_000);
        assert_eq!(parse_interval_text("10s").unwrap(), 10_000);
        assert_eq!(parse_interval_text("250ms").unwrap(), 250);
        assert!(parse_interval_text("soon").is_err());
        assert!(parse_interval_text("5 fortnights").is_err());
    }
}
