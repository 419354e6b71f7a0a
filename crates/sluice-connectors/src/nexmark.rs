//! Nexmark source: the standard streaming benchmark's online auction (people, auctions
//! and bids), one table per source (`table = 'person' | 'auction' | 'bid'`).
//!
//! Every event is a pure function of its number and the seed, so the three tables of one
//! seed agree (a bid names an auction and a person that exist) whichever runs when, and a
//! restore seeks by number. Of each 50 events 1 is a person, 3 are auctions and 46 are
//! bids, as in Nexmark. Event `n` happens at `start_time + n / event_rate` seconds, less
//! up to `disorder` (so events arrive out of order within that bound). `events` bounds
//! the stream (counted over all three tables); `rate` paces it against the wall clock
//! (0: as fast as possible).
//!
//! Split over `n` tasks, the event numbers are dealt in chunks of one batch's span: part
//! `i` makes chunks `i`, `i + n`, `i + 2n`, … (so the parts advance through event time
//! together), each paced at `rate / n`, and a checkpoint keeps each part's next event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{Positions, Result, Source};
use sluice_types::{ConnectorOptions, OptionProblem};

use crate::generator::rng::{Rng, mix};
use crate::generator::{number_option, set_option};

/// The options a Nexmark table takes.
pub const OPTIONS: &[&str] = &[
    "table",
    "events",
    "rate",
    "event_rate",
    "seed",
    "start_time",
    "disorder",
    "batch_size",
];

const PERSON_SHARE: u64 = 1;
const AUCTION_SHARE: u64 = 3;
const TOTAL_SHARE: u64 = 50;
/// Bids go to the newest auctions: one in this many to any open auction.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDER_RATIO: u64 = 4;
const HOT_SELLER_RATIO: u64 = 4;
/// How many recent auctions and people a bid or auction picks from.
const ACTIVE_AUCTIONS: u64 = 1000;
const ACTIVE_PEOPLE: u64 = 1000;
const FIRST_ID: i64 = 1000;

