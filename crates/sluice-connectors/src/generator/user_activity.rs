//! User activity on a web shop. Users open sessions (login, page views, carts,
//! purchases, logout) of realistic length (most a few minutes, some well over five), with
//! gaps of more than half an hour between them. Event times come from the users'
//! behaviour, so sessions are real sessions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::rng::{Rng, mix};

const PAGES: &[&str] = &[
    "/",
    "/search",
    "/category/shoes",
    "/category/jackets",
    "/category/bags",
    "/product/1021",
    "/product/2210",
    "/product/3307",
    "/product/4415",
    "/cart",
    "/checkout",
    "/account",
];
const BROWSERS: &[(&str, f64)] = &[
    ("chrome", 0.62),
    ("safari", 0.2),
    ("firefox", 0.08),
    ("edge", 0.07),
    ("other", 0.03),
];
const DEVICES: &[(&str, f64)] = &[("mobile", 0.58), ("desktop", 0.36), ("tablet", 0.06)];

/// The shortest gap between two sessions of one user: longer than the 30-minute session
/// gap of the reference job, so its sessions are the ones generated.
pub const MIN_GAP_MS: f64 = 31.0 * 60_000.0;

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("page", DataType::Utf8, true),
        Field::new("browser", DataType::Utf8, true),
        Field::new("device", DataType::Utf8, true),
        Field::new(
            "event_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
    ]))
}

fn pick(table: &[(&'static str, f64)], u: f64) -> &'static str {
    let mut acc = 0.0;
    for (name, p) in table {
        acc += p;
        if u < acc {
            return name;
        }
    }
    table[table.len() - 1].0
}

struct User {
    id: String,
    browser: &'static str,
    device: &'static str,
    session: u32,
    remaining: u32,
    think_ms: f64,
}

pub struct UserModel {
    users: Vec<User>,
    due: BinaryHeap<Reverse<(i64, u32)>>,
}

impl UserModel {
    pub fn new(keys: usize, seed: u64, start_ms: i64) -> Self {
        let keys = keys.max(1);
        let mut due = BinaryHeap::new();
        let users = (0..keys)
            .map(|k| {
                let mut r = Rng::new(mix(seed, k as u64));
                // Users start spread over the first 20 minutes.
                due.push(Reverse((
                    start_ms + (r.unit() * 1_200_000.0) as i64,
                    k as u32,
                )));
                User {
                    id: format!("user-{k:05}"),
                    browser: pick(BROWSERS, r.unit()),
                    device: pick(DEVICES, r.unit()),
                    session: 0,
                    remaining: 0,
                    think_ms: 0.0,
                }
            })
            .collect();
        UserModel { users, due }
    }

    /// The event time of the next event, without taking it.
    pub fn peek_time(&self) -> i64 {
        self.due.peek().map_or(i64::MAX, |Reverse((t, _))| *t)
    }

    /// The next `n` events in time order of the model (before disorder).
    pub fn batch(&mut self, n: usize, rng: &mut Rng) -> (Vec<i64>, Vec<ArrayRef>) {
        let mut times = Vec::with_capacity(n);
        let mut users = Vec::with_capacity(n);
        let mut sessions = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut pages = Vec::with_capacity(n);
        let mut browsers = Vec::with_capacity(n);
        let mut devices = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(Reverse((t, k))) = self.due.pop() else {
                break;
            };
            let u = &mut self.users[k as usize];
            let (kind, page, next) = if u.remaining == 0 {
                // A new session: most a few minutes, one in five long.
                u.session += 1;
                let long = rng.chance(0.2);
                u.remaining = if long {
                    18 + rng.below(20) as u32
                } else {
                    2 + rng.below(9) as u32
                };
                u.think_ms = if long { 30_000.0 } else { 18_000.0 };
                ("login", "/login", t + 1_000 + rng.exp(u.think_ms) as i64)
            } else if u.remaining == 1 {
                u.remaining = 0;
                (
                    "logout",
                    "/logout",
                    t + (MIN_GAP_MS + rng.exp(30.0 * 60_000.0)) as i64,
                )
            } else {
                u.remaining -= 1;
                let r = rng.unit();
                let kind = if r < 0.72 {
                    "page_view"
                } else if r < 0.92 {
                    "add_to_cart"
                } else {
                    "purchase"
                };
                let page = match kind {
                    "purchase" => "/checkout",
                    "add_to_cart" => "/cart",
                    _ => PAGES[rng.below(PAGES.len() as u64) as usize],
                };
                (kind, page, t + 1_000 + rng.exp(u.think_ms) as i64)
            };
            times.push(t);
            users.push(u.id.clone());
            sessions.push(format!("{}-s{}", u.id, u.session));
            types.push(kind);
            pages.push(page);
            browsers.push(u.browser);
            devices.push(u.device);
            self.due.push(Reverse((next, k)));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(users)),
            Arc::new(StringArray::from(sessions)),
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(pages)),
            Arc::new(StringArray::from(browsers)),
            Arc::new(StringArray::from(devices)),
            Arc::new(TimestampMillisecondArray::from(times.clone())),
        ];
        (times, columns)
    }
}
