//! `sluice run --distributed`: one worker of a job spread over several processes. For
//! each partition of the job's topics there is a task, `<job>.p<N>`: the whole job over
//! partition N of every source, with its own checkpoints in the shared store and its own
//! sink progress rows. Workers find each other by beats in the shared store
//! (`<dir>/<job>.workers/`, see `distributed/membership.rs`) and share the tasks out;
//! taking a task over claims a new generation, so its epochs start above anything an
//! older owner can still write and its sinks refuse that owner's commits (a paused
//! "zombie"). A job whose keyed stages follow the topics' keys (`'key.fields'`) runs so;
//! one keyed otherwise is shuffled first (`distributed/shuffle.rs`): its tasks are then
//! a writer per source partition, `<job>.r<N>`, and the whole job per shuffle partition,
//! `<job>.p<M>`.

mod membership;
mod shuffle;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_runtime::{JobHandle, JobOutcome, RuntimeError};
use sluice_sql::JobGraph;
use sluice_state::CheckpointStore;
use sluice_types::Position;

use crate::checkpoints::{CheckpointOptions, Restore};
use crate::engine::{JobRun, RunOptions};
use membership::{Beat, Liveness};
use shuffle::Shuffle;

/// A worker whose beat has not changed for this long is taken for dead.
const TIMEOUT: Duration = Duration::from_secs(6);
/// How often a worker beats and looks at the others.
const BEAT: Duration = Duration::from_millis(500);
/// How long a released task gets for its final checkpoint before it is aborted.
const HANDOVER_WAIT: Duration = Duration::from_secs(20);

/// How a job is split into tasks.
#[derive(Debug, Clone)]
enum Split {
    /// Task N is the whole job over partition N of every topic.
    ByPartition { partitions: i32 },
    /// The first tasks write the source partitions into the shuffle (one per partition
    /// of each table); the rest run the job over a shuffle partition each.
    Shuffled(Shuffle),
}

/// What task `i` of a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Writes partition N of source table T into the shuffle.
    Writer { table: usize, partition: i32 },
    /// The whole job over partition N (of the topics, or of the shuffle).
    Job(i32),
}

impl Split {
    fn tasks(&self) -> i32 {
        match self {
            Split::ByPartition { partitions } => *partitions,
            Split::Shuffled(s) => s.writers() + s.partitions,
        }
    }

    fn kind(&self, i: i32) -> Kind {
        match self {
            Split::Shuffled(s) if i < s.writers() => {
                let (table, partition) = s.writer(i);
                Kind::Writer { table, partition }
            }
            Split::Shuffled(s) => Kind::Job(i - s.writers()),
            Split::ByPartition { .. } => Kind::Job(i),
        }
    }

    /// Task `i`'s name: its checkpoints and progress rows go by it (`<job>.p<N>`; a
    /// writer `<job>.r<N>`, or `<job>.<table>.r<N>` when several tables are shuffled).
    fn task_name(&self, job: &str, i: i32) -> String {
        match (self.kind(i), self) {
            (Kind::Job(n), _) => format!("{job}.p{n}"),
            (Kind::Writer { table, partition }, Split::Shuffled(s)) if s.tables.len() > 1 => {
                format!("{job}.{}.r{partition}", s.tables[table].table)
            }
            (Kind::Writer { partition, .. }, _) => format!("{job}.r{partition}"),
        }
    }
}

/// Checks that the job can run as tasks, and how; the topics' shared partition count and
/// the first topic's name.
fn layout(graph: &JobGraph, checkpoints: &CheckpointOptions) -> Result<(Split, String)> {
    let mut keys = Vec::new();
    for s in &graph.sources {
        let connector = s.def.options.connector().unwrap_or_default();
        if connector != "kafka" {
            bail!(
                "a distributed job reads Kafka topics only: table {} is a {connector} table",
                s.def.name
            );
        }
        keys.push(
            s.def
                .options
                .get("key.fields")
                .map(|k| k.trim().to_string()),
        );
    }
    if graph.sources.is_empty() {
        bail!("a distributed job needs a Kafka source");
    }
    // Every task would write the same file, each with its own commits.
    if let Some(s) = graph
        .sinks
        .iter()
        .find(|s| s.def.options.connector() == Some("file"))
    {
        bail!(
            "a distributed job writes to PostgreSQL or Kafka: table {} is a file, which every task would write",
            s.def.name
        );
    }
    let local = sluice_runtime::check_partition_local(&graph.nodes, &graph.edges, &keys);
    if let Err(e) = &local {
        shuffle::shuffle_columns(graph)
            .map_err(|why| anyhow!("this job cannot be spread over workers: {e}; and {why:#}"))?;
    }
    let mut counts = Vec::new();
    for s in &graph.sources {
        let topic = s.def.options.get("topic").unwrap_or_default().to_string();
        let consumer: BaseConsumer = sluice_connectors::kafka::client_config(&s.def.options)
            .create()
            .context("creating a Kafka client")?;
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(30))
            .with_context(|| format!("reading the metadata of topic {topic}"))?;
        let n = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        if n == 0 {
            bail!("topic {topic} (table {}) does not exist", s.def.name);
        }
        counts.push((s.def.name.clone(), topic, n));
    }
    let partitions = counts[0].2;
    let split = match local {
        Err(_) => {
            let upstream: Vec<i32> = counts.iter().map(|c| c.2).collect();
            Split::Shuffled(shuffle::settle(graph, checkpoints, &upstream)?)
        }
        Ok(()) => {
            if let Some((table, topic, n)) = counts.iter().find(|c| c.2 != partitions) {
                bail!(
                    "the job's topics must have as many partitions each (task N reads partition N of every one): {topic} (table {table}) has {n}, {} has {partitions}",
                    counts[0].1
                );
            }
            Split::ByPartition { partitions }
        }
    };
    Ok((split, counts[0].1.clone()))
}