const FIRST_NAMES: &[&str] = &[
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: &[&str] = &[
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CITIES: &[&str] = &[
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const STATES: &[&str] = &["AZ", "CA", "ID", "OR", "WA", "WY"];
const CHANNELS: &[&str] = &["Google", "Facebook", "Baidu", "Apple"];

/// Which table a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    Person,
    Auction,
    Bid,
}

impl NexmarkTable {
    fn of_event(n: u64) -> NexmarkTable {
        let offset = n % TOTAL_SHARE;
        if offset < PERSON_SHARE {
            NexmarkTable::Person
        } else if offset < PERSON_SHARE + AUCTION_SHARE {
            NexmarkTable::Auction
        } else {
            NexmarkTable::Bid
        }
    }

    pub fn schema(self) -> SchemaRef {
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, None);
        let f = |n: &str, t: DataType| Field::new(n, t, false);
        Arc::new(Schema::new(match self {
            NexmarkTable::Person => vec![
                f("id", DataType::Int64),
                f("name", DataType::Utf8),
                f("email_address", DataType::Utf8),
                f("credit_card", DataType::Utf8),
                f("city", DataType::Utf8),
                f("state", DataType::Utf8),
                f("date_time", ts()),
                f("extra", DataType::Utf8),
            ],
            NexmarkTable::Auction => vec![
                f("id", DataType::Int64),
                f("item_name", DataType::Utf8),
                f("description", DataType::Utf8),
                f("initial_bid", DataType::Int64),
                f("reserve", DataType::Int64),
                f("date_time", ts()),
                f("expires", ts()),
                f("seller", DataType::Int64),
                f("category", DataType::Int64),
                f("extra", DataType::Utf8),
            ],
            NexmarkTable::Bid => vec![
                f("auction", DataType::Int64),
                f("bidder", DataType::Int64),
                f("price", DataType::Int64),
                f("channel", DataType::Utf8),
                f("url", DataType::Utf8),
                f("date_time", ts()),
                f("extra", DataType::Utf8),
            ],
        }))
    }
}

/// Parsed options.
#[derive(Debug, Clone)]
pub struct NexmarkOptions {
    pub table: NexmarkTable,
    pub events: Option<u64>,
    pub rate: f64,
    pub event_rate: f64,
    pub seed: u64,
    pub start_ms: i64,
    pub disorder_ms: i64,
    pub batch_size: usize,
}

impl NexmarkOptions {
    pub fn parse(options: &ConnectorOptions) -> Result<Self, OptionProblem> {
        let get = |key: &str| set_option(options, key);
        let num = |key: &str, default: f64| number_option(options, key, default);
        let table = match get("table") {
            Some("person") => NexmarkTable::Person,
            Some("auction") => NexmarkTable::Auction,
            Some("bid") => NexmarkTable::Bid,
            other => {
                return Err(OptionProblem::new(
                    Some(if other.is_some() {
                        "table"
                    } else {
                        "connector"
                    }),
                    "a nexmark table needs table = 'person', 'auction' or 'bid'",
                ));
            }
        };
        let event_rate = num("event_rate", 10_000.0)?;
        if event_rate <= 0.0 {
            return Err(OptionProblem::new(
                Some("event_rate"),
                "event_rate (events per second of event time) must be above 0",
            ));
        }
        let interval = |key: &str, default: i64| -> Result<i64, OptionProblem> {
            match get(key) {
                None => Ok(default),
                Some(v) => crate::generator::interval_ms(key, v),
            }
        };
        Ok(NexmarkOptions {
            table,
            events: get("events")
                .map(|_| num("events", 0.0))
                .transpose()?
                .map(|x| x as u64),
            rate: num("rate", 0.0)?,
            event_rate,
            seed: num("seed", 42.0)? as u64,
            start_ms: match get("start_time") {
                Some(v) => crate::generator::parse_time("start_time", v)?,
                None => 1_700_000_000_000,
            },
            disorder_ms: interval("disorder", 0)?,
            batch_size: (num("batch_size", 4096.0)? as usize).max(1),
        })
    }
}

/// Columns being built for one batch.
#[derive(Default)]
struct Builder {
    ints: Vec<Vec<i64>>,
    texts: Vec<Vec<String>>,
    times: Vec<Vec<i64>>,
}

pub struct NexmarkSource {
    opts: NexmarkOptions,
    /// The next global event number to look at.
    next: u64,
    wall_start: Option<Instant>,
    /// Events looked at since `wall_start` (for pacing).
    paced: u64,
    schema: SchemaRef,
    columns: Vec<usize>,
    /// Which chunks this source makes when split; `None` when it makes every event.
    part: Option<Part>,
    /// Parts restored from a checkpoint, handed out by `split`.
    saved: Vec<(Part, u64)>,
}

/// One of `count` parts of a split source: chunks `index`, `index + count`, … of `chunk`
/// events each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    index: u64,
    count: u64,
    chunk: u64,
}

impl Part {
    /// Its key among a checkpoint's positions.
    fn key(&self) -> String {
        format!("events {}/{} by {}", self.index, self.count, self.chunk)
    }

    fn parse(key: &str) -> Option<Part> {
        let (index, rest) = key.strip_prefix("events ")?.split_once('/')?;
        let (count, chunk) = rest.split_once(" by ")?;
        let part = Part {
            index: index.parse().ok()?,
            count: count.parse().ok()?,
            chunk: chunk.parse().ok()?,
        };
        (part.count > 0 && part.chunk > 0 && part.index < part.count).then_some(part)
    }

    /// The first event of this part at or after `n`.
    fn first_from(&self, n: u64) -> u64 {
        let stride = self.chunk * self.count;
        let round = n / stride;
        let start = round * stride + self.index * self.chunk;
        if n < start {
            start
        } else if n < start + self.chunk {
            n
        } else {
            start + stride
        }
    }

