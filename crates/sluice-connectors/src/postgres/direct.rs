//! Whether a keyed table's epoch first tries COPY straight into the table: while its
//! keys are new (a key per row), that skips the stage and `INSERT … ON CONFLICT`; a key
//! already in the table makes the COPY fail, and the epoch goes through the stage after
//! all, in the same transaction. Conflicts in a row make the next tries rarer.

/// At most this many epochs go through the stage between two tries.
const MAX_PAUSE: u32 = 64;

/// The sink's memory of how direct COPYs went.
#[derive(Debug, Clone)]
pub(super) struct DirectCopy {
    /// Epochs left to go through the stage before the next try.
    skip: u32,
    /// What `skip` becomes after the next conflict.
    pause: u32,
}

impl Default for DirectCopy {
    fn default() -> Self {
        DirectCopy { skip: 0, pause: 1 }
    }
}

impl DirectCopy {
    /// Whether this epoch tries a direct COPY (call once an epoch).
    pub(super) fn attempt(&mut self) -> bool {
        if self.skip == 0 {
            true
        } else {
            self.skip -= 1;
            false
        }
    }

    /// How a tried epoch went: a conflict pauses the tries, twice as long each time in
    /// a row; a success resets the pause.
    pub(super) fn tried(&mut self, conflicted: bool) {
        if conflicted {
            self.skip = self.pause;
            self.pause = (self.pause * 2).min(MAX_PAUSE);
        } else {
            self.pause = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The epochs (of `n`) that try, when every try conflicts or none does.
    fn tries(n: usize, conflict: bool) -> Vec<usize> {
        let mut d = DirectCopy::default();
        (0..n)
            .filter(|_| {
                let t = d.attempt();
                if t {
                    d.tried(conflict);
                }
                t
            })
            .collect()
    }

    #[test]
    fn new_keys_go_direct_every_epoch() {
        assert_eq!(tries(10, false), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn conflicts_in_a_row_make_tries_rarer_up_to_a_bound() {
        // Pauses of 1, 2, 4, 8, 16, 32, 64, 64 epochs between tries.
        assert_eq!(
            tries(400, true),
            [0, 2, 5, 10, 19, 36, 69, 134, 199, 264, 329, 394]
        );
    }

    #[test]
    fn a_success_after_conflicts_resets_the_pause() {
        let mut d = DirectCopy::default();
        assert!(d.attempt());
        d.tried(true);
        assert!(!d.attempt());
        assert!(d.attempt());
        d.tried(true);
        assert!(!d.attempt() && !d.attempt());
        assert!(d.attempt());
        d.tried(false);
        assert!(d.attempt());
        d.tried(true);
        assert!(!d.attempt());
        assert!(
            d.attempt(),
            "after a success, one conflict pauses for one epoch"
        );
    }
}
