//! Turns SQL interval literals (`INTERVAL '5' MINUTE`, `INTERVAL '5 minutes'`) into milliseconds.

use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Interval, Value};
pub use sluice_types::parse_interval_text;

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
