//! Factory machines: each carries a temperature, a vibration and an energy sensor, read
//! in turn. Values follow each machine's own level, an 8-hour shift cycle and Gaussian
//! noise (held within 3.5 standard deviations), so a normal reading stays under its
//! type's warning threshold; an `anomaly_fraction` of readings are anomalies, half
//! between the warning and critical thresholds, half above critical.

use std::f64::consts::PI;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::rng::{Rng, mix};

/// A sensor type: its name, unit, typical level and spread, and the thresholds that
/// `sql/schema.sql` puts in `sensor_thresholds` (warning, critical).
pub struct SensorType {
    pub name: &'static str,
    pub unit: &'static str,
    mean: f64,
    sd: f64,
    pub warning: f64,
    pub critical: f64,
}

pub const SENSOR_TYPES: &[SensorType] = &[
    SensorType {
        name: "temperature",
        unit: "celsius",
        mean: 62.0,
        sd: 2.0,
        warning: 75.0,
        critical: 85.0,
    },
    SensorType {
        name: "vibration",
        unit: "mm_s",
        mean: 2.8,
        sd: 0.4,
        warning: 6.0,
        critical: 9.0,
    },
    SensorType {
        name: "energy",
        unit: "kw",
        mean: 38.0,
        sd: 3.0,
        warning: 60.0,
        critical: 70.0,
    },
];

pub const LINES: &[&str] = &["line-1", "line-2", "line-3", "line-4"];

const SHIFT_MS: f64 = 8.0 * 3_600_000.0;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("machine_id", DataType::Utf8, false),
        Field::new("line", DataType::Utf8, false),
        Field::new("sensor_type", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("reading_id", DataType::Int64, false),
    ]))
}

struct Machine {
    id: String,
    line: usize,
    /// How far this machine sits from the typical level, in standard deviations, per
    /// sensor type (within ±1.5, so that normal readings stay below warning).
    bias: [f64; 3],
    /// Where in the shift cycle it starts.
    phase: f64,
}

/// Readings of `keys` machines × 3 sensor types, round robin.
pub struct FactoryModel {
    machines: Vec<Machine>,
    next: usize,
    anomaly_fraction: f64,
}

impl FactoryModel {
    pub fn new(keys: usize, seed: u64, anomaly_fraction: f64) -> Self {
        let machines = (0..keys.max(1))
            .map(|k| {
                let h = mix(seed ^ 0xfac7_0e1e, k as u64);
                let mut r = Rng::new(h);
                Machine {
                    id: format!("machine-{k:03}"),
                    line: k % LINES.len(),
                    bias: [
                        (r.unit() - 0.5) * 3.0,
                        (r.unit() - 0.5) * 3.0,
                        (r.unit() - 0.5) * 3.0,
                    ],
                    phase: r.unit() * 2.0 * PI,
                }
            })
            .collect();
        FactoryModel {
            machines,
            next: 0,
            anomaly_fraction,
        }
    }

    /// One batch of readings at the given event times, numbered from `first`.
    pub fn batch(&mut self, first: u64, times: &[i64], rng: &mut Rng) -> Vec<ArrayRef> {
        let n = times.len();
        let kinds = SENSOR_TYPES.len();
        let (mut ids, mut lines, mut types, mut values, mut units) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &t in times {
            let m = &self.machines[(self.next / kinds) % self.machines.len()];
            let k = self.next % kinds;
            self.next = (self.next + 1) % (self.machines.len() * kinds);
            let s = &SENSOR_TYPES[k];
            // Busy in the middle of a shift, quieter at its change: ±1 sd.
            let shift = (t as f64 / SHIFT_MS * 2.0 * PI + m.phase).sin();
            let noise = rng.normal().clamp(-1.0, 1.0);
            let mut value = s.mean + s.sd * (m.bias[k] + shift + noise);
            if rng.chance(self.anomaly_fraction) {
                // A fault: between warning and critical, or above critical.
                value = if rng.chance(0.5) {
                    s.warning + (s.critical - s.warning) * (0.1 + 0.8 * rng.unit())
                } else {
                    s.critical * (1.02 + 0.2 * rng.unit())
                };
            }
            ids.push(m.id.as_str());
            lines.push(LINES[m.line]);
            types.push(s.name);
            values.push((value * 100.0).round() / 100.0);
            units.push(s.unit);
        }
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(lines)),
            Arc::new(StringArray::from(types)),
            Arc::new(Float64Array::from(values)),
            Arc::new(StringArray::from(units)),
            Arc::new(TimestampMillisecondArray::from(times.to_vec())),
            Arc::new(Int64Array::from_iter_values(
                (first..first + n as u64).map(|i| i as i64),
            )),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Float64Type;

    #[test]
    fn normal_readings_stay_below_warning_and_anomalies_cross_it() {
        for (fraction, want_alerts) in [(0.0, false), (0.05, true)] {
            let mut m = FactoryModel::new(20, 3, fraction);
            let mut rng = Rng::new(9);
            let times: Vec<i64> = (0..30_000).map(|i| i * 1_000).collect();
            let cols = m.batch(0, &times, &mut rng);
            let types = cols[2].as_string::<i32>();
            let values = cols[3].as_primitive::<Float64Type>();
            let mut alerts = 0;
            for i in 0..times.len() {
                let s = SENSOR_TYPES
                    .iter()
                    .find(|s| s.name == types.value(i))
                    .expect("a known type");
                assert!(values.value(i) > 0.0);
                if values.value(i) >= s.warning {
                    alerts += 1;
                }
            }
            assert_eq!(alerts > 0, want_alerts, "{alerts} alerts at {fraction}");
            if want_alerts {
                // About 5 % of 30,000.
                assert!((1_000..2_000).contains(&alerts), "{alerts}");
            }
        }
    }
}