    /// The end of the chunk holding `n` (one of this part's).
    fn chunk_end(&self, n: u64) -> u64 {
        (n / self.chunk + 1) * self.chunk
    }
}

impl NexmarkSource {
    pub fn new(table: &str, opts: NexmarkOptions, schema: SchemaRef) -> Result<Self, String> {
        let columns = crate::generator::declared_columns(
            table,
            "the nexmark table",
            &opts.table.schema(),
            &schema,
        )?;
        Ok(NexmarkSource {
            opts,
            next: 0,
            wall_start: None,
            paced: 0,
            schema,
            columns,
            part: None,
            saved: Vec::new(),
        })
    }

    /// Global events a batch of this table spans.
    fn span(&self) -> u64 {
        let share = match self.opts.table {
            NexmarkTable::Person => PERSON_SHARE,
            NexmarkTable::Auction => AUCTION_SHARE,
            NexmarkTable::Bid => TOTAL_SHARE - PERSON_SHARE - AUCTION_SHARE,
        };
        (self.opts.batch_size as u64 * TOTAL_SHARE).div_ceil(share)
    }

    /// Another source over the same table, making `part`'s chunks from `next`.
    fn part_from(&self, part: Part, next: u64) -> NexmarkSource {
        let mut opts = self.opts.clone();
        // The whole source's rate, shared out (a part's own is already its share).
        let whole = match self.part {
            Some(p) => self.opts.rate * p.count as f64,
            None => self.opts.rate,
        };
        opts.rate = whole / part.count as f64;
        NexmarkSource {
            opts,
            next: part.first_from(next),
            wall_start: None,
            paced: 0,
            schema: self.schema.clone(),
            columns: self.columns.clone(),
            part: Some(part),
            saved: Vec::new(),
        }
    }

    fn time_of(&self, n: u64) -> i64 {
        let t = self.opts.start_ms + (n as f64 * 1000.0 / self.opts.event_rate) as i64;
        let d = self.opts.disorder_ms.max(0) as u64;
        if d == 0 {
            t
        } else {
            t - (mix(self.opts.seed ^ 0xD150, n) % (d + 1)) as i64
        }
    }

    /// Events due by now (at least one, waiting if needed), at most `n`.
    fn pace(&mut self, n: u64) -> u64 {
        if self.opts.rate <= 0.0 {
            return n;
        }
        let start = *self.wall_start.get_or_insert_with(Instant::now);
        loop {
            let elapsed = start.elapsed().as_secs_f64();
            let due = ((elapsed * self.opts.rate) as u64).saturating_sub(self.paced);
            if due > 0 {
                return due.min(n);
            }
            let wait = (self.paced + 1) as f64 / self.opts.rate - elapsed;
            std::thread::sleep(Duration::from_secs_f64(wait.clamp(0.001, 0.1)));
        }
    }

    fn person(&self, n: u64, b: &mut Builder) {
        let mut r = Rng::new(mix(self.opts.seed, n));
        let id = FIRST_ID + (n / TOTAL_SHARE) as i64;
        let first = FIRST_NAMES[r.below(FIRST_NAMES.len() as u64) as usize];
        let last = LAST_NAMES[r.below(LAST_NAMES.len() as u64) as usize];
        b.ints[0].push(id);
        b.texts[0].push(format!("{first} {last}"));
        b.texts[1].push(format!("{}@{}.com", last.to_lowercase(), r.below(1000)));
        b.texts[2].push(format!(
            "{:04} {:04} {:04} {:04}",
            r.below(10_000),
            r.below(10_000),
            r.below(10_000),
            r.below(10_000)
        ));
        b.texts[3].push(CITIES[r.below(CITIES.len() as u64) as usize].to_string());
        b.texts[4].push(STATES[r.below(STATES.len() as u64) as usize].to_string());
        b.times[0].push(self.time_of(n));
        b.texts[5].push(String::new());
    }

    /// The newest person id at event `n` (there is always one: event 0 is a person).
    fn last_person(n: u64) -> i64 {
        FIRST_ID + (n / TOTAL_SHARE) as i64
    }

