//! The job manager: jobs by name, each run by a supervisor thread that starts it, waits
//! for it, and after a failure restarts it from its newest checkpoint with a growing
//! pause, up to a limit. Stop takes a final checkpoint; cancel does not. Every change of
//! state is written to the catalog.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_runtime::{JobHandle, LiveRows};
use sluice_types::{ErrorKind, redact_secrets};

use crate::catalog::{self, CatalogEntry, Definitions};

mod supervisor;
mod views;
use crate::error::ServerError;
use views::info;
pub use views::{CheckpointInfo, JobFigures, JobInfo, StoredCheckpointInfo};

/// Which checkpoint a start restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The job's newest checkpoint, if it has one.
    Newest,
    /// None: start over.
    Fresh,
    /// An epoch number or a checkpoint directory.
    Chosen(String),
}

/// SQL the engine cannot run, with where.
#[derive(Debug, Clone)]
pub struct SqlProblem {
    pub message: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

/// What a [`Launcher`] is asked to start.
pub struct StartRequest<'a> {
    pub name: &'a str,
    pub sql: &'a str,
    pub checkpoint_dir: &'a Path,
    pub restore: &'a Restore,
    /// The job's handle, made before it starts so that a stop or cancel reaches a job
    /// still opening its connections.
    pub handle: &'a JobHandle,
    /// The table catalog's files, which the job may use.
    pub tables: &'a [Definitions],
}

/// Why a job could not start or stopped running, and who has to act: only an external
/// failure (a broker or database away) is worth a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub kind: ErrorKind,
    pub message: String,
}

impl JobFailure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        JobFailure {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for JobFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A started job: its handle, and the call that runs it to its end.
pub struct Running {
    pub handle: JobHandle,
    pub run: Box<dyn FnOnce() -> Result<(), JobFailure> + Send>,
}

/// Plans and starts jobs; the binary implements it with the real connectors.
pub trait Launcher: Send + Sync + 'static {
    /// Checks a job's SQL (with the table catalog's files) without running it; returns
    /// its plan as text.
    fn validate(&self, sql: &str, tables: &[Definitions]) -> Result<String, SqlProblem>;
    /// Checks a file of definitions on its own; returns the names it declares.
    fn check_tables(&self, file: &Definitions) -> Result<Vec<String>, SqlProblem>;
    /// Opens a job's sources and sinks and restores its checkpoint.
    fn start(&self, request: StartRequest<'_>) -> Result<Running, JobFailure>;
}

/// Restarts after external failures: at most `max_restarts` in a row, pausing
/// `first_backoff`, doubling up to `max_backoff`. A run that lasted `healthy_after`
/// before failing starts the count again, so scattered hiccups over a long life never
/// add up to giving up.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            healthy_after: Duration::from_secs(600),
        }
    }
}

impl RestartPolicy {
    /// The restart count after a failure of a run that lasted `ran`, counted from
    /// `before` restarts in a row.
    pub fn count_after(&self, before: u32, ran: Duration) -> u32 {
        if ran >= self.healthy_after {
            1
        } else {
            before + 1
        }
    }

