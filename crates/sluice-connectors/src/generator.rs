//! Generator source: realistic IoT readings, factory machine readings or user activity,
//! deterministic for a seed and start time, paced against the wall clock (or as fast as possible), with declared
//! shares of out-of-order and late events. Bounded when given a `limit`.
//!
//! Event time: an IoT or factory stream's event `i` is due `i / rate` seconds after the start and
//! carries the time `start_time + i / rate × speedup` (with `rate = 0`, as fast as possible,
//! event time advances as if `rate` were 1,000). User activity takes its event times from
//! the users' behaviour and is paced at `speedup` times the wall clock (`rate = 0`: as
//! fast as possible). Then up to `disorder` is taken off each time, and a `late_fraction`
//! of events is moved `late_by` to twice that into the past. A `duplicate_fraction` of
//! events re-send one of the last few events (a reading keeps its `reading_id`). A factory
//! stream makes an `anomaly_fraction` of its readings faults above their warning level.

mod columns;
mod factory;
mod iot;
mod options;
pub mod race;
pub(crate) mod rng;
mod user_activity;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, TimestampMillisecondArray, UInt32Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{Positions, Result, RuntimeError, Source};

pub use columns::{declared_columns, select_declared};
use factory::FactoryModel;
pub use factory::SENSOR_TYPES;
use iot::IotModel;
pub use iot::LOCATIONS;
use race::RaceModel;
use rng::Rng;
use user_activity::UserModel;

pub use options::{GeneratorOptions, OPTIONS, Profile};
pub(crate) use options::{interval_ms, number_option, parse_time, set_option};

enum Model {
    Iot(Box<IotModel>),
    Factory(FactoryModel),
    Race(RaceModel),
    Users(UserModel),
}

impl Model {
    /// Whether event `i`'s time is `start + i × step` (readings), rather than the
    /// model's own (user activity).
    fn indexed(&self) -> bool {
        !matches!(self, Model::Users(_) | Model::Race(_))
    }

    /// The next event's time, for models whose events carry their own times.
    fn peek_time(&self) -> i64 {
        match self {
            Model::Users(m) => m.peek_time(),
            Model::Race(m) => m.peek_time(),
            Model::Iot(_) | Model::Factory(_) => i64::MIN,
        }
    }
}

pub struct GeneratorSource {
    opts: GeneratorOptions,
    model: Model,
    rng: Rng,
    /// Disorder and lateness draw from their own stream, so that the events do not
    /// depend on how they were cut into batches (pacing and restores cut differently).
    perturb_rng: Rng,
    /// Duplicates draw from theirs too, once per event.
    duplicate_rng: Rng,
    /// The last events sent (every profile column), which a duplicate re-sends.
    recent: Vec<ArrayRef>,
    produced: u64,
    wall_start: Option<Instant>,
    /// Pacing restarts from here after a restore: events already out, and event time.
    pace_events0: u64,
    pace_time0: i64,
    /// Regenerating events up to a restored position: no pacing.
    seeking: bool,
    schema: SchemaRef,
    /// For each declared column, its index among the profile's columns.
    columns: Vec<usize>,
    /// For each of the profile's columns, whether the table declares it (a model may
    /// leave the others empty).
    wanted: Vec<bool>,
}

impl GeneratorSource {
    /// A generator producing the declared `schema` (a subset of the profile's columns).
    pub fn new(table: &str, opts: GeneratorOptions, schema: SchemaRef) -> Result<Self, String> {
        let columns = declared_columns(table, "the generator", &opts.profile.schema(), &schema)?;
        let model = match opts.profile {
            Profile::Iot => {
                Model::Iot(Box::new(IotModel::new(opts.keys, opts.seed, opts.start_ms)))
            }
            Profile::Factory => Model::Factory(FactoryModel::new(
                opts.keys,
                opts.seed,
                opts.anomaly_fraction,
            )),
            Profile::Race => Model::Race(RaceModel::new(opts.keys, opts.seed, opts.start_ms)),
            Profile::UserActivity => {
                Model::Users(UserModel::new(opts.keys, opts.seed, opts.start_ms))
            }
        };
        let start_ms = opts.start_ms;
        let wanted = (0..opts.profile.schema().fields().len())
            .map(|i| columns.contains(&i))
            .collect();
        Ok(GeneratorSource {
            rng: Rng::new(opts.seed.wrapping_add(1)),
            perturb_rng: Rng::new(opts.seed.wrapping_add(2)),
            duplicate_rng: Rng::new(opts.seed.wrapping_add(3)),
            recent: Vec::new(),
            opts,
            model,
            produced: 0,
            wall_start: None,
            pace_events0: 0,
            pace_time0: start_ms,
            seeking: false,
            schema,
            columns,
            wanted,
        })
    }

