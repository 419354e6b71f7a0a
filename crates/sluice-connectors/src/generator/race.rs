//! Race telemetry: cars lapping a closed track (`race_track.json`, a polyline of
//! latitude/longitude points), each sending its position 10 times a second with its
//! speed and lap. Each car has its own pace (within ±6 % of the field's), slows into
//! the corners and speeds up on the straights, so some cars are faster than others and
//! lap times differ lap to lap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::rng::{Rng, mix};

/// Time between two positions of a car.
pub const TICK_MS: i64 = 100;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("car_id", DataType::Utf8, false),
        Field::new("lap", DataType::Int64, false),
        Field::new("lat", DataType::Float64, false),
        Field::new("lon", DataType::Float64, false),
        Field::new("speed_kmh", DataType::Float64, false),
        Field::new("lap_distance_m", DataType::Float64, false),
        // How much of the lap is behind the car, 0 to 1.
        Field::new("lap_progress", DataType::Float64, false),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

/// The track: its points and the distance from the start to each.
pub struct Track {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    at: Vec<f64>,
    pub length_m: f64,
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    let r = 6_371_000.0;
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let d = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * r * d.sqrt().asin()
}

impl Track {
    fn parse(text: &str) -> Track {
        let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let points: Vec<(f64, f64)> = v["points"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        let mut at = Vec::with_capacity(points.len());
        let mut total = 0.0;
        for i in 0..points.len() {
            at.push(total);
            total += distance(points[i], points[(i + 1) % points.len()]);
        }
        Track {
            name: v["name"].as_str().unwrap_or("track").to_string(),
            points,
            at,
            length_m: total,
        }
    }

    /// The point `s` metres along the lap, and the segment it is on.
    fn locate(&self, s: f64) -> ((f64, f64), usize) {
        let s = s.rem_euclid(self.length_m);
        let i = self.at.partition_point(|&d| d <= s).saturating_sub(1);
        let (a, b) = (self.points[i], self.points[(i + 1) % self.points.len()]);
        let seg = distance(a, b).max(1e-9);
        let f = (s - self.at[i]) / seg;
        ((a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f), i)
    }

    /// How sharply the track turns at segment `i` (0 straight, up to 1 a hairpin).
    fn sharpness(&self, i: usize) -> f64 {
        let n = self.points.len();
        let p = |k: usize| self.points[k % n];
        let heading = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0).atan2(b.1 - a.1);
        let turn = (heading(p(i + 1), p(i + 2)) - heading(p(i), p(i + 1)))
            .sin()
            .abs();
        turn.min(1.0)
    }
}

/// The bundled track.
pub fn track() -> &'static Track {
    static TRACK: OnceLock<Track> = OnceLock::new();
    TRACK.get_or_init(|| Track::parse(include_str!("race_track.json")))
}

struct Car {
    id: String,
    /// Top speed on a straight, m/s.
    pace: f64,
    /// Metres driven since the start.
    driven: f64,
}

/// `keys` cars, all starting at the start line at the start time, a position of each
/// every [`TICK_MS`], in time order.
pub struct RaceModel {
    cars: Vec<Car>,
    due: BinaryHeap<Reverse<(i64, usize)>>,
}

impl RaceModel {
    pub fn new(keys: usize, seed: u64, start_ms: i64) -> Self {
        let cars: Vec<Car> = (0..keys.max(1))
            .map(|k| {
                let mut r = Rng::new(mix(seed ^ 0x7ace, k as u64));
                Car {
                    id: format!("car-{:02}", k + 1),
                    pace: 78.0 * (0.94 + 0.12 * r.unit()),
                    // A staggered grid: 8 m between cars.
                    driven: -(k as f64) * 8.0,
                }
            })
            .collect();
        let due = (0..cars.len()).map(|c| Reverse((start_ms, c))).collect();
        RaceModel { cars, due }
    }

    pub fn peek_time(&self) -> i64 {
        self.due.peek().map_or(i64::MAX, |Reverse((t, _))| *t)
    }

    /// The next `n` positions (event time last, as the generator expects).
    pub fn batch(&mut self, n: usize, rng: &mut Rng) -> (Vec<i64>, Vec<ArrayRef>) {
        let t = track();
        let mut times = Vec::with_capacity(n);
        let mut progress = Vec::with_capacity(n);
        let (mut ids, mut laps, mut lats, mut lons, mut speeds, mut dists) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for _ in 0..n {
            let Some(Reverse((at, c))) = self.due.pop() else {
                break;
            };
            let car = &mut self.cars[c];
            let ((lat, lon), seg) = t.locate(car.driven.max(0.0));
            // Slower into a corner, down to 45 % of the pace in a hairpin; some noise.
            let speed = car.pace
                * (1.0 - 0.55 * t.sharpness(seg))
                * (1.0 + 0.02 * rng.normal().clamp(-2.0, 2.0));
            let lap = (car.driven.max(0.0) / t.length_m).floor() as i64 + 1;
            times.push(at);
            ids.push(car.id.clone());
            laps.push(lap);
            lats.push((lat * 1e6).round() / 1e6);
            lons.push((lon * 1e6).round() / 1e6);
            speeds.push((speed * 3.6 * 10.0).round() / 10.0);
            let into = car.driven.max(0.0).rem_euclid(t.length_m);
            dists.push((into * 10.0).round() / 10.0);
            progress.push((into / t.length_m * 1e4).round() / 1e4);
            car.driven += speed * TICK_MS as f64 / 1000.0;
            self.due.push(Reverse((at + TICK_MS, c)));
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Int64Array::from(laps)),
            Arc::new(Float64Array::from(lats)),
            Arc::new(Float64Array::from(lons)),
            Arc::new(Float64Array::from(speeds)),
            Arc::new(Float64Array::from(dists)),
            Arc::new(Float64Array::from(progress)),
            Arc::new(TimestampMillisecondArray::from(times.clone())),
        ];
        (times, cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};

    #[test]
    fn the_track_is_a_closed_lap_of_a_few_kilometres() {
        let t = track();
        assert!(t.points.len() > 20);
        assert!((3_000.0..6_000.0).contains(&t.length_m), "{}", t.length_m);
        let ((lat0, lon0), _) = t.locate(0.0);
        let ((lat1, lon1), _) = t.locate(t.length_m);
        assert!((lat0 - lat1).abs() < 1e-9 && (lon0 - lon1).abs() < 1e-9);
    }

    #[test]
    fn cars_lap_at_racing_speeds_and_the_fastest_car_leads() {
        let cars = 5;
        let mut m = RaceModel::new(cars, 7, 0);
        let mut rng = Rng::new(1);
        // Five minutes of race.
        let (times, cols) = m.batch(cars * 3000, &mut rng);
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
        let speeds = cols[4].as_primitive::<Float64Type>();
        let laps = cols[1].as_primitive::<Int64Type>();
        let max_speed = speeds.values().iter().copied().fold(0.0, f64::max);
        assert!((200.0..360.0).contains(&max_speed), "{max_speed} km/h");
        let max_lap = laps.values().iter().copied().max().unwrap_or(0);
        assert!((3..=7).contains(&max_lap), "{max_lap} laps in five minutes");
        let fastest = (0..cars)
            .max_by(|&a, &b| m.cars[a].pace.total_cmp(&m.cars[b].pace))
            .unwrap_or(0);
        let furthest = (0..cars)
            .max_by(|&a, &b| m.cars[a].driven.total_cmp(&m.cars[b].driven))
            .unwrap_or(0);
        assert_eq!(fastest, furthest);
    }
}
