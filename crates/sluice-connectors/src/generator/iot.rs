//! IoT sensor readings. Each sensor sits in one location; temperature follows a daily
//! curve per location with noise and occasional spikes above 30 °C; batteries drain over
//! days and are replaced, so at any time some are below 20 %. Reading n is a function of
//! n, its time and the seed alone (counter-based random numbers; curves from
//! polynomials rather than libm, tabled by the minute): the same bits on every machine,
//! and cheap — ids and locations are slices of one round of the sensors.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray, new_empty_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::rng::{Rng, draw, mix, normal_of, unit_of};

pub const LOCATIONS: &[&str] = &[
    "warehouse-a",
    "warehouse-b",
    "office",
    "server-room",
    "greenhouse",
    "cold-store",
    "loading-dock",
    "lab",
];

const DAY_MS: i64 = 86_400_000;
/// The pressure's period: three days.
const PRESSURE_MS: i64 = 3 * DAY_MS;
/// Random numbers per reading: temperature noise, spike, humidity noise, pressure noise.
const DRAWS: u64 = 4;
/// A spike in 250 readings (0.4 %), as a threshold on 32 random bits.
const SPIKE_BELOW: u64 = (0.004 * (1u64 << 32) as f64) as u64;

/// cos(2π·x) for x in [-1, 1], by a polynomial (within 1e-10).
fn cos_turns(x: f64) -> f64 {
    let x = if x > 0.5 {
        x - 1.0
    } else if x < -0.5 {
        x + 1.0
    } else {
        x
    };
    // cos is even, and cos(2π(½ − y)) = −cos(2πy): reduce to [0, ¼].
    let y = x.abs();
    let (y, sign) = if y > 0.25 { (0.5 - y, -1.0) } else { (y, 1.0) };
    let t = y * std::f64::consts::TAU;
    let t2 = t * t;
    // Taylor's series to t^14 (on [0, π/2] the next term is below 7e-11).
    let mut p = -1.0 / 87_178_291_200.0;
    p = p * t2 + 1.0 / 479_001_600.0;
    p = p * t2 - 1.0 / 3_628_800.0;
    p = p * t2 + 1.0 / 40_320.0;
    p = p * t2 - 1.0 / 720.0;
    p = p * t2 + 1.0 / 24.0;
    p = p * t2 - 0.5;
    sign * (p * t2 + 1.0)
}

/// sin(2π·x) for x in [-0.75, 1.25].
fn sin_turns(x: f64) -> f64 {
    cos_turns(x - 0.25)
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor_id", DataType::Utf8, false),
        Field::new("location", DataType::Utf8, false),
        Field::new("temperature", DataType::Float64, true),
        Field::new("humidity", DataType::Float64, true),
        Field::new("pressure", DataType::Float64, true),
        Field::new("battery_level", DataType::Float64, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        // The reading's own number: a re-sent reading (duplicate_fraction) repeats it.
        Field::new("reading_id", DataType::Int64, false),
    ]))
}

struct Sensor {
    id: String,
    location: usize,
    /// Battery drain in percent per day, and the time of the last replacement.
    drain_per_day: f64,
    installed_ms: i64,
    offset: f64,
}

/// Generates readings for `keys` sensors, round robin.
pub struct IotModel {
    sensors: Vec<Sensor>,
    base: Vec<f64>,
    /// The random stream of the readings' noise.
    stream: u64,
    /// The sensors' ids and locations in round-robin order, `keys + BATCH_MAX` of them
    /// (longer, when a batch is): a batch's columns are slices of these, not copies.
    ids: StringArray,
    locations: StringArray,
    /// The daily curve (cos, one cycle a day) and the pressure's (sin, one cycle in three
    /// days) at each minute, one past the end: readings interpolate between minutes.
    daily: Vec<f64>,
    weather: Vec<f64>,
}

/// The computed columns' places in [`schema`].
const TEMPERATURE: usize = 2;
const HUMIDITY: usize = 3;
const PRESSURE: usize = 4;
const BATTERY: usize = 5;