    /// How many events may go out now (at least one, waiting if needed), at most `n`.
    fn pace(&mut self, n: usize) -> usize {
        if self.opts.rate <= 0.0 || self.seeking {
            return n;
        }
        let start = *self.wall_start.get_or_insert_with(Instant::now);
        loop {
            let elapsed = start.elapsed().as_secs_f64();
            let due = match &self.model {
                Model::Iot(_) | Model::Factory(_) => ((elapsed * self.opts.rate) as u64)
                    .saturating_sub(self.produced - self.pace_events0)
                    as usize,
                m => {
                    let now_event = self.pace_time0 + (elapsed * 1000.0 * self.opts.speedup) as i64;
                    match m {
                        _ if m.peek_time() > now_event => 0,
                        // A race goes out one tick (every car's position) at a time, so
                        // that the cars move smoothly on a live map.
                        Model::Race(_) => n.min(self.opts.keys),
                        _ => n,
                    }
                }
            };
            if due > 0 {
                return due.min(n);
            }
            let wait = match &self.model {
                Model::Iot(_) | Model::Factory(_) => {
                    (self.produced - self.pace_events0 + 1) as f64 / self.opts.rate - elapsed
                }
                m => {
                    (m.peek_time() - self.pace_time0) as f64 / 1000.0 / self.opts.speedup - elapsed
                }
            };
            std::thread::sleep(Duration::from_secs_f64(wait.clamp(0.001, 0.1)));
        }
    }

    /// Takes disorder and lateness off model times.
    fn perturb(&mut self, times: &mut [i64]) {
        let d = self.opts.disorder_ms.max(0) as u64;
        for t in times.iter_mut() {
            if self.opts.late_fraction > 0.0 && self.perturb_rng.chance(self.opts.late_fraction) {
                let by = self.opts.late_by_ms.max(1);
                *t -= by + self.perturb_rng.below(by as u64) as i64;
            } else if d > 0 {
                *t -= self.perturb_rng.below(d + 1) as i64;
            }
        }
    }
}

impl Source for GeneratorSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Positions {
        Positions::from([("events".to_string(), self.produced as i64)])
    }

    /// Generates and discards events up to the position (the same seed and start give
    /// the same events), then paces on from there.
    fn seek(&mut self, position: &Positions) -> Result<()> {
        let Some(&target) = position.get("events") else {
            return Ok(());
        };
        let target = target.max(0) as u64;
        // Unpaced, but with the rate kept: an IoT event's time (and so its values, and
        // those of the recent events a duplicate copies) follows the rate.
        let batch = self.opts.batch_size;
        self.seeking = true;
        while self.produced < target {
            self.opts.batch_size = ((target - self.produced) as usize).min(8192);
            if self.next_batch()?.is_none() {
                break;
            }
        }
        self.seeking = false;
        self.opts.batch_size = batch;
        self.pace_events0 = self.produced;
        self.pace_time0 = match &self.model {
            m if !m.indexed() => m.peek_time(),
            _ => self.opts.start_ms,
        };
        self.wall_start = None;
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let remaining = self
            .opts
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(self.produced));
        if remaining == 0 {
            return Ok(None);
        }
        let n = self.pace((self.opts.batch_size as u64).min(remaining) as usize);
        let columns = if self.model.indexed() {
            let rate = if self.opts.rate > 0.0 {
                self.opts.rate
            } else {
                1000.0
            };
            let step = 1000.0 * self.opts.speedup / rate;
            let first = self.produced;
            let mut times: Vec<i64> = (0..n as u64)
                .map(|i| self.opts.start_ms + ((first + i) as f64 * step) as i64)
                .collect();
            self.perturb(&mut times);
            match &mut self.model {
                Model::Iot(m) => m.batch(first, &times, &self.wanted),
                Model::Factory(m) => m.batch(first, &times, &mut self.rng),
                Model::Users(_) | Model::Race(_) => Vec::new(),
            }
        } else {
            let (mut times, mut cols) = match &mut self.model {
                Model::Users(m) => m.batch(n, &mut self.rng),
                Model::Race(m) => m.batch(n, &mut self.rng),
                Model::Iot(_) | Model::Factory(_) => (Vec::new(), Vec::new()),
            };
            self.perturb(&mut times);
            if let Some(last) = cols.last_mut() {
                *last = Arc::new(TimestampMillisecondArray::from(times));
            }
            cols
        };
        // The declared columns only, before duplicates copy any (the others may be empty).
        let declared = select_declared(&columns, &self.columns, &self.schema)?;
        let columns = self.duplicate(declared.columns().to_vec())?;
        self.produced += n as u64;
        RecordBatch::try_new(self.schema.clone(), columns)
            .map(Some)
            .map_err(|e| RuntimeError::Internal(format!("generator: {e}")))
    }
}

