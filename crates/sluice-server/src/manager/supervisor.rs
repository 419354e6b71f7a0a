//! The supervisor of a job: starts it, waits for it, and after a failure restarts it
//! from its newest checkpoint with a doubling pause, up to the policy's limit; and the
//! sampler of events per second.

use std::time::{Duration, Instant};

use super::{Desired, Job, JobState, Manager, Restore, StartRequest};
use crate::error::ServerError;

impl Manager {
    pub(super) fn spawn(&self, name: &str, restore: Restore) -> Result<(), ServerError> {
        let m = self.clone();
        let n = name.to_string();
        std::thread::Builder::new()
            .name(format!("job {name}"))
            .spawn(move || m.supervise(&n, restore))
            .map(|_| ())
            .map_err(|e| ServerError::Internal(format!("cannot start a thread: {e}")))
    }

    /// Updates a job under the lock and writes the catalog; false if it is gone.
    fn update(&self, name: &str, f: impl FnOnce(&mut Job)) -> bool {
        let Ok(mut jobs) = self.lock() else {
            return false;
        };
        let Some(j) = jobs.get_mut(name) else {
            return false;
        };
        f(j);
        self.save(&jobs);
        true
    }

    fn desired(&self, name: &str) -> Option<Desired> {
        self.lock().ok()?.get(name).map(|j| j.desired)
    }

    fn supervise(&self, name: &str, mut restore: Restore) {
        let policy = self.inner.policy;
        loop {
            let Some(sql) = self
                .lock()
                .ok()
                .and_then(|j| j.get(name).map(|j| j.sql.clone()))
            else {
                return;
            };
            let started = self.inner.launcher.start(StartRequest {
                name,
                sql: &sql,
                checkpoint_dir: &self.inner.dir,
                restore: &restore,
            });
            let outcome = match started {
                Ok(running) => {
                    let handle = running.handle.clone();
                    let mut desired = Desired::Run;
                    self.update(name, |j| {
                        desired = j.desired;
                        j.handle = Some(handle.clone());
                        j.last_metrics = Some(handle.clone());
                        j.started = Some(Instant::now());
                        j.sample = None;
                        if j.desired == Desired::Run {
                            j.state = JobState::Running;
                        }
                    });
                    // A stop or cancel that came while the job was starting.
                    match desired {
                        Desired::Stop => handle.stop(),
                        Desired::Cancel => handle.abort(),
                        Desired::Run => {}
                    }
                    let r = (running.run)();
                    self.update(name, |j| {
                        j.handle = None;
                        j.started = None;
                        j.rate = 0.0;
                    });
                    r
                }
                // A checkpoint the user chose that cannot be restored: say so, no retries.
                Err(e) if matches!(restore, Restore::Chosen(_)) => {
                    self.update(name, |j| {
                        j.state = JobState::Failed;
                        j.last_error = Some(e);
                    });
                    return;
                }
                Err(e) => Err(e),
            };
            let desired = self.desired(name).unwrap_or(Desired::Cancel);
            let error = match (outcome, desired) {
                (_, Desired::Cancel) => {
                    self.update(name, |j| j.state = JobState::Cancelled);
                    return;
                }
                (Ok(()), Desired::Stop) => {
                    self.update(name, |j| j.state = JobState::Stopped);
                    return;
                }
                (Ok(()), Desired::Run) => {
                    self.update(name, |j| j.state = JobState::Finished);
                    return;
                }
                (Err(e), Desired::Stop) => {
                    self.update(name, |j| {
                        j.state = JobState::Failed;
                        j.last_error = Some(e);
                    });
                    return;
                }
                (Err(e), Desired::Run) => e,
            };
            tracing::warn!("job {name} failed: {error}");
            let mut restarts = 0;
            self.update(name, |j| {
                j.restarts += 1;
                restarts = j.restarts;
                j.last_error = Some(error.clone());
                j.state = if j.restarts > policy.max_restarts {
                    JobState::Failed
                } else {
                    JobState::Restarting
                };
            });
            if restarts > policy.max_restarts {
                tracing::error!(
                    "job {name} failed {restarts} times in a row; giving up (resume it when the cause is fixed)"
                );
                return;
            }
            let factor = 1u32 << (restarts - 1).min(16);
            let pause = policy
                .first_backoff
                .saturating_mul(factor)
                .min(policy.max_backoff);
            tracing::info!("restarting job {name} in {pause:?} (restart {restarts})");
            let t0 = Instant::now();
            while t0.elapsed() < pause {
                match self.desired(name) {
                    Some(Desired::Run) => std::thread::sleep(Duration::from_millis(20)),
                    Some(Desired::Stop) => {
                        self.update(name, |j| j.state = JobState::Stopped);
                        return;
                    }
                    _ => {
                        self.update(name, |j| j.state = JobState::Cancelled);
                        return;
                    }
                }
            }
            self.update(name, |j| j.state = JobState::Starting);
            restore = Restore::Newest;
        }
    }

    /// Every second: each running job's events per second.
    pub(super) fn sample_rates(&self) {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let Ok(mut jobs) = self.lock() else {
                return;
            };
            for j in jobs.values_mut() {
                let Some(h) = &j.handle else { continue };
                let now = (Instant::now(), h.metrics.snapshot().events_in);
                if let Some((t, n)) = j.sample {
                    let dt = now.0.duration_since(t).as_secs_f64();
                    if dt > 0.0 {
                        j.rate = (now.1.saturating_sub(n)) as f64 / dt;
                    }
                }
                j.sample = Some(now);
            }
        }
    }
}