/// Batches up to this long take their id and location columns as slices.
const BATCH_MAX: usize = 8192;
const MINUTE_MS: i64 = 60_000;

/// `cycle` at `t`: linear between the values at the whole minutes around it.
fn at_minute(cycle: &[f64], period_ms: i64, t: i64) -> f64 {
    let into = t.rem_euclid(period_ms);
    let m = (into / MINUTE_MS) as usize;
    let frac = (into % MINUTE_MS) as f64 * (1.0 / MINUTE_MS as f64);
    cycle[m] + (cycle[m + 1] - cycle[m]) * frac
}

impl IotModel {
    pub fn new(keys: usize, seed: u64, start_ms: i64) -> Self {
        let keys = keys.max(1);
        let sensors: Vec<Sensor> = (0..keys)
            .map(|k| {
                let h = mix(seed, k as u64);
                let mut r = Rng::new(h);
                // Batteries last 5 to 15 days and were replaced at a random point of it.
                let drain_per_day = 100.0 / (5.0 + 10.0 * r.unit());
                let age_days = r.unit() * 100.0 / drain_per_day;
                Sensor {
                    id: format!("sensor-{k:04}"),
                    location: (h % LOCATIONS.len() as u64) as usize,
                    drain_per_day,
                    installed_ms: start_ms - (age_days * DAY_MS as f64) as i64,
                    offset: r.normal() * 0.8,
                }
            })
            .collect();
        // Mean temperature by location: a warm server room, a cold store, the rest between.
        let base = vec![21.0, 22.0, 21.5, 24.5, 25.0, 6.0, 18.0, 21.0];
        let round = sensors.len() + BATCH_MAX;
        let ids = StringArray::from_iter_values((0..round).map(|k| &sensors[k % keys].id));
        let locations = StringArray::from_iter_values(
            (0..round).map(|k| LOCATIONS[sensors[k % keys].location]),
        );
        let per_day = (DAY_MS / MINUTE_MS) as usize;
        // Peaking at 15:00 UTC.
        let daily = (0..=per_day)
            .map(|m| cos_turns(m as f64 / per_day as f64 - 15.0 / 24.0))
            .collect();
        let weather = (0..=3 * per_day)
            .map(|m| sin_turns(m as f64 / (3 * per_day) as f64))
            .collect();
        IotModel {
            sensors,
            base,
            stream: mix(seed, 0x10_7E),
            ids,
            locations,
            daily,
            weather,
        }
    }

