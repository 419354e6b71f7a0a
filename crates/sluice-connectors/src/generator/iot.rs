//! IoT sensor readings. Each sensor sits in one location; temperature follows a daily
//! curve per location with noise and occasional spikes above 30 °C; batteries drain over
//! days and are replaced, so at any time some are below 20 %.

use std::f64::consts::PI;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::rng::{Rng, mix};

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

const DAY_MS: f64 = 86_400_000.0;

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
    installed_ms: f64,
    offset: f64,
}

/// Generates readings for `keys` sensors, round robin.
pub struct IotModel {
    sensors: Vec<Sensor>,
    base: Vec<f64>,
    next: usize,
}

impl IotModel {
    pub fn new(keys: usize, seed: u64, start_ms: i64) -> Self {
        let keys = keys.max(1);
        let sensors = (0..keys)
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
                    installed_ms: start_ms as f64 - age_days * DAY_MS,
                    offset: r.normal() * 0.8,
                }
            })
            .collect();
        // Mean temperature by location: a warm server room, a cold store, the rest between.
        let base = vec![21.0, 22.0, 21.5, 24.5, 25.0, 6.0, 18.0, 21.0];
        IotModel {
            sensors,
            base,
            next: 0,
        }
    }

    /// One batch of readings at the given event times, numbered from `first`.
    pub fn batch(&mut self, first: u64, times: &[i64], rng: &mut Rng) -> Vec<ArrayRef> {
        let n = times.len();
        let mut ids = Vec::with_capacity(n);
        let mut locs = Vec::with_capacity(n);
        let mut temp = Vec::with_capacity(n);
        let mut hum = Vec::with_capacity(n);
        let mut pres = Vec::with_capacity(n);
        let mut batt = Vec::with_capacity(n);
        for &t in times {
            let s = &self.sensors[self.next];
            self.next = (self.next + 1) % self.sensors.len();
            let tf = t as f64;
            // Daily curve peaking at 15:00 UTC, amplitude 6 °C.
            let phase = ((tf % DAY_MS) / DAY_MS - 15.0 / 24.0) * 2.0 * PI;
            let daily = 6.0 * phase.cos();
            let mut temperature = self.base[s.location] + daily + s.offset + rng.normal() * 0.6;
            if rng.chance(0.004) {
                temperature += 9.0 + rng.unit() * 8.0; // a spike: sun on the sensor, a fault
            }
            let humidity = (55.0 - daily * 2.0 + rng.normal() * 3.0).clamp(5.0, 100.0);
            let pressure =
                1013.0 + 6.0 * (tf / (3.0 * DAY_MS) * 2.0 * PI).sin() + rng.normal() * 0.4;
            let days = (tf - s.installed_ms) / DAY_MS;
            let battery = (100.0 - (days * s.drain_per_day) % 100.0).clamp(0.0, 100.0);
            ids.push(s.id.as_str());
            locs.push(LOCATIONS[s.location]);
            temp.push(round2(temperature));
            hum.push(round2(humidity));
            pres.push(round2(pressure));
            batt.push(round2(battery));
        }
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(StringArray::from(locs)),
            Arc::new(Float64Array::from(temp)),
            Arc::new(Float64Array::from(hum)),
            Arc::new(Float64Array::from(pres)),
            Arc::new(Float64Array::from(batt)),
            Arc::new(TimestampMillisecondArray::from(times.to_vec())),
            Arc::new(Int64Array::from_iter_values(
                (first..first + n as u64).map(|i| i as i64),
            )),
        ]
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