/// One task running on this worker.
struct Running {
    handle: JobHandle,
    /// The generation this worker claimed the task with.
    generation: u64,
    thread: JoinHandle<Result<JobOutcome, RuntimeError>>,
    /// When it was asked to stop (it still holds the task until it ends).
    released: Option<Instant>,
}

/// The tasks this worker runs and what it needs to start more.
struct Tasks {
    graph: JobGraph,
    split: Split,
    /// The server's handle of the job (`sluice serve --distributed`): tasks count into
    /// its metrics and hand their rows to its watchers.
    parent: Option<JobHandle>,
    options: RunOptions,
    checkpoints: CheckpointOptions,
    running: BTreeMap<i32, Running>,
    /// Tasks that ended with their sources (bounded), as far as this worker knows.
    finished: BTreeSet<i32>,
    /// Tasks just lost to a newer generation, not started again before the time given.
    lost: BTreeMap<i32, Instant>,
}

impl Tasks {
    fn name(&self, p: i32) -> String {
        self.split.task_name(&self.checkpoints.job, p)
    }

    fn store(&self, p: i32) -> Result<CheckpointStore> {
        task_store(&self.checkpoints, &self.split, p)
    }

    fn start(&mut self, p: i32) -> Result<()> {
        self.start_above(p, 0)
    }