/// How many of the last events a duplicate may re-send.
const RECENT: usize = 8;

impl GeneratorSource {
    /// Replaces a `duplicate_fraction` of a batch's new events by copies of one of the
    /// last `RECENT` events sent before each. Each event draws once, in order, and may
    /// copy only events before it, so the stream does not depend on the batching.
    fn duplicate(&mut self, fresh: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
        let p = self.opts.duplicate_fraction;
        let n = fresh.first().map_or(0, |c| c.len());
        if p <= 0.0 || n == 0 {
            return Ok(fresh);
        }
        // The recent events, then this batch's new ones.
        let held = self.recent.first().map_or(0, |c| c.len());
        let all: Vec<ArrayRef> = if held == 0 {
            fresh
        } else {
            self.recent
                .iter()
                .zip(&fresh)
                .map(|(r, f)| concat(&[r.as_ref(), f.as_ref()]))
                .collect::<Result<_, _>>()?
        };
        // Where each event sent (the recent ones, then this batch's) is in `all`.
        let mut sent: Vec<u32> = (0..held as u32).collect();
        for j in 0..n {
            let before = self.produced as usize + j;
            let pick = if self.duplicate_rng.chance(p) && before > 0 {
                let k = self.duplicate_rng.below(before.min(RECENT) as u64) as usize;
                sent[sent.len() - 1 - k]
            } else {
                (held + j) as u32
            };
            sent.push(pick);
        }
        let out = UInt32Array::from(sent[held..].to_vec());
        let keep = UInt32Array::from(sent[sent.len().saturating_sub(RECENT)..].to_vec());
        self.recent = all
            .iter()
            .map(|c| take(c.as_ref(), &keep, None))
            .collect::<Result<_, _>>()?;
        Ok(all
            .iter()
            .map(|c| take(c.as_ref(), &out, None))
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, StringArray};
    use datafusion::arrow::compute::concat_batches;
    use datafusion::arrow::datatypes::TimestampMillisecondType;
    use sluice_types::{ConnectorOptions, Position};

    fn options(pairs: &[(&str, &str)]) -> ConnectorOptions {
        let mut o = ConnectorOptions::default();
        o.insert("connector", "generator".into(), Position::default());
        for (k, v) in pairs {
            o.insert(k, v.to_string(), Position::default());
        }
        o
    }

    fn generate(pairs: &[(&str, &str)]) -> RecordBatch {
        let opts = GeneratorOptions::parse(&options(pairs)).unwrap();
        let schema = opts.profile.schema();
        let mut g = GeneratorSource::new("t", opts, schema.clone()).unwrap();
        let mut batches = Vec::new();
        while let Some(b) = g.next_batch().unwrap() {
            batches.push(b);
        }
        concat_batches(&schema, &batches).unwrap()
    }

    fn times(b: &RecordBatch) -> Vec<i64> {
        b.column_by_name("event_time")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec()
    }

    const BASE: &[(&str, &str)] = &[
        ("rate", "0"),
        ("limit", "20000"),
        ("start_time", "2024-05-01T00:00:00Z"),
    ];

    #[test]
    fn seeking_gives_the_events_a_straight_run_gives() {
        // Paced or not (an IoT event's time follows the rate), with duplicates (which
        // copy events generated, and discarded, while seeking). User activity's times
        // do not follow the rate, and pacing it takes wall-clock time: unpaced only.
        for (profile, rate) in [("iot", "0"), ("iot", "500000"), ("user_activity", "0")] {
            let pairs = [
                ("profile", profile),
                ("rate", rate),
                ("limit", "4200"),
                ("duplicate_fraction", "0.5"),
                ("speedup", "600"),
                ("seed", "7"),
                ("batch_size", "700"),
                ("disorder", "20s"),
                ("late_fraction", "0.05"),
                ("start_time", "2024-05-01T00:00:00Z"),
            ];
            let straight = generate(&pairs);
            assert_eq!(straight.num_rows(), 4200);
            let opts = GeneratorOptions::parse(&options(&pairs)).unwrap();
            let schema = opts.profile.schema();
            let mut resumed = GeneratorSource::new("t", opts, schema.clone()).unwrap();
            resumed.seek(&straight_position(3500)).unwrap();
            let mut rest = Vec::new();
            while let Some(b) = resumed.next_batch().unwrap() {
                rest.push(b);
            }
            assert_eq!(
                concat_batches(&schema, &rest).unwrap(),
                straight.slice(3500, 700),
                "{profile} at rate {rate}"
            );
        }
    }

    fn straight_position(events: i64) -> Positions {
        Positions::from([("events".to_string(), events)])
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        for profile in ["iot", "user_activity"] {
            let mut a = BASE.to_vec();
            a.push(("profile", profile));
            let mut b = a.clone();
            b.push(("seed", "7"));
            let first = generate(&a);
            assert_eq!(first.num_rows(), 20000);
            assert_eq!(first, generate(&a), "{profile}: same seed, same events");
            assert_ne!(first, generate(&b), "{profile}: another seed, other events");
        }
    }

    #[test]
    fn declared_disorder_and_late_share_hold() {
        for profile in ["iot", "user_activity"] {
            let mut o = BASE.to_vec();
            o.extend([
                ("profile", profile),
                ("limit", "100000"),
                ("disorder", "30s"),
                ("late_fraction", "0.05"),
                ("late_by", "1h"),
            ]);
            let ts = times(&generate(&o));
            let (mut max, mut late, mut out_of_order, mut worst_disorder) = (i64::MIN, 0, 0, 0);
            for &t in &ts {
                // Late events are at least `late_by` minus the disorder behind; on-time ones
                // at most `disorder` behind: half of `late_by` tells them apart.
                if t < max.saturating_sub(1_800_000) {
                    late += 1;
                } else {
                    if t < max {
                        out_of_order += 1;
                        worst_disorder = worst_disorder.max(max - t);
                    }
                    max = max.max(t);
                }
            }
            let share = late as f64 / ts.len() as f64;
            assert!(
                (0.045..0.055).contains(&share),
                "{profile}: late share {share}"
            );
            assert!(
                worst_disorder <= 30_000,
                "{profile}: disorder {worst_disorder} ms"
            );
            assert!(
                out_of_order > ts.len() / 10,
                "{profile}: out of order {out_of_order}"
            );

            let mut none = BASE.to_vec();
            none.extend([("profile", profile), ("disorder", "0s")]);
            let ts = times(&generate(&none));
            assert!(
                ts.windows(2).all(|w| w[0] <= w[1]),
                "{profile}: no disorder, in order"
            );
        }
    }

    #[test]
    fn declared_columns_are_a_subset_in_any_order() {
        let opts = GeneratorOptions::parse(&options(&[
            ("profile", "iot"),
            ("limit", "10"),
            ("rate", "0"),
        ]))
        .unwrap();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "location",
                datafusion::arrow::datatypes::DataType::Utf8,
                false,
            ),
            datafusion::arrow::datatypes::Field::new(
                "temperature",
                datafusion::arrow::datatypes::DataType::Float32,
                true,
            ),
        ]));
        let mut g = GeneratorSource::new("t", opts.clone(), schema).unwrap();
        let b = g.next_batch().unwrap().unwrap();
        assert_eq!(b.num_rows(), 10);
        let locs = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert!(LOCATIONS.contains(&locs.value(0)));
        let bad = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "colour",
                datafusion::arrow::datatypes::DataType::Utf8,
                true,
            ),
        ]));
        let err = GeneratorSource::new("t", opts, bad).err().unwrap();
        assert!(err.contains("does not produce a column colour"), "{err}");
    }

    #[test]
    fn declared_columns_hold_what_the_whole_profile_holds() {
        // The model computes only the declared columns; they must be the full profile's,
        // duplicates and disorder included, whatever the batching.
        for profile in ["iot", "factory", "user_activity"] {
            let mut o = BASE.to_vec();
            o.extend([
                ("profile", profile),
                ("duplicate_fraction", "0.05"),
                ("batch_size", "3000"),
            ]);
            let whole = generate(&o);
            let fields = whole.schema().fields().clone();
            for picked in [vec![2, 6], vec![6, 0, 3], vec![fields.len() - 1]] {
                let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
                    picked
                        .iter()
                        .map(|&i| fields[i].clone())
                        .collect::<Vec<_>>(),
                ));
                let opts = GeneratorOptions::parse(&options(&o)).unwrap();
                let mut g = GeneratorSource::new("t", opts, schema.clone()).unwrap();
                let mut batches = Vec::new();
                while let Some(b) = g.next_batch().unwrap() {
                    batches.push(b);
                }
                let got = concat_batches(&schema, &batches).unwrap();
                assert_eq!(
                    got,
                    whole.project(&picked).unwrap(),
                    "{profile}: columns {picked:?}"
                );
            }
        }
    }

    #[test]
    fn paced_generator_keeps_its_rate() {
        let mut o = BASE.to_vec();
        o.extend([("profile", "iot"), ("rate", "2000"), ("limit", "600")]);
        let started = Instant::now();
        let b = generate(&o);
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(b.num_rows(), 600);
        // 600 events at 2,000/s take about 0.3 s; never much less.
        assert!(secs >= 0.25, "paced too fast: {secs:.3}s");
    }

    #[test]
    fn bad_options_are_named() {
        for (pairs, needle) in [
            (vec![("profile", "weather")], "unknown generator profile"),
            (
                vec![("profile", "iot"), ("late_fraction", "2")],
                "late_fraction",
            ),
            (
                vec![("profile", "iot"), ("disorder", "soon")],
                "disorder must be an interval",
            ),
            (
                vec![("profile", "iot"), ("start_time", "yesterday")],
                "start_time must be",
            ),
        ] {
            let err = GeneratorOptions::parse(&options(&pairs)).unwrap_err();
            assert!(err.message.contains(needle), "{}", err.message);
        }
    }

    #[test]
    fn duplicates_resend_recent_readings_whatever_the_batching() {
        use std::collections::HashMap;
        let base = [
            ("profile", "iot"),
            ("rate", "0"),
            ("limit", "5000"),
            ("seed", "9"),
            ("start_time", "2024-05-01T00:00:00Z"),
        ];
        // Without duplicates every reading has its own number, in order.
        let plain = generate(&base);
        let ids = plain.column_by_name("reading_id").unwrap();
        let ids = ids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert!(
            ids.values()
                .iter()
                .enumerate()
                .all(|(i, &id)| id == i as i64)
        );

        let with = |batch: &'static str| {
            let mut o = base.to_vec();
            o.extend([("duplicate_fraction", "0.1"), ("batch_size", batch)]);
            generate(&o)
        };
        let a = with("7");
        assert_eq!(a, with("1000"), "the same events however they are batched");
        assert_eq!(a.num_rows(), 5000);
        let ids = a.column_by_name("reading_id").unwrap();
        let ids = ids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let row = |i: usize| -> Vec<String> {
            a.columns()
                .iter()
                .map(|c| datafusion::arrow::util::display::array_value_to_string(c, i).unwrap())
                .collect()
        };
        let mut first_seen: HashMap<i64, usize> = HashMap::new();
        let mut repeats = 0;
        for i in 0..a.num_rows() {
            match first_seen.get(&ids.value(i)) {
                // A re-sent reading is the very same row, sent shortly before.
                Some(&j) => {
                    repeats += 1;
                    assert_eq!(row(i), row(j), "row {i} re-sends row {j}");
                    assert!(i - j <= 64, "row {i} re-sends row {j}, long before");
                }
                None => {
                    first_seen.insert(ids.value(i), i);
                }
            }
        }
        assert!((350..650).contains(&repeats), "{repeats} of 5000 re-sent");
    }
}
