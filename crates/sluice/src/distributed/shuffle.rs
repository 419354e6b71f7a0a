//! A distributed job whose keyed stages do not follow its topic's partitioning: a writer
//! task per source partition shuffles the decoded rows by a column every keyed stage
//! keeps into the topic `sluice.<job>.<table>`, and a task per shuffle partition runs the
//! whole job over that partition (`sluice_connectors::shuffle`). The layout (column,
//! partition counts, key hash version) is settled when the job first runs and kept in
//! the shared store, so later workers shuffle alike.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sluice_connectors::shuffle::source::ShuffleRead;
use sluice_connectors::shuffle::topic_name;
use sluice_connectors::shuffle::writer::{Saved, ShuffleWriter, WriterSpec};
use sluice_runtime::{JobHandle, JobOutcome, RuntimeError};
use sluice_sql::JobGraph;
use sluice_state::CheckpointStore;
use sluice_types::Position;
use sluice_types::key_hash::KEY_HASH_VERSION;

use crate::checkpoints::CheckpointOptions;

/// How often a writer saves where it is (after its records are delivered).
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// The file of a writer's saved point, in its store.
const SAVED: &str = "position";
/// The file of the job's shuffle layout, in `<job>.shuffle`.
const LAYOUT: &str = "layout";

/// How a job's rows are shuffled, as settled when it first ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shuffle {
    /// The source table.
    pub table: String,
    /// The column rows go by.
    pub column: String,
    /// The source topic's partitions: one writer each.
    pub upstream: i32,
    /// The shuffle topic's partitions: one keyed task each.
    pub partitions: i32,
    pub topic: String,
    pub key_hash_version: u32,
}

/// A column of the job's one source that every keyed stage keeps in its key, if there is
/// one (the first in the table's order).
pub fn shuffle_column(graph: &JobGraph) -> Result<String> {
    let [source] = graph.sources.as_slice() else {
        bail!(
            "a job over several topics whose keyed stages do not all follow the topics' 'key.fields' cannot be distributed yet (the shuffle takes one topic)"
        );
    };
    let mut why = None;
    for field in source.schema.fields() {
        match sluice_runtime::check_partition_local(
            &graph.nodes,
            &graph.edges,
            &[Some(field.name().clone())],
        ) {
            Ok(()) => return Ok(field.name().clone()),
            Err(e) => why = why.or(Some(e)),
        }
    }
    Err(anyhow!(
        "no column of table {} is kept by every keyed stage, so its rows cannot be shuffled to workers by key: {}",
        source.def.name,
        why.map_or_else(String::new, |e| e.to_string())
    ))
}

/// The job's shuffle: as saved in the store, or settled now (`upstream` source
/// partitions, `SET shuffle.partitions` or as many shuffle partitions) and saved; its
/// topic is created where absent.
pub fn settle(graph: &JobGraph, checkpoints: &CheckpointOptions, upstream: i32) -> Result<Shuffle> {
    let column = shuffle_column(graph)?;
    let source = &graph.sources[0];
    let partitions = match graph.setting("shuffle.partitions") {
        Some(n) => n.parse::<i32>()?,
        None => upstream,
    };
    // A job started afresh (its checkpoints removed) gets a new topic: the old one
    // holds rows its new tasks have not taken.
    let wanted = Shuffle {
        table: source.def.name.clone(),
        column,
        upstream,
        partitions,
        topic: format!(
            "{}.{}",
            topic_name(&checkpoints.job, &source.def.name),
            sluice_types::now_ms()
        ),
        key_hash_version: KEY_HASH_VERSION,
    };
    let store = CheckpointStore::open(
        &checkpoints.dir.to_string_lossy(),
        &format!("{}.shuffle", checkpoints.job),
    )?;
    // The first worker of the job settles it; the others read what it wrote.
    store.put_file_new(LAYOUT, &serde_json::to_vec(&wanted)?)?;
    let saved = store
        .files()?
        .into_iter()
        .find(|(name, _)| name == LAYOUT)
        .map(|(_, bytes)| serde_json::from_slice::<Shuffle>(&bytes))
        .transpose()?;
    let shuffle = match saved {
        Some(s) => {
            // The shuffle partition count stays what it was (keyed state is split by
            // it), and so does the topic.
            let kept = Shuffle {
                partitions: s.partitions,
                topic: s.topic.clone(),
                ..wanted.clone()
            };
            if kept != s {
                bail!(
                    "job {} first ran shuffled as {}; now it would be {} (a job's shuffle is fixed when it first runs: remove its checkpoints to start again)",
                    checkpoints.job,
                    serde_json::to_string(&s)?,
                    serde_json::to_string(&wanted)?
                );
            }
            s
        }
        None => bail!(
            "the job's shuffle layout in {} cannot be read back",
            store.location()
        ),
    };
    let has = crate::generate::ensure_topic_with(
        &source.def.options,
        &shuffle.topic,
        shuffle.partitions,
    )?;
    if has != shuffle.partitions as usize {
        bail!(
            "the shuffle topic {} has {has} partitions, the job's shuffle {}",
            shuffle.topic,
            shuffle.partitions
        );
    }
    Ok(shuffle)
}

