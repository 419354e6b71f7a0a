//! Which worker runs which task, decided from the workers' beats in the shared store. A
//! worker is alive while its beat number keeps changing, judged on the reader's own
//! clock (so machines' clocks need not agree); partition `p` belongs to the
//! `(p mod n)`-th live worker by id; a worker takes a task only once no other live worker
//! holds it, and lets go of one the moment it belongs elsewhere. Views that differ for a
//! moment cost at most a task started twice, and the task's generation fences the older.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// What a worker writes every beat: a number that changes, and the tasks it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Beat {
    pub beat: u64,
    pub held: Vec<i32>,
}

impl Beat {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::json!({ "beat": self.beat, "held": self.held })
            .to_string()
            .into_bytes()
    }

    /// `None` for anything but a beat (a file half-written by a store without renames).
    pub fn parse(bytes: &[u8]) -> Option<Beat> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(Beat {
            beat: v.get("beat")?.as_u64()?,
            held: v
                .get("held")?
                .as_array()?
                .iter()
                .filter_map(|p| i32::try_from(p.as_i64()?).ok())
                .collect(),
        })
    }
}

/// When each worker's beat last changed, as this worker saw it.
#[derive(Debug)]
pub struct Liveness {
    timeout: Duration,
    seen: BTreeMap<String, (u64, Instant)>,
}

impl Liveness {
    pub fn new(timeout: Duration) -> Self {
        Liveness {
            timeout,
            seen: BTreeMap::new(),
        }
    }

    /// Takes the beats read at `now`; returns the live workers' beats. A worker seen for
    /// the first time counts as alive until `timeout` passes without a change.
    pub fn observe(
        &mut self,
        beats: BTreeMap<String, Beat>,
        now: Instant,
    ) -> BTreeMap<String, Beat> {
        self.seen.retain(|id, _| beats.contains_key(id));
        for (id, b) in &beats {
            let entry = self.seen.entry(id.clone()).or_insert((b.beat, now));
            if entry.0 != b.beat {
                *entry = (b.beat, now);
            }
        }
        beats
            .into_iter()
            .filter(|(id, _)| {
                self.seen
                    .get(id)
                    .is_some_and(|(_, at)| now.duration_since(*at) <= self.timeout)
            })
            .collect()
    }

    /// Workers whose beat has not changed for `after`: their files can go.
    pub fn gone(&self, now: Instant, after: Duration) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > after)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// What a worker does next with its tasks.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub start: Vec<i32>,
    pub release: Vec<i32>,
}

/// The owner of each partition among the live workers (`me` among them).
pub fn owners(me: &str, partitions: i32, live: &BTreeMap<String, Beat>) -> Vec<String> {
    let mut ids: BTreeSet<&str> = live.keys().map(String::as_str).collect();
    ids.insert(me);
    let ids: Vec<&str> = ids.into_iter().collect();
    (0..partitions)
        .map(|p| ids[p as usize % ids.len()].to_string())
        .collect()
}

/// Which tasks `me` starts and releases, given the live workers' beats, the tasks it
/// holds, and tasks it must not start now (finished, or just lost to another worker).
pub fn plan(
    me: &str,
    partitions: i32,
    live: &BTreeMap<String, Beat>,
    held: &BTreeSet<i32>,
    skip: &BTreeSet<i32>,
) -> Plan {
    let mut out = Plan::default();
    for (p, owner) in owners(me, partitions, live).iter().enumerate() {
        let p = p as i32;
        if owner == me {
            let held_elsewhere = live.iter().any(|(id, b)| id != me && b.held.contains(&p));
            if !held.contains(&p) && !skip.contains(&p) && !held_elsewhere {
                out.start.push(p);
            }
        } else if held.contains(&p) {
            out.release.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beats(list: &[(&str, u64, &[i32])]) -> BTreeMap<String, Beat> {
        list.iter()
            .map(|(id, beat, held)| {
                (
                    id.to_string(),
                    Beat {
                        beat: *beat,
                        held: held.to_vec(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_beat_survives_its_bytes_and_junk_is_not_a_beat() {
        let b = Beat {
            beat: 7,
            held: vec![0, 2],
        };
        assert_eq!(Beat::parse(&b.to_bytes()), Some(b));
        assert_eq!(Beat::parse(b"{\"beat\": 1"), None);
    }

    #[test]
    fn a_worker_whose_beat_stops_changing_is_dead_after_the_timeout() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::from_secs(6));
        let live = l.observe(beats(&[("a", 1, &[]), ("b", 1, &[])]), t0);
        assert_eq!(live.len(), 2);
        // a beats on, b does not.
        let at = t0 + Duration::from_secs(5);
        assert_eq!(
            l.observe(beats(&[("a", 5, &[]), ("b", 1, &[])]), at).len(),
            2
        );
        let at = t0 + Duration::from_secs(7);
        let live = l.observe(beats(&[("a", 7, &[]), ("b", 1, &[])]), at);
        assert_eq!(live.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(l.gone(at, Duration::from_secs(6)), vec!["b".to_string()]);
        // b comes back (a paused worker resumed): alive again at once.
        let live = l.observe(beats(&[("a", 8, &[]), ("b", 2, &[])]), at);
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn partitions_are_spread_and_taken_only_once_released() {
        let none = BTreeSet::new();
        // Alone: every task.
        let p = plan("a", 3, &beats(&[("a", 1, &[])]), &none, &none);
        assert_eq!(p.start, vec![0, 1, 2]);
        // b joins: a lets go of partition 1, which b takes only after a has released it.
        let live = beats(&[("a", 2, &[0, 1, 2]), ("b", 1, &[])]);
        let held_a: BTreeSet<i32> = [0, 1, 2].into();
        assert_eq!(
            plan("a", 3, &live, &held_a, &none),
            Plan {
                start: vec![],
                release: vec![1]
            }
        );
        assert_eq!(plan("b", 3, &live, &none, &none).start, Vec::<i32>::new());
        let live = beats(&[("a", 3, &[0, 2]), ("b", 2, &[])]);
        assert_eq!(plan("b", 3, &live, &none, &none).start, vec![1]);
        // a finished or lost task is not started again.
        let skip: BTreeSet<i32> = [1].into();
        assert_eq!(plan("b", 3, &live, &none, &skip).start, Vec::<i32>::new());
        // A dead worker's tasks (absent from the live set) are taken at once.
        let live = beats(&[("b", 9, &[1])]);
        let held_b: BTreeSet<i32> = [1].into();
        assert_eq!(plan("b", 3, &live, &held_b, &none).start, vec![0, 2]);
    }
}