    /// One batch of readings at the given event times, numbered from `first`: the
    /// columns `wanted` (in the profile's order) computed, each in its own pass, and the
    /// others left empty (a job that reads three columns pays for three).
    pub fn batch(&mut self, first: u64, times: &[i64], wanted: &[bool]) -> Vec<ArrayRef> {
        let n = times.len();
        let keys = self.sensors.len();
        let start = (first % keys as u64) as usize;
        let want = |c: usize| wanted.get(c).copied().unwrap_or(true);
        let (ids, locs): (ArrayRef, ArrayRef) = if n <= BATCH_MAX {
            (
                Arc::new(self.ids.slice(start, n)),
                Arc::new(self.locations.slice(start, n)),
            )
        } else {
            (
                Arc::new(StringArray::from_iter_values(
                    (start..start + n).map(|k| &self.sensors[k % keys].id),
                )),
                Arc::new(StringArray::from_iter_values(
                    (start..start + n).map(|k| LOCATIONS[self.sensors[k % keys].location]),
                )),
            )
        };
        let readings = Readings {
            sensors: &self.sensors,
            start,
            first,
            times,
        };
        let stream = self.stream;
        // Daily curve peaking at 15:00 UTC, amplitude 6 °C.
        let daily = |t: i64| 6.0 * at_minute(&self.daily, DAY_MS, t);
        let temp = readings.column(want(TEMPERATURE), |s, t, i| {
            let at = i * DRAWS;
            let (noise, spike) = (draw(stream, at), draw(stream, at + 1));
            let mut temperature =
                self.base[s.location] + daily(t) + s.offset + normal_of(noise) * 0.6;
            if spike >> 32 < SPIKE_BELOW {
                // A spike: sun on the sensor, a fault.
                temperature += 9.0 + unit_of(spike << 32) * 8.0;
            }
            temperature
        });
        let hum = readings.column(want(HUMIDITY), |_, t, i| {
            (55.0 - daily(t) * 2.0 + normal_of(draw(stream, i * DRAWS + 2)) * 3.0).clamp(5.0, 100.0)
        });
        let pres = readings.column(want(PRESSURE), |_, t, i| {
            1013.0
                + 6.0 * at_minute(&self.weather, PRESSURE_MS, t)
                + normal_of(draw(stream, i * DRAWS + 3)) * 0.4
        });
        let batt = readings.column(want(BATTERY), |s, t, _| {
            let used = (t - s.installed_ms) as f64 * (1.0 / DAY_MS as f64) * s.drain_per_day;
            // The share left of the current battery: `used` modulo 100 (the quotient
            // truncated by a conversion, not a libm call).
            (100.0 - (used - (used / 100.0) as i64 as f64 * 100.0)).clamp(0.0, 100.0)
        });
        vec![
            ids,
            locs,
            temp,
            hum,
            pres,
            batt,
            Arc::new(TimestampMillisecondArray::from(times.to_vec())),
            Arc::new(Int64Array::from_iter_values(
                (first..first + n as u64).map(|i| i as i64),
            )),
        ]
    }
}

/// The readings of a batch: each one's sensor (round robin from `start`), time and number.
struct Readings<'a> {
    sensors: &'a [Sensor],
    start: usize,
    first: u64,
    times: &'a [i64],
}

impl Readings<'_> {
    /// One column of values, each rounded to hundredths; empty when not `wanted`.
    fn column(&self, wanted: bool, value: impl Fn(&Sensor, i64, u64) -> f64) -> ArrayRef {
        if !wanted {
            return new_empty_array(&DataType::Float64);
        }
        // A plain loop: an iterator chain over the round of sensors ran 40 % slower.
        let mut v = Vec::with_capacity(self.times.len());
        let (mut k, mut i) = (self.start, self.first);
        for &t in self.times {
            v.push(round2(value(&self.sensors[k], t, i)));
            k += 1;
            if k == self.sensors.len() {
                k = 0;
            }
            i += 1;
        }
        Arc::new(Float64Array::from(v))
    }
}

/// To hundredths, halves away from zero (by a conversion, not libm's `round`).
fn round2(x: f64) -> f64 {
    ((x * 100.0 + 0.5f64.copysign(x)) as i64) as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_match_libm() {
        for i in -1000..=1000 {
            let x = f64::from(i) / 1000.0;
            let (c, s) = (
                (x * std::f64::consts::TAU).cos(),
                (x * std::f64::consts::TAU).sin(),
            );
            assert!((cos_turns(x) - c).abs() < 1e-9, "cos at {x}");
            if x >= -0.75 {
                assert!((sin_turns(x) - s).abs() < 1e-9, "sin at {x}");
            }
        }
    }

    #[test]
    fn computed_columns_are_named_where_the_schema_has_them() {
        let s = schema();
        for (i, name) in [
            (TEMPERATURE, "temperature"),
            (HUMIDITY, "humidity"),
            (PRESSURE, "pressure"),
            (BATTERY, "battery_level"),
        ] {
            assert_eq!(s.field(i).name(), name);
        }
    }

    #[test]
    fn hundredths_round_half_away_from_zero() {
        assert_eq!(round2(1.234_9), 1.23);
        assert_eq!(round2(1.235_1), 1.24);
        assert_eq!(round2(-1.235_1), -1.24);
        assert_eq!(round2(0.0), 0.0);
    }
}
