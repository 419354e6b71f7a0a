//! A distributed job whose keyed stages do not follow its topics' partitioning: a writer
//! task per source partition shuffles the decoded rows by a column every keyed stage
//! keeps into the topic `sluice.<job>.<table>.<created>`, and a task per shuffle
//! partition runs the whole job over that partition of every table's shuffle topic
//! (`sluice_connectors::shuffle`). The layout (columns, partition counts, key hash
//! version, topics) is settled when the job first runs and kept in the shared store, so
//! later workers shuffle alike.

use std::collections::BTreeMap;
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
    /// Per source table, in the job's order.
    pub tables: Vec<ShuffledTable>,
    /// The shuffle topics' partitions: one keyed task each.
    pub partitions: i32,
    pub key_hash_version: u32,
}

/// How one source table's rows are shuffled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffledTable {
    pub table: String,
    /// The column rows go by.
    pub column: String,
    /// The source topic's partitions: one writer each.
    pub upstream: i32,
    pub topic: String,
}

/// The most source tables whose shuffle columns are searched together.
const MAX_SHUFFLED_TABLES: usize = 3;

/// Per source table a column that every keyed stage keeps in its key (for stages over
/// several tables, at the same place), if there are such: the first in the tables'
/// order.
pub fn shuffle_columns(graph: &JobGraph) -> Result<Vec<String>> {
    if graph.sources.len() > MAX_SHUFFLED_TABLES {
        bail!(
            "a job over more than {MAX_SHUFFLED_TABLES} topics whose keyed stages do not all follow the topics' 'key.fields' cannot be shuffled"
        );
    }
    let names: Vec<Vec<String>> = graph
        .sources
        .iter()
        .map(|s| s.schema.fields().iter().map(|f| f.name().clone()).collect())
        .collect();
    let mut pick = vec![0usize; names.len()];
    let mut why = None;
    loop {
        let keys: Vec<Option<String>> = pick
            .iter()
            .zip(&names)
            .map(|(i, n)| Some(n[*i].clone()))
            .collect();
        match sluice_runtime::check_partition_local(&graph.nodes, &graph.edges, &keys) {
            Ok(()) => return Ok(keys.into_iter().flatten().collect()),
            Err(e) => why = why.or(Some(e)),
        }
        // The next combination, the last table's column moving fastest.
        let mut t = names.len();
        loop {
            if t == 0 {
                let tables: Vec<&str> = graph.sources.iter().map(|s| s.def.name.as_str()).collect();
                return Err(anyhow!(
                    "no column of table {} is kept by every keyed stage, so its rows cannot be shuffled to workers by key: {}",
                    tables.join(", "),
                    why.map_or_else(String::new, |e| e.to_string())
                ));
            }
            t -= 1;
            pick[t] += 1;
            if pick[t] < names[t].len() {
                break;
            }
            pick[t] = 0;
        }
    }
}

/// The job's shuffle: as saved in the store, or settled now (each table's topic's
/// partitions as `upstream`, `SET shuffle.partitions` or the first topic's as many
/// shuffle partitions) and saved; its topics are created where absent.
pub fn settle(
    graph: &JobGraph,
    checkpoints: &CheckpointOptions,
    upstream: &[i32],
) -> Result<Shuffle> {
    let columns = shuffle_columns(graph)?;
    let partitions = match graph.setting("shuffle.partitions") {
        Some(n) => n.parse::<i32>()?,
        None => upstream.first().copied().unwrap_or(1),
    };
    // A job started afresh (its checkpoints removed) gets new topics: the old ones
    // hold rows its new tasks have not taken.
    let created = sluice_types::now_ms();
    let wanted = Shuffle {
        tables: graph
            .sources
            .iter()
            .zip(columns)
            .zip(upstream)
            .map(|((s, column), upstream)| ShuffledTable {
                table: s.def.name.clone(),
                column,
                upstream: *upstream,
                topic: format!("{}.{created}", topic_name(&checkpoints.job, &s.def.name)),
            })
            .collect(),
        partitions,
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
    let Some(shuffle) = saved else {
        bail!(
            "the job's shuffle layout in {} cannot be read back",
            store.location()
        );
    };
    // The shuffle partition count stays what it was (keyed state is split by it), and
    // so do the topics.
    let mut kept = wanted.clone();
    kept.partitions = shuffle.partitions;
    for (k, s) in kept.tables.iter_mut().zip(&shuffle.tables) {
        k.topic = s.topic.clone();
    }
    if kept != shuffle {
        bail!(
            "job {} first ran shuffled as {}; now it would be {} (a job's shuffle is fixed when it first runs: remove its checkpoints to start again)",
            checkpoints.job,
            serde_json::to_string(&shuffle)?,
            serde_json::to_string(&wanted)?
        );
    }
    for (t, s) in shuffle.tables.iter().zip(&graph.sources) {
        let has = crate::generate::ensure_topic_with(&s.def.options, &t.topic, shuffle.partitions)?;
        if has != shuffle.partitions as usize {
            bail!(
                "the shuffle topic {} has {has} partitions, the job's shuffle {}",
                t.topic,
                shuffle.partitions
            );
        }
    }
    Ok(shuffle)
}

impl Shuffle {
    /// What keyed task `m` reads, by table.
    pub fn reads(&self, m: i32) -> BTreeMap<String, ShuffleRead> {
        self.tables
            .iter()
            .map(|t| {
                (
                    t.table.clone(),
                    ShuffleRead {
                        topic: t.topic.clone(),
                        partition: m,
                        upstream: t.upstream as usize,
                    },
                )
            })
            .collect()
    }

    /// The writers: one per partition of each table.
    pub fn writers(&self) -> i32 {
        self.tables.iter().map(|t| t.upstream).sum()
    }

    /// Which table and partition writer `i` (below [`Shuffle::writers`]) reads.
    pub fn writer(&self, mut i: i32) -> (usize, i32) {
        for (t, table) in self.tables.iter().enumerate() {
            if i < table.upstream {
                return (t, i);
            }
            i -= table.upstream;
        }
        (self.tables.len(), i)
    }

    /// How the job is shuffled, for people.
    pub fn describe(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|t| {
                format!(
                    "the {} partitions of {} by {}",
                    t.upstream, t.table, t.column
                )
            })
            .collect();
        format!(
            "{}, shuffled into {} partitions each",
            tables.join(" and "),
            self.partitions
        )
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
    (t, p): (usize, i32),
    store: &CheckpointStore,
    handle: &JobHandle,
) -> Result<JobOutcome, RuntimeError> {
    let failed = |e: anyhow::Error| RuntimeError::External(format!("{e:#}"));
    let (Some(source), Some(table)) = (graph.sources.get(t), shuffle.tables.get(t)) else {
        return Err(RuntimeError::Internal(format!("no source table {t}")));
    };
    let mut options = source.def.options.clone();
    options.insert("partitions", p.to_string(), Position::default());
    let key = source
        .schema
        .index_of(&table.column)
        .map_err(|e| RuntimeError::Internal(e.to_string()))?;
    let spec = WriterSpec {
        table: source.def.name.clone(),
        options,
        schema: source.schema.clone(),
        key,
        event_time: source.event_time.map(|e| e.column),
        idle_timeout: crate::engine::idle_timeout(source).map_err(failed)?,
        topic: table.topic.clone(),
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