    fn last_auction(n: u64) -> i64 {
        let epoch = n / TOTAL_SHARE;
        let offset = n % TOTAL_SHARE;
        let in_epoch = offset.saturating_sub(PERSON_SHARE).min(AUCTION_SHARE);
        // Auctions of earlier epochs plus those of this one so far (at least the first).
        FIRST_ID + (epoch * AUCTION_SHARE + in_epoch.max(1) - 1) as i64
    }

    fn recent(last: i64, window: u64, r: &mut Rng) -> i64 {
        let span = ((last - FIRST_ID + 1) as u64).min(window).max(1);
        last - r.below(span) as i64
    }

    fn auction(&self, n: u64, b: &mut Builder) {
        let mut r = Rng::new(mix(self.opts.seed, n));
        let epoch = n / TOTAL_SHARE;
        let id = FIRST_ID + (epoch * AUCTION_SHARE + n % TOTAL_SHARE - PERSON_SHARE) as i64;
        let last_person = Self::last_person(n);
        let seller = if r.below(HOT_SELLER_RATIO) > 0 {
            // A hot seller: one of a few ids.
            (last_person / HOT_SELLER_RATIO as i64) * HOT_SELLER_RATIO as i64
        } else {
            Self::recent(last_person, ACTIVE_PEOPLE, &mut r)
        }
        .max(FIRST_ID);
        let initial = (10f64.powf(r.unit() * 6.0) * 100.0).round() as i64;
        let t = self.time_of(n);
        b.ints[0].push(id);
        b.texts[0].push(format!("item-{}", r.below(100_000)));
        b.texts[1].push(format!("description of item {id}"));
        b.ints[1].push(initial);
        b.ints[2].push(initial + r.below(5_000) as i64);
        b.times[0].push(t);
        // Open for 1 to 20 seconds of event time.
        b.times[1].push(t + 1_000 + r.below(19_000) as i64);
        b.ints[3].push(seller);
        b.ints[4].push(10 + r.below(5) as i64);
        b.texts[2].push(String::new());
    }

    fn bid(&self, n: u64, b: &mut Builder) {
        let mut r = Rng::new(mix(self.opts.seed, n));
        let last_auction = Self::last_auction(n);
        let auction = if r.below(HOT_AUCTION_RATIO) > 0 {
            (last_auction / HOT_AUCTION_RATIO as i64) * HOT_AUCTION_RATIO as i64
        } else {
            Self::recent(last_auction, ACTIVE_AUCTIONS, &mut r)
        }
        .max(FIRST_ID);
        let last_person = Self::last_person(n);
        let bidder = if r.below(HOT_BIDDER_RATIO) > 0 {
            (last_person / HOT_BIDDER_RATIO as i64) * HOT_BIDDER_RATIO as i64 + 1
        } else {
            Self::recent(last_person, ACTIVE_PEOPLE, &mut r)
        }
        .clamp(FIRST_ID, last_person);
        let channel = CHANNELS[r.below(CHANNELS.len() as u64) as usize];
        b.ints[0].push(auction);
        b.ints[1].push(bidder);
        // Nexmark's prices: 10^(0..6) dollars, in cents.
        b.ints[2].push((10f64.powf(r.unit() * 6.0) * 100.0).round() as i64);
        b.texts[0].push(channel.to_string());
        let word = |r: &mut Rng| {
            let len = 3 + r.below(5);
            (0..len)
                .map(|_| (b'a' + r.below(26) as u8) as char)
                .collect::<String>()
        };
        let (d1, d2, d3) = (word(&mut r), word(&mut r), word(&mut r));
        b.texts[1].push(format!(
            "https://www.nexmark.com/{d1}/{d2}/{d3}/item.htm?query=1&channel_id={}",
            r.below(1000)
        ));
        b.times[0].push(self.time_of(n));
        b.texts[2].push(String::new());
    }