    pub fn backoff(&self) -> sluice_types::Backoff {
        sluice_types::Backoff::new(self.first_backoff, self.max_backoff)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Starting,
    Running,
    Restarting,
    Stopping,
    Stopped,
    Cancelling,
    Cancelled,
    Finished,
    Failed,
}

impl JobState {
    /// Whether a supervisor is running the job.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Starting
                | JobState::Running
                | JobState::Restarting
                | JobState::Stopping
                | JobState::Cancelling
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desired {
    Run,
    Stop,
    Cancel,
}

struct Job {
    id: String,
    name: String,
    sql: String,
    created_ms: i64,
    state: JobState,
    desired: Desired,
    started: Option<Instant>,
    restarts: u32,
    last_error: Option<String>,
    handle: Option<JobHandle>,
    /// The current or last run (set with `handle`, kept after the run ends): its metrics.
    last_metrics: Option<JobHandle>,
    /// Events per second over the last sampling interval.
    rate: f64,
    sample: Option<(Instant, u64)>,
    /// The rate once a second, oldest first, for the last [`RATE_HISTORY`] seconds.
    rates: VecDeque<f64>,
    /// Watchers of the rows its sinks receive, kept over restarts.
    live: Arc<LiveRows>,
}

/// Seconds of events-per-second history a job keeps (its sparkline).
pub const RATE_HISTORY: usize = 300;

impl Job {
    fn new(id: String, name: &str, sql: String, created_ms: i64, state: JobState) -> Self {
        Job {
            id,
            name: name.to_string(),
            sql,
            created_ms,
            state,
            desired: Desired::Run,
            started: None,
            restarts: 0,
            last_error: None,
            handle: None,
            last_metrics: None,
            rate: 0.0,
            sample: None,
            rates: VecDeque::new(),
            live: Arc::default(),
        }
    }
}

struct Inner {
    launcher: Box<dyn Launcher>,
    dir: PathBuf,
    policy: RestartPolicy,
    jobs: Mutex<BTreeMap<String, Job>>,
    /// The table catalog: files of definitions submitted jobs may use.
    tables: Mutex<Vec<Definitions>>,
    /// Set by [`Manager::shutdown`]: jobs ending now stay active in the catalog.
    closing: std::sync::atomic::AtomicBool,
}

/// Runs and keeps track of jobs. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

pub use sluice_types::now_ms;

fn job_id(name: &str, created_ms: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(created_ms.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// Names become directory names and URL path segments: keep them plain.
fn check_name(name: &str) -> Result<(), ServerError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ServerError::BadRequest(format!(
            "job name {name:?}: use 1 to 100 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl Manager {
    /// A manager keeping checkpoints and its catalog under `dir`. Jobs the catalog lists
    /// as active are started again, from their newest checkpoints.
    pub fn open(
        launcher: Box<dyn Launcher>,
        dir: impl Into<PathBuf>,
        policy: RestartPolicy,
    ) -> Result<Self, ServerError> {
        let dir = dir.into();
        let entries = catalog::load(&dir)?;
        let tables = catalog::load_tables(&dir)?;
        let m = Manager {
            inner: Arc::new(Inner {
                launcher,
                dir,
                policy,
                jobs: Mutex::new(BTreeMap::new()),
                tables: Mutex::new(tables),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        let mut resume = Vec::new();
        {
            let mut jobs = m.lock()?;
            for e in entries {
                let active = e.state.is_active();
                let state = if active { JobState::Starting } else { e.state };
                let mut job = Job::new(e.id, &e.name, e.sql, e.created_ms, state);
                job.last_error = e.last_error;
                jobs.insert(e.name.clone(), job);
                if active {
                    resume.push(e.name);
                }
            }
        }
        for name in resume {
            tracing::info!("resuming job {name} from its newest checkpoint");
            m.spawn(&name, Restore::Newest)?;
        }
        let sampler = m.clone();
        std::thread::Builder::new()
            .name("job rates".into())
            .spawn(move || sampler.sample_rates())
            .map_err(|e| ServerError::Internal(format!("cannot start a thread: {e}")))?;
        Ok(m)
    }

    pub fn checkpoint_dir(&self) -> &Path {
        &self.inner.dir
    }

    fn lock(&self) -> Result<MutexGuard<'_, BTreeMap<String, Job>>, ServerError> {
        self.inner
            .jobs
            .lock()
            .map_err(|_| ServerError::Internal("the job table is poisoned".into()))
    }

    fn save(&self, jobs: &BTreeMap<String, Job>) {
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let entries: Vec<CatalogEntry> = jobs
            .values()
            .map(|j| CatalogEntry {
                id: j.id.clone(),
                name: j.name.clone(),
                sql: j.sql.clone(),
                created_ms: j.created_ms,
                state: j.state,
                last_error: j.last_error.as_deref().map(redact_secrets),
            })
            .collect();
        if let Err(e) = catalog::save(&self.inner.dir, &entries) {
            tracing::error!("{e}");
        }
    }

    /// The job's key (its name) from a name or an id.
    fn key(jobs: &BTreeMap<String, Job>, name_or_id: &str) -> Result<String, ServerError> {
        if jobs.contains_key(name_or_id) {
            return Ok(name_or_id.to_string());
        }
        jobs.values()
            .find(|j| j.id == name_or_id)
            .map(|j| j.name.clone())
            .ok_or_else(|| ServerError::NotFound(format!("no job named {name_or_id}")))
    }

    /// Checks SQL; the plan as text.
    pub fn validate(&self, sql: &str) -> Result<String, ServerError> {
        let tables = self.tables()?;
        self.inner
            .launcher
            .validate(sql, &tables)
            .map(|plan| redact_secrets(&plan))
            .map_err(invalid_sql)
    }

    fn lock_tables(&self) -> Result<MutexGuard<'_, Vec<Definitions>>, ServerError> {
        self.inner
            .tables
            .lock()
            .map_err(|_| ServerError::Internal("the table catalog's lock is poisoned".into()))
    }

    /// The table catalog's files.
    pub fn tables(&self) -> Result<Vec<Definitions>, ServerError> {
        self.lock_tables().map(|t| t.clone())
    }

    /// Adds (or replaces) a file of definitions, checked first; returns the names it
    /// declares.
    pub fn add_tables(&self, file: Definitions) -> Result<Vec<String>, ServerError> {
        check_name(&file.name)?;
        let names = self
            .inner
            .launcher
            .check_tables(&file)
            .map_err(invalid_sql)?;
        let mut tables = self.lock_tables()?;
        tables.retain(|t| t.name != file.name);
        tables.push(file);
        catalog::save_tables(&self.inner.dir, &tables)?;
        Ok(names)
    }

    /// Removes a file of definitions (jobs already running keep what they planned with).
    pub fn drop_tables(&self, name: &str) -> Result<(), ServerError> {
        let mut tables = self.lock_tables()?;
        let before = tables.len();
        tables.retain(|t| t.name != name);
        if tables.len() == before {
            return Err(ServerError::NotFound(format!(
                "the table catalog has no file named {name}"
            )));
        }
        catalog::save_tables(&self.inner.dir, &tables)
    }

    /// Adds a job and starts it.
    pub fn submit(&self, name: &str, sql: &str, restore: Restore) -> Result<JobInfo, ServerError> {
        check_name(name)?;
        self.validate(sql)?;
        {
            let mut jobs = self.lock()?;
            if jobs.contains_key(name) {
                return Err(ServerError::Conflict(format!(
                    "a job named {name} exists; stop and delete it first, or choose another name"
                )));
            }
            let created_ms = now_ms();
            let job = Job::new(
                job_id(name, created_ms),
                name,
                sql.to_string(),
                created_ms,
                JobState::Starting,
            );
            jobs.insert(name.to_string(), job);
            self.save(&jobs);
        }
        self.spawn(name, restore)?;
        self.get(name, false)
    }

    pub fn list(&self) -> Result<Vec<JobInfo>, ServerError> {
        let jobs = self.lock()?;
        Ok(jobs.values().map(|j| info(j, false)).collect())
    }

    pub fn get(&self, name_or_id: &str, detail: bool) -> Result<JobInfo, ServerError> {
        let jobs = self.lock()?;
        let key = Self::key(&jobs, name_or_id)?;
        jobs.get(&key)
            .map(|j| info(j, detail))
            .ok_or_else(|| ServerError::NotFound(format!("no job named {name_or_id}")))
    }

    /// Stops a job after a final checkpoint.
    pub fn stop(&self, name_or_id: &str) -> Result<JobInfo, ServerError> {
        self.end(name_or_id, Desired::Stop)
    }

    /// Ends a job at once, without a final checkpoint.
    pub fn cancel(&self, name_or_id: &str) -> Result<JobInfo, ServerError> {
        self.end(name_or_id, Desired::Cancel)
    }

    fn end(&self, name_or_id: &str, how: Desired) -> Result<JobInfo, ServerError> {
        let key = {
            let mut jobs = self.lock()?;
            let key = Self::key(&jobs, name_or_id)?;
            let Some(j) = jobs.get_mut(&key) else {
                return Err(ServerError::NotFound(format!("no job named {name_or_id}")));
            };
            let verb = if how == Desired::Stop {
                "stop"
            } else {
                "cancel"
            };
            if !j.state.is_active() {
                return Err(ServerError::Conflict(format!(
                    "job {key} is {}; there is nothing to {verb}",
                    state_word(j.state)
                )));
            }
            if j.desired == Desired::Cancel || (j.desired == Desired::Stop && how == Desired::Stop)
            {
                return Err(ServerError::Conflict(format!(
                    "job {key} is already {}",
                    state_word(j.state)
                )));
            }
            j.desired = how;
            match (&j.handle, how) {
                (Some(h), Desired::Stop) => {
                    h.stop();
                    j.state = JobState::Stopping;
                }
                (Some(h), _) => {
                    h.abort();
                    j.state = JobState::Cancelling;
                }
                // Between restarts: the supervisor ends it when it wakes.
                (None, Desired::Stop) => j.state = JobState::Stopping,
                (None, _) => j.state = JobState::Cancelling,
            }
            self.save(&jobs);
            key
        };
        self.get(&key, false)
    }

    /// Starts a stopped, finished, failed or cancelled job again.
    pub fn resume(&self, name_or_id: &str, restore: Restore) -> Result<JobInfo, ServerError> {
        let key = {
            let mut jobs = self.lock()?;
            let key = Self::key(&jobs, name_or_id)?;
            let Some(j) = jobs.get_mut(&key) else {
                return Err(ServerError::NotFound(format!("no job named {name_or_id}")));
            };
            if j.state.is_active() {
                return Err(ServerError::Conflict(format!(
                    "job {key} is {}; stop it before resuming it",
                    state_word(j.state)
                )));
            }
            j.state = JobState::Starting;
            j.desired = Desired::Run;
            j.restarts = 0;
            j.last_error = None;
            self.save(&jobs);
            key
        };
        self.spawn(&key, restore)?;
        self.get(&key, false)
    }

    /// Removes a job that is not running (its checkpoints stay on disk).
    pub fn delete(&self, name_or_id: &str) -> Result<(), ServerError> {
        let mut jobs = self.lock()?;
        let key = Self::key(&jobs, name_or_id)?;
        if let Some(j) = jobs.get(&key)
            && j.state.is_active()
        {
            return Err(ServerError::Conflict(format!(
                "job {key} is {}; stop or cancel it before deleting it",
                state_word(j.state)
            )));
        }
        jobs.remove(&key);
        self.save(&jobs);
        Ok(())
    }

    /// Stops every running job with a final checkpoint and waits for them, keeping
    /// them marked active so that the next server start resumes them.
    pub fn shutdown(&self, wait: Duration) {
        let handles: Vec<JobHandle> = match self.lock() {
            Ok(jobs) => jobs.values().filter_map(|j| j.handle.clone()).collect(),
            Err(_) => return,
        };
        if let Ok(mut jobs) = self.lock() {
            for j in jobs.values_mut() {
                if j.state.is_active() {
                    j.desired = Desired::Stop;
                }
            }
            // Saved as they are: active jobs come back on the next start. Nothing is
            // saved after this, so their ending does not mark them stopped.
            self.save(&jobs);
            self.inner
                .closing
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        for h in &handles {
            h.stop();
        }
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            let busy = self
                .lock()
                .map(|jobs| jobs.values().any(|j| j.handle.is_some()))
                .unwrap_or(false);
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn invalid_sql(p: SqlProblem) -> ServerError {
    ServerError::InvalidSql {
        message: p.message,
        line: p.line,
        column: p.column,
    }
}

fn state_word(s: JobState) -> &'static str {
    match s {
        JobState::Starting => "starting",
        JobState::Running => "running",
        JobState::Restarting => "restarting",
        JobState::Stopping => "stopping",
        JobState::Stopped => "stopped",
        JobState::Cancelling => "cancelling",
        JobState::Cancelled => "cancelled",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
    }
}
