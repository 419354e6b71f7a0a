//! The supervisor of a job: starts it, waits for it, and after a failure restarts it
//! from its newest checkpoint with a doubling pause, up to the policy's limit; and the
//! sampler of events per second.

use std::time::{Duration, Instant};

use sluice_runtime::JobHandle;
use sluice_types::{ErrorKind, redact_secrets};

use super::{Desired, Job, JobFailure, JobState, Manager, RATE_HISTORY, Restore, StartRequest};
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
            // The handle exists before the job opens anything, so that a stop or cancel
            // during a slow start (a broker that does not answer) reaches it.
            let Some(live) = self
                .lock()
                .ok()
                .and_then(|j| j.get(name).map(|j| j.live.clone()))
            else {
                return;
            };
            let handle = JobHandle::with_live(live);
            let mut desired = Desired::Run;
            self.update(name, |j| {
                desired = j.desired;
                j.handle = Some(handle.clone());
            });
            match desired {
                Desired::Stop => handle.stop(),
                Desired::Cancel => handle.abort(),
                Desired::Run => {}
            }
            let t0 = Instant::now();
            // A job starts with the table catalog as it is now.
            let started = self
                .tables()
                .map_err(|e| JobFailure::new(ErrorKind::Internal, e.to_string()))
                .and_then(|tables| {
                    self.inner.launcher.start(StartRequest {
                        name,
                        sql: &sql,
                        checkpoint_dir: &self.inner.dir,
                        restore: &restore,
                        handle: &handle,
                        tables: &tables,
                    })
                });
            let outcome = match started {
                Ok(running) => {
                    self.update(name, |j| {
                        j.last_metrics = Some(running.handle.clone());
                        j.started = Some(Instant::now());
                        j.sample = None;
                        if j.desired == Desired::Run {
                            j.state = JobState::Running;
                        }
                    });
                    (running.run)()
                }
                // A checkpoint the user chose that cannot be restored: say so, no retries.
                Err(e) if matches!(restore, Restore::Chosen(_)) => {
                    self.update(name, |j| {
                        j.handle = None;
                        j.state = JobState::Failed;
                        j.last_error = Some(redact_secrets(&e.message));
                    });
                    return;
                }
                Err(e) => Err(e),
            };
            let ran = t0.elapsed();
            self.update(name, |j| {
                j.handle = None;
                j.started = None;
                j.rate = 0.0;
            });
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
                        j.last_error = Some(redact_secrets(&e.message));
                    });
                    return;
                }
                (Err(e), Desired::Run) => e,
            };
            let message = redact_secrets(&error.message);
            // Only a failure outside Sluice may go away by itself; a wrong job or bad
            // data under bad_data = 'fail' fails the same way every time.
            if error.kind != ErrorKind::External {
                tracing::error!("job {name} failed ({:?} error): {message}", error.kind);
                self.update(name, |j| {
                    j.state = JobState::Failed;
                    j.last_error = Some(message);
                });
                return;
            }
            tracing::warn!("job {name} failed: {message}");
            let mut restarts = 0;
            self.update(name, |j| {
                j.restarts = policy.count_after(j.restarts, ran);
                restarts = j.restarts;
                j.last_error = Some(message.clone());
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
            let pause = policy.backoff().pause(restarts);
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
                match &j.handle {
                    Some(h) => {
                        let now = (Instant::now(), h.metrics.snapshot().events_in);
                        if let Some((t, n)) = j.sample {
                            let dt = now.0.duration_since(t).as_secs_f64();
                            if dt > 0.0 {
                                j.rate = (now.1.saturating_sub(n)) as f64 / dt;
                            }
                        }
                        j.sample = Some(now);
                    }
                    None => {
                        j.rate = 0.0;
                        j.sample = None;
                    }
                }
                if j.rates.len() == RATE_HISTORY {
                    j.rates.pop_front();
                }
                j.rates.push_back(j.rate.round());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::manager::{JobFailure, Launcher, RestartPolicy, Running, SqlProblem};

    /// Runs that last a while, then end as scripted; after the script, runs that wait
    /// to be stopped.
    struct Scripted(Mutex<VecDeque<(Duration, Result<(), JobFailure>)>>);

    impl Launcher for Scripted {
        fn validate(
            &self,
            _sql: &str,
            _tables: &[crate::catalog::Definitions],
        ) -> Result<String, SqlProblem> {
            Ok(String::new())
        }

        fn check_tables(
            &self,
            _file: &crate::catalog::Definitions,
        ) -> Result<Vec<String>, SqlProblem> {
            Ok(Vec::new())
        }

        fn start(&self, request: StartRequest<'_>) -> Result<Running, JobFailure> {
            let (lasts, end) = self
                .0
                .lock()
                .ok()
                .and_then(|mut s| s.pop_front())
                .unwrap_or((Duration::from_secs(3600), Ok(())));
            let handle = request.handle.clone();
            Ok(Running {
                handle: handle.clone(),
                run: Box::new(move || {
                    if handle.interrupt().sleep(lasts) {
                        end
                    } else {
                        Ok(())
                    }
                }),
            })
        }
    }

    fn manager(script: Vec<(Duration, Result<(), JobFailure>)>, name: &str) -> Manager {
        let dir = std::env::temp_dir().join(format!("sluice-sup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let policy = RestartPolicy {
            max_restarts: 2,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            healthy_after: Duration::from_millis(200),
        };
        Manager::open(Box::new(Scripted(Mutex::new(script.into()))), dir, policy).unwrap()
    }

    fn outage() -> Result<(), JobFailure> {
        Err(JobFailure::new(ErrorKind::External, "broker away"))
    }

    fn wait_for(m: &Manager, name: &str, want: JobState) -> crate::JobInfo {
        let t0 = Instant::now();
        loop {
            let j = m.get(name, false).unwrap();
            if j.state == want {
                return j;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{j:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn outages_spread_over_a_healthy_life_are_never_given_up_on() {
        // Six failures, each after a healthy 300 ms: more than max_restarts (2) in all,
        // but never more than one in a row.
        let m = manager(vec![(Duration::from_millis(300), outage()); 6], "spread");
        m.submit("j", "x", Restore::Fresh).unwrap();
        std::thread::sleep(Duration::from_millis(2_500));
        let j = wait_for(&m, "j", JobState::Running);
        assert_eq!(j.restarts, 1, "{j:?}");
        m.cancel("j").unwrap();
        wait_for(&m, "j", JobState::Cancelled);
    }

    #[test]
    fn outages_in_a_row_end_in_failed() {
        let m = manager(vec![(Duration::from_millis(5), outage()); 6], "row");
        m.submit("j", "x", Restore::Fresh).unwrap();
        let j = wait_for(&m, "j", JobState::Failed);
        assert_eq!(j.restarts, 3, "{j:?}");
        assert_eq!(j.last_error.as_deref(), Some("broker away"));
    }

    #[test]
    fn a_user_error_is_not_retried() {
        let bad = Err(JobFailure::new(
            ErrorKind::User,
            "bad record in postgres://u:pw@h/db",
        ));
        let m = manager(vec![(Duration::from_millis(5), bad)], "user");
        m.submit("j", "x", Restore::Fresh).unwrap();
        let j = wait_for(&m, "j", JobState::Failed);
        assert_eq!(j.restarts, 0, "{j:?}");
        assert_eq!(
            j.last_error.as_deref(),
            Some("bad record in postgres://u:***@h/db")
        );
    }

    #[test]
    fn a_cancel_reaches_a_job_still_starting() {
        // A run that would take an hour ends at once when cancelled.
        let m = manager(vec![(Duration::from_secs(3600), outage())], "cancel");
        m.submit("j", "x", Restore::Fresh).unwrap();
        wait_for(&m, "j", JobState::Running);
        let t0 = Instant::now();
        m.cancel("j").unwrap();
        wait_for(&m, "j", JobState::Cancelled);
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}