    fn finish(&self, b: Builder) -> Vec<ArrayRef> {
        let mut ints = b
            .ints
            .into_iter()
            .map(|v| Arc::new(Int64Array::from(v)) as ArrayRef);
        let mut texts = b
            .texts
            .into_iter()
            .map(|v| Arc::new(StringArray::from(v)) as ArrayRef);
        let mut times = b
            .times
            .into_iter()
            .map(|v| Arc::new(TimestampMillisecondArray::from(v)) as ArrayRef);
        let mut out = Vec::new();
        for f in self.opts.table.schema().fields() {
            let next = match f.data_type() {
                DataType::Int64 => ints.next(),
                DataType::Utf8 => texts.next(),
                _ => times.next(),
            };
            if let Some(a) = next {
                out.push(a);
            }
        }
        out
    }
}

impl Source for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn position(&self) -> Positions {
        match self.part {
            Some(part) => Positions::from([(part.key(), self.next as i64)]),
            None => Positions::from([("event".to_string(), self.next as i64)]),
        }
    }

    fn seek(&mut self, position: &Positions) -> Result<()> {
        self.wall_start = None;
        self.paced = 0;
        let mut parts: Vec<(Part, u64)> = position
            .iter()
            .filter_map(|(k, &n)| Some((Part::parse(k)?, n.max(0) as u64)))
            .collect();
        if !parts.is_empty() {
            // A split source: this one makes the first part, `split` the others.
            parts.sort_by_key(|(p, _)| p.index);
            let (part, next) = parts.remove(0);
            *self = NexmarkSource {
                saved: parts,
                ..self.part_from(part, next)
            };
        } else if let Some(&n) = position.get("event") {
            self.next = n.max(0) as u64;
        }
        Ok(())
    }

    fn split(&mut self, n: usize) -> Result<Vec<Box<dyn Source>>> {
        if !self.saved.is_empty() {
            let saved = std::mem::take(&mut self.saved);
            return Ok(saved
                .into_iter()
                .map(|(part, next)| Box::new(self.part_from(part, next)) as Box<dyn Source>)
                .collect());
        }
        // Only a source not yet split; a restored one keeps its saved parts.
        if self.part.is_some() || n < 2 {
            return Ok(Vec::new());
        }
        // Events before `next` were made already: the parts deal out those after.
        let first = Part {
            index: 0,
            count: n as u64,
            chunk: self.span(),
        };
        let parts = (1..first.count)
            .map(|index| {
                let part = Part { index, ..first };
                Box::new(self.part_from(part, self.next)) as Box<dyn Source>
            })
            .collect();
        *self = self.part_from(first, self.next);
        Ok(parts)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let end = self.opts.events.unwrap_or(u64::MAX);
        if self.next >= end {
            return Ok(None);
        }
        // Scan enough global events to fill a batch of this table (within this part's
        // chunk when split).
        let limit = match self.part {
            Some(part) => part.chunk_end(self.next).min(end),
            None => end,
        };
        let span = self.pace(self.span()).min(limit - self.next);
        let (ints, texts, times) = match self.opts.table {
            NexmarkTable::Person => (1, 6, 1),
            NexmarkTable::Auction => (5, 3, 2),
            NexmarkTable::Bid => (3, 3, 1),
        };
        let mut b = Builder {
            ints: vec![Vec::new(); ints],
            texts: vec![Vec::new(); texts],
            times: vec![Vec::new(); times],
        };
        for n in self.next..self.next + span {
            if NexmarkTable::of_event(n) != self.opts.table {
                continue;
            }
            match self.opts.table {
                NexmarkTable::Person => self.person(n, &mut b),
                NexmarkTable::Auction => self.auction(n, &mut b),
                NexmarkTable::Bid => self.bid(n, &mut b),
            }
        }
        self.next += span;
        self.paced += span;
        if let Some(part) = self.part {
            self.next = part.first_from(self.next);
        }
        let all = self.finish(b);
        crate::generator::select_declared(&all, &self.columns, &self.schema).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;

    fn source(table: &str, events: u64) -> NexmarkSource {
        let mut o = ConnectorOptions::default();
        for (k, v) in [
            ("table", table.to_string()),
            ("events", events.to_string()),
            ("batch_size", "100".to_string()),
        ] {
            o.insert(k, v, sluice_types::Position::default());
        }
        let opts = NexmarkOptions::parse(&o).unwrap();
        NexmarkSource::new("t", opts.clone(), opts.table.schema()).unwrap()
    }

    fn all(mut s: NexmarkSource) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        while let Some(b) = s.next_batch().unwrap() {
            out.push(b);
        }
        out
    }

    fn ints(batches: &[RecordBatch], col: usize) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
            .collect()
    }

    #[test]
    fn proportions_and_references_hold() {
        let n = 50_000;
        let people = ints(&all(source("person", n)), 0);
        let auctions = all(source("auction", n));
        let bids = all(source("bid", n));
        assert_eq!(people.len(), 1_000);
        assert_eq!(ints(&auctions, 0).len(), 3_000);
        assert_eq!(ints(&bids, 0).len(), 46_000);
        let auction_ids: std::collections::HashSet<i64> = ints(&auctions, 0).into_iter().collect();
        let person_ids: std::collections::HashSet<i64> = people.into_iter().collect();
        assert!(ints(&bids, 0).iter().all(|a| auction_ids.contains(a)));
        assert!(ints(&bids, 1).iter().all(|p| person_ids.contains(p)));
        assert!(ints(&auctions, 7).iter().all(|p| person_ids.contains(p)));
    }

    /// Every bid as (price, time), sorted: what a run made, whatever the order.
    fn bids_of(batches: &[RecordBatch]) -> Vec<(i64, i64)> {
        let mut out: Vec<(i64, i64)> = ints(batches, 2)
            .into_iter()
            .zip(batches.iter().flat_map(|b| {
                b.column(5)
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                    .values()
                    .to_vec()
            }))
            .collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn split_parts_make_every_event_once() {
        let straight = bids_of(&all(source("bid", 30_000)));
        for n in [2, 3] {
            let mut first = source("bid", 30_000);
            let rest = first.split(n).unwrap();
            assert_eq!(rest.len(), n - 1);
            let mut batches = all(first);
            for mut p in rest {
                while let Some(b) = p.next_batch().unwrap() {
                    batches.push(b);
                }
            }
            assert_eq!(bids_of(&batches), straight, "{n} parts");
        }
    }

    #[test]
    fn split_parts_resume_from_their_positions() {
        let straight = bids_of(&all(source("bid", 30_000)));
        let mut first = source("bid", 30_000);
        let mut parts: Vec<Box<dyn Source>> = first.split(3).unwrap();
        parts.insert(0, Box::new(first));
        // Each part a few batches in, unevenly; then the positions saved together.
        let mut made = Vec::new();
        let mut saved = Positions::new();
        for (i, p) in parts.iter_mut().enumerate() {
            for _ in 0..=i * 2 {
                if let Some(b) = p.next_batch().unwrap() {
                    made.push(b);
                }
            }
            saved.extend(p.position());
        }
        assert_eq!(saved.len(), 3);
        let mut again = source("bid", 30_000);
        again.seek(&saved).unwrap();
        let rest = again.split(3).unwrap();
        assert_eq!(rest.len(), 2);
        made.extend(all(again));
        for mut p in rest {
            while let Some(b) = p.next_batch().unwrap() {
                made.push(b);
            }
        }
        assert_eq!(bids_of(&made), straight);
    }

    #[test]
    fn seeking_gives_what_a_straight_run_gives() {
        let straight = ints(&all(source("bid", 5_000)), 2);
        let mut s = source("bid", 5_000);
        let first = s.next_batch().unwrap().unwrap();
        let pos = s.position();
        let mut t = source("bid", 5_000);
        t.seek(&pos).unwrap();
        let mut rest = vec![first];
        rest.extend(all(t));
        assert_eq!(ints(&rest, 2), straight);
    }
}