    /// Starts task `p` with a generation above `floor`.
    fn start_above(&mut self, p: i32, floor: u64) -> Result<()> {
        let name = self.name(p);
        let store = self.store(p)?;
        let (m, shuffle) = match (self.split.kind(p), &self.split) {
            (Kind::Writer { table, partition }, Split::Shuffled(s)) => {
                return self.start_writer(p, (table, partition), s.clone(), store);
            }
            (Kind::Writer { .. }, Split::ByPartition { .. }) => bail!("task {name}: no shuffle"),
            (Kind::Job(m), Split::Shuffled(s)) => (m, s.reads(m)),
            (Kind::Job(m), Split::ByPartition { .. }) => (m, BTreeMap::new()),
        };
        let mut cp = self.checkpoints.clone();
        cp.job = name.clone();
        cp.restore = Restore::Newest;
        if store.finished()? {
            self.finished.insert(p);
            return Ok(());
        }
        cp.generation = store.claim_generation_above(floor)?;
        let mut graph = self.graph.clone();
        if shuffle.is_empty() {
            for s in &mut graph.sources {
                s.def
                    .options
                    .insert("partitions", m.to_string(), Position::default());
            }
        }
        let options = RunOptions {
            name: name.clone(),
            checkpoints: Some(cp.clone()),
            shuffle,
            ..self.options.clone()
        };
        let run = JobRun::build_with(&graph, &options, self.task_handle(), &|_| None)
            .with_context(|| format!("starting task {name}"))?;
        let handle = run.handle.clone();
        eprintln!("task {name}: started (generation {})", cp.generation);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run.run_typed())?;
        self.keep(p, handle, cp.generation, thread);
        Ok(())
    }

    /// Starts task `p`, the writer of a source table's partition into the shuffle.
    fn start_writer(
        &mut self,
        p: i32,
        n: (usize, i32),
        shuffle: Shuffle,
        store: CheckpointStore,
    ) -> Result<()> {
        if shuffle::writer_finished(&store)? {
            self.finished.insert(p);
            return Ok(());
        }
        let name = self.name(p);
        let handle = self.task_handle();
        let graph = self.graph.clone();
        let h = handle.clone();
        eprintln!("task {name}: started (shuffle writer)");
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || shuffle::run_writer(&graph, &shuffle, n, &store, &h))?;
        self.keep(p, handle, 0, thread);
        Ok(())
    }

    /// A new task's handle: its own stop, the server's metrics and watchers if any.
    fn task_handle(&self) -> JobHandle {
        match &self.parent {
            Some(p) => {
                let mut h = JobHandle::with_live(p.live.clone());
                h.metrics = p.metrics.clone();
                h
            }
            None => JobHandle::new(),
        }
    }

    fn keep(
        &mut self,
        p: i32,
        handle: JobHandle,
        generation: u64,
        thread: JoinHandle<Result<JobOutcome, RuntimeError>>,
    ) {
        self.running.insert(
            p,
            Running {
                handle,
                generation,
                thread,
                released: None,
            },
        );
    }

    /// Asks a task to end after a final checkpoint; it is aborted if that takes too long.
    fn release(&mut self, p: i32) {
        if let Some(t) = self.running.get_mut(&p)
            && t.released.is_none()
        {
            t.handle.stop();
            t.released = Some(Instant::now());
        }
    }

    /// Collects tasks that have ended; an error other than losing the task is returned.
    fn reap(&mut self) -> Result<()> {
        let now = Instant::now();
        let mut done = Vec::new();
        for (p, t) in &self.running {
            if t.thread.is_finished() {
                done.push(*p);
            } else if t.released.is_some_and(|at| now - at > HANDOVER_WAIT) {
                t.handle.abort();
            }
        }
        for p in done {
            let Some(t) = self.running.remove(&p) else {
                continue;
            };
            let name = self.name(p);
            match t.thread.join() {
                Ok(Ok(_)) if t.released.is_some() => eprintln!("task {name}: handed over"),
                Ok(Ok(_)) => {
                    eprintln!("task {name}: finished");
                    self.finished.insert(p);
                }
                // The database holds a generation the store never gave out: the store
                // was made afresh. The task is taken again above it.
                Ok(Err(RuntimeError::Fenced { held, message }))
                    if t.released.is_none() && self.claimed(p).is_some_and(|g| g < held) =>
                {
                    eprintln!(
                        "task {name}: {message}; the store has no such generation, so it is taken again above it"
                    );
                    self.start_above(p, held)?;
                }
                Ok(Err(RuntimeError::Fenced { message, .. })) => {
                    eprintln!("task {name}: lost to another worker: {message}");
                    self.lost.insert(p, now + 2 * TIMEOUT);
                }
                Ok(Err(e)) if t.released.is_some() => {
                    eprintln!("task {name}: handed over after an error: {e}")
                }
                // Failing after another worker took the task over (a connection the
                // database closed while this one was paused, say) is losing it.
                Ok(Err(e)) if self.claimed(p).is_some_and(|g| g > t.generation) => {
                    eprintln!("task {name}: lost to another worker: {e}");
                    self.lost.insert(p, now + 2 * TIMEOUT);
                }
                Ok(Err(e)) => bail!("task {name} failed: {e}"),
                Err(_) => bail!("task {name} panicked"),
            }
        }
        self.lost.retain(|_, until| *until > now);
        Ok(())
    }

    /// The newest generation claimed for task `p` in the store (`None`: unreadable).
    fn claimed(&self, p: i32) -> Option<u64> {
        self.store(p).and_then(|s| Ok(s.generation()?)).ok()
    }

    /// Releases every task and waits for them to end.
    fn release_all(&mut self) {
        let held: Vec<i32> = self.running.keys().copied().collect();
        for p in held {
            self.release(p);
        }
        while !self.running.is_empty() {
            if let Err(e) = self.reap() {
                eprintln!("{e}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Task `p`'s checkpoints (and generations) in the shared store.
fn task_store(checkpoints: &CheckpointOptions, split: &Split, p: i32) -> Result<CheckpointStore> {
    Ok(CheckpointStore::open(
        &checkpoints.dir.to_string_lossy(),
        &split.task_name(&checkpoints.job, p),
    )?)
}

/// Whether every task of the job has finished (each job's newest checkpoint says so,
/// each writer's saved point).
fn all_finished(checkpoints: &CheckpointOptions, split: &Split) -> Result<bool> {
    for p in 0..split.tasks() {
        let store = task_store(checkpoints, split, p)?;
        let done = match split.kind(p) {
            Kind::Writer { .. } => shuffle::writer_finished(&store)?,
            Kind::Job(_) => store.finished()?,
        };
        if !done {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A name no other worker has: the host, the process and a few random bits.
fn worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{nanos:08x}", std::process::id())
}

/// Runs this worker until its job ends, or Ctrl-C (its tasks take a final checkpoint; a
/// second Ctrl-C quits at once).
pub fn run_worker_until_interrupted(graph: &JobGraph, options: &RunOptions) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let raised = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if raised.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping (Ctrl-C): each task takes a final checkpoint");
    });
    run_worker(graph, options, stop)
}

/// Runs this worker until the job's bounded sources are all read by whichever workers
/// (then returns), or until `stop` is raised (its tasks take a final checkpoint).
pub fn run_worker(graph: &JobGraph, options: &RunOptions, stop: Arc<AtomicBool>) -> Result<()> {
    worker(graph, options, &|| stop.load(Ordering::SeqCst), None)
}

/// A worker run by `sluice serve --distributed` under the server's handle of the job:
/// a stop hands this worker's tasks over to the job's other workers (each after a final
/// checkpoint), a cancel aborts them; they count into the handle's metrics.
pub fn run_worker_under(graph: &JobGraph, options: &RunOptions, handle: &JobHandle) -> Result<()> {
    worker(graph, options, &|| handle.is_stopping(), Some(handle))
}

fn worker(
    graph: &JobGraph,
    options: &RunOptions,
    stop: &dyn Fn() -> bool,
    parent: Option<&JobHandle>,
) -> Result<()> {
    let checkpoints = options
        .checkpoints
        .clone()
        .ok_or_else(|| anyhow!("a distributed job needs a checkpoint directory"))?;
    let (split, topic) = layout(graph, &checkpoints)?;
    let bounded = graph
        .sources
        .iter()
        .all(|s| s.def.options.get("scan.bounded.mode") == Some("latest-offset"));
    if bounded && all_finished(&checkpoints, &split)? {
        eprintln!(
            "job {}: all {} tasks have finished; nothing to do",
            checkpoints.job,
            split.tasks()
        );
        return Ok(());
    }
    let board = CheckpointStore::open(
        &checkpoints.dir.to_string_lossy(),
        &format!("{}.workers", checkpoints.job),
    )?;
    let me = worker_id();
    let mut tasks = Tasks {
        graph: graph.clone(),
        split: split.clone(),
        parent: parent.cloned(),
        options: options.clone(),
        checkpoints: checkpoints.clone(),
        running: BTreeMap::new(),
        finished: BTreeSet::new(),
        lost: BTreeMap::new(),
    };
    let what = match &split {
        Split::ByPartition { partitions } => format!("the {partitions} partitions of {topic}"),
        Split::Shuffled(s) => s.describe(),
    };
    eprintln!(
        "job {}: worker {me} joined, for {what} (workers at {})",
        checkpoints.job,
        board.location()
    );
    let result = work(&me, &board, &mut tasks, bounded, stop);
    if parent.is_some_and(JobHandle::is_aborted) {
        for t in tasks.running.values() {
            t.handle.abort();
        }
    }
    tasks.release_all();
    if let Err(e) = board.delete_file(&me) {
        tracing::warn!("worker {me}: {e}");
    }
    result
}

/// The worker's loop: beat, look at the others, reap, release, start.
fn work(
    me: &str,
    board: &CheckpointStore,
    tasks: &mut Tasks,
    bounded: bool,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let mut liveness = Liveness::new(TIMEOUT);
    let mut beat = 0u64;
    let mut checked = Instant::now();
    let joined = Instant::now();
    while !stop() {
        // A store that is away for a moment is waited for; the others then see this
        // worker as dead and take its tasks, whose commits its generation then refuses.
        let beats = match board.files() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("worker {me}: the shared store: {e}");
                std::thread::sleep(BEAT);
                continue;
            }
        };
        let now = Instant::now();
        let live = liveness.observe(
            beats
                .into_iter()
                .filter_map(|(id, b)| Some((id, Beat::parse(&b)?)))
                .collect(),
            now,
        );
        for gone in liveness.gone(now, 10 * TIMEOUT) {
            let _ = board.delete_file(&gone);
        }
        tasks.reap()?;
        let mut skip = tasks.finished.clone();
        skip.extend(tasks.lost.keys());
        let held: BTreeSet<i32> = tasks.running.keys().copied().collect();
        let next = membership::plan(me, tasks.split.tasks(), &live, &held, &skip);
        for p in next.release {
            tasks.release(p);
        }
        // A worker that has just joined beats a while before it takes tasks, so that
        // workers starting together see each other first.
        if joined.elapsed() >= 2 * BEAT {
            for p in next.start {
                tasks.start(p)?;
            }
        }
        // The beat tells the others what this worker holds now, tasks just started too.
        beat += 1;
        let mine = Beat {
            beat,
            held: tasks.running.keys().copied().collect(),
        };
        if let Err(e) = board.put_file(me, &mine.to_bytes()) {
            tracing::warn!("worker {me}: the shared store: {e}");
        }
        if bounded && tasks.running.is_empty() && checked.elapsed() > Duration::from_secs(1) {
            checked = Instant::now();
            if all_finished(&tasks.checkpoints, &tasks.split)? {
                eprintln!(
                    "job {}: all {} tasks have finished",
                    tasks.checkpoints.job,
                    tasks.split.tasks()
                );
                return Ok(());
            }
        }
        std::thread::sleep(BEAT);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
