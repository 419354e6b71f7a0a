//! A generator table's options: the profile, pacing, keys, seed, disorder, lateness,
//! duplicates, anomalies, limit and start, parsed and checked once.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{SchemaRef, TimestampMillisecondType};
use sluice_types::{ConnectorOptions, OptionProblem};

use super::{factory, iot, race, user_activity};

/// The options a generator table takes.
pub const OPTIONS: &[&str] = &[
    "profile",
    "rate",
    "keys",
    "seed",
    "speedup",
    "disorder",
    "late_fraction",
    "late_by",
    "duplicate_fraction",
    "anomaly_fraction",
    "limit",
    "start_time",
    "batch_size",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Iot,
    Factory,
    Race,
    UserActivity,
}

impl Profile {
    pub fn schema(self) -> SchemaRef {
        match self {
            Profile::Iot => iot::schema(),
            Profile::Factory => factory::schema(),
            Profile::Race => race::schema(),
            Profile::UserActivity => user_activity::schema(),
        }
    }
}

/// Parsed generator options.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub profile: Profile,
    pub rate: f64,
    pub keys: usize,
    pub seed: u64,
    pub speedup: f64,
    pub disorder_ms: i64,
    pub late_fraction: f64,
    pub late_by_ms: i64,
    /// The share of events that re-send one of the last few events instead of a new one,
    /// as an at-least-once producer does after a lost acknowledgement.
    pub duplicate_fraction: f64,
    /// Factory readings that are faults (above their warning level).
    pub anomaly_fraction: f64,
    pub limit: Option<u64>,
    pub start_ms: i64,
    pub batch_size: usize,
}

/// An option's value; an empty one (from `${VAR:-}`) means unset.
pub(crate) fn set_option<'a>(options: &'a ConnectorOptions, key: &str) -> Option<&'a str> {
    options.get(key).filter(|v| !v.trim().is_empty())
}

/// A number of at least 0, or `default` when the option is unset.
pub(crate) fn number_option(
    options: &ConnectorOptions,
    key: &str,
    default: f64,
) -> Result<f64, OptionProblem> {
    match set_option(options, key) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| {
                OptionProblem::new(
                    Some(key),
                    format!("{key} must be a number of at least 0, not '{v}'"),
                )
            }),
    }
}

pub(crate) fn interval_ms(key: &str, v: &str) -> Result<i64, OptionProblem> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    parse_interval(v).ok_or_else(|| {
        OptionProblem::new(
            Some(key),
            format!("{key} must be an interval such as '5s' or '2 minutes', not '{v}'"),
        )
    })
}

/// "5s", "2 minutes", "1h", "250ms".
fn parse_interval(v: &str) -> Option<i64> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit_ms = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "millisecond" | "milliseconds" => 1.0,
        "s" | "sec" | "second" | "seconds" => 1_000.0,
        "m" | "min" | "minute" | "minutes" => 60_000.0,
        "h" | "hour" | "hours" => 3_600_000.0,
        "d" | "day" | "days" => 86_400_000.0,
        _ => return None,
    };
    Some((n * unit_ms).round() as i64)
}

pub(crate) fn parse_time(key: &str, v: &str) -> Result<i64, OptionProblem> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    let arr: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec![v]));
    cast(
        &arr,
        &datafusion::arrow::datatypes::DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Millisecond,
            None,
        ),
    )
    .ok()
    .and_then(|a| {
        let a = a.as_primitive::<TimestampMillisecondType>();
        (a.null_count() == 0).then(|| a.value(0))
    })
    .ok_or_else(|| {
        OptionProblem::new(
            Some(key),
            format!("{key} must be RFC 3339 text or epoch milliseconds, not '{v}'"),
        )
    })
}

impl GeneratorOptions {
    /// Parses a generator table's options; an empty value (from `${VAR:-}`) means unset.
    pub fn parse(options: &ConnectorOptions) -> Result<Self, OptionProblem> {
        let get = |key: &str| set_option(options, key);
        let num = |key: &str, default: f64| number_option(options, key, default);
        let profile = match get("profile") {
            Some("iot") => Profile::Iot,
            Some("factory") => Profile::Factory,
            Some("race") => Profile::Race,
            Some("user_activity") | Some("user-activity") => Profile::UserActivity,
            Some(other) => {
                return Err(OptionProblem::new(
                    Some("profile"),
                    format!(
                        "unknown generator profile '{other}' (use 'iot', 'factory', 'race' or 'user_activity')"
                    ),
                ));
            }
            None => {
                return Err(OptionProblem::new(
                    Some("connector"),
                    "a generator needs profile = 'iot', 'factory', 'race' or 'user_activity'",
                ));
            }
        };
        let default_keys = match profile {
            Profile::Iot => 100.0,
            Profile::Factory => 20.0,
            Profile::Race => 10.0,
            Profile::UserActivity => 1000.0,
        };
        let share = |key: &str| -> Result<f64, OptionProblem> {
            let v = num(key, 0.0)?;
            if v > 1.0 {
                return Err(OptionProblem::new(
                    Some(key),
                    format!("{key} is a share between 0 and 1"),
                ));
            }
            Ok(v)
        };
        let late_fraction = share("late_fraction")?;
        let duplicate_fraction = share("duplicate_fraction")?;
        let anomaly_fraction = match get("anomaly_fraction") {
            Some(_) => share("anomaly_fraction")?,
            None => 0.002,
        };
        let speedup = num("speedup", 1.0)?;
        if speedup <= 0.0 {
            return Err(OptionProblem::new(
                Some("speedup"),
                "speedup must be above 0",
            ));
        }
        let now = sluice_types::now_ms();
        Ok(GeneratorOptions {
            profile,
            rate: num("rate", 1000.0)?,
            keys: num("keys", default_keys)?.max(1.0) as usize,
            seed: num("seed", 42.0)? as u64,
            speedup,
            // Race positions come every 100 ms per car: a GPS feed is out of order by
            // far less than a sensor network.
            disorder_ms: get("disorder").map_or(
                Ok(if profile == Profile::Race { 200 } else { 5_000 }),
                |v| interval_ms("disorder", v),
            )?,
            late_fraction,
            duplicate_fraction,
            anomaly_fraction,
            late_by_ms: get("late_by").map_or(Ok(3_600_000), |v| interval_ms("late_by", v))?,
            limit: get("limit")
                .map(|_| num("limit", 0.0))
                .transpose()?
                .map(|x| x as u64),
            start_ms: get("start_time").map_or(Ok(now - now.rem_euclid(60_000)), |v| {
                parse_time("start_time", v)
            })?,
            batch_size: (num("batch_size", 4096.0)? as usize).max(1),
        })
    }
}