impl Shuffle {
    /// What keyed task `m` reads.
    pub fn read(&self, m: i32) -> ShuffleRead {
        ShuffleRead {
            topic: self.topic.clone(),
            partition: m,
            upstream: self.upstream as usize,
        }
    }
}

/// Where the writer of a store was; `None` before its first save.
fn saved(store: &CheckpointStore) -> Result<Option<Saved>> {
    store
        .files()?
        .into_iter()
        .find(|(name, _)| name == SAVED)
        .map(|(_, bytes)| Ok(serde_json::from_slice(&bytes)?))
        .transpose()
}

/// Whether the writer of a store has written its source's end.
pub fn writer_finished(store: &CheckpointStore) -> Result<bool> {
    Ok(saved(store)?.is_some_and(|s| s.finished))
}

/// Runs the writer of source partition `p` until its bounded source ends, or the handle
/// stops it (it saves where it is first) or aborts it.
pub fn run_writer(
    graph: &JobGraph,
    shuffle: &Shuffle,
    p: i32,
    store: &CheckpointStore,
    handle: &JobHandle,
) -> Result<JobOutcome, RuntimeError> {
    let failed = |e: anyhow::Error| RuntimeError::External(format!("{e:#}"));
    let source = &graph.sources[0];
    let mut options = source.def.options.clone();
    options.insert("partitions", p.to_string(), Position::default());
    let key = source
        .schema
        .index_of(&shuffle.column)
        .map_err(|e| RuntimeError::Internal(e.to_string()))?;
    let spec = WriterSpec {
        table: source.def.name.clone(),
        options,
        schema: source.schema.clone(),
        key,
        event_time: source.event_time.map(|e| e.column),
        idle_timeout: crate::engine::idle_timeout(source).map_err(failed)?,
        topic: shuffle.topic.clone(),
        partitions: shuffle.partitions as usize,
    };
    let mut writer = ShuffleWriter::open(spec, handle.metrics.clone(), &handle.interrupt())?;
    let from = saved(store).map_err(failed)?.unwrap_or_default();
    if from.finished {
        return Ok(JobOutcome::Ran);
    }
    writer.resume(&from)?;
    let save = |writer: &mut ShuffleWriter| -> Result<(), RuntimeError> {
        let point = writer.save_point()?;
        let bytes =
            serde_json::to_vec(&point).map_err(|e| RuntimeError::Internal(e.to_string()))?;
        store
            .put_file(SAVED, &bytes)
            .map_err(|e| RuntimeError::External(e.to_string()))
    };
    let mut last_save = Instant::now();
    loop {
        if handle.is_aborted() {
            return Ok(JobOutcome::Ran);
        }
        if handle.is_stopping() {
            save(&mut writer)?;
            return Ok(JobOutcome::Ran);
        }
        let ended = writer.step()?;
        if ended || last_save.elapsed() >= SAVE_EVERY {
            save(&mut writer)?;
            last_save = Instant::now();
        }
        if ended {
            return Ok(JobOutcome::Ran);
        }
    }
}
