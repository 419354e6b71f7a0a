//! The one retry policy: waits that double from a first pause up to a ceiling, cut
//! short when the job is asked to stop ([`Interrupt`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Raised when a job is stopping or cancelled: every wait and retry loop of the job
/// ends at its next look instead of going on.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    pub fn new() -> Self {
        Interrupt::default()
    }

    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `d`, looking at the flag every 20 ms. False if it was raised.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.is_raised() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(20)));
        }
    }
}

/// Doubling pauses: `first`, `2 × first`, … up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The pause before retry number `n` (1 for the first retry).
    pub fn pause(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.first.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_ceiling() {
        let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
        let pauses: Vec<u128> = (1..=7).map(|n| b.pause(n).as_millis()).collect();
        assert_eq!(pauses, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(b.pause(1000), Duration::from_secs(8));
    }

    #[test]
    fn an_interrupt_cuts_a_sleep_short() {
        let i = Interrupt::new();
        let j = i.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            j.raise();
        });
        let start = Instant::now();
        assert!(!i.sleep(Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap_or_default();
        assert!(!i.sleep(Duration::from_millis(1)));
    }
}
