//! Choosing the checkpoint a run restores (`--fresh`, `--from-checkpoint`, or the
//! newest), and the `sluice checkpoints list | inspect` views.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow};
use sluice_runtime::CheckpointSettings;
use sluice_state::{CheckpointStore, Manifest, StoredCheckpoint};
use sluice_types::format_millis;

/// Which checkpoint a run starts from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Restore {
    /// The newest complete one, if any (skipping damaged ones).
    #[default]
    Newest,
    /// None: start over.
    Fresh,
    /// An epoch number of this job, or a checkpoint directory.
    Chosen(String),
}

/// Where and how often a job checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointOptions {
    /// The root: checkpoints of job `j` live in `<dir>/j/`; `s3://bucket/prefix` puts
    /// them in an object store (configured from the `AWS_*` environment).
    pub dir: PathBuf,
    pub job: String,
    pub keep: usize,
    pub restore: Restore,
    /// Fault injection for tests (`SLUICE_ABORT_AFTER_CHECKPOINT`).
    pub abort_after: Option<u64>,
    /// A distributed task's generation (0: not distributed): its epochs start at
    /// `generation << 32`, above any an older owner can still write, and its sinks
    /// refuse commits of older generations.
    pub generation: u64,
}

impl CheckpointOptions {
    pub fn new(dir: impl Into<PathBuf>, job: &str) -> Self {
        CheckpointOptions {
            dir: dir.into(),
            job: job.to_string(),
            keep: 3,
            restore: Restore::Newest,
            abort_after: None,
            generation: 0,
        }
    }

    pub fn store(&self) -> Result<CheckpointStore> {
        Ok(CheckpointStore::open(
            &self.dir.to_string_lossy(),
            &self.job,
        )?)
    }
}

/// The newest checkpoint of the job says it finished: every source had ended and every
/// result was committed. Running it again would do nothing, so it does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadyFinished {
    pub job: String,
    pub epoch: u64,
    pub rows_out: u64,
}

impl std::fmt::Display for AlreadyFinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} finished at checkpoint {} with {} rows out; nothing to do, its outputs are left as they are (--fresh runs it again)",
            self.job, self.epoch, self.rows_out
        )
    }
}

impl std::error::Error for AlreadyFinished {}

/// The job name for a job file: its stem (`sql/iot_aggregates.sql` → `iot_aggregates`).
pub fn job_name(file: &Path) -> String {
    file.file_stem()
        .map_or_else(|| "job".to_string(), |s| s.to_string_lossy().into_owned())
}

/// Resolves the options into the runtime's settings: which checkpoint to restore and
/// where epochs continue from.
pub fn settings(
    options: Option<&CheckpointOptions>,
    interval: Duration,
    sql: &str,
) -> Result<CheckpointSettings> {
    let mut s = CheckpointSettings {
        interval,
        sql: sql.to_string(),
        ..CheckpointSettings::default()
    };
    let Some(o) = options else {
        return Ok(s);
    };
    let store = o.store()?;
    let epochs = store.epochs()?;
    s.after_epoch = epochs.last().copied().unwrap_or(0);
    s.keep = o.keep;
    s.abort_after = o.abort_after;
    s.generation = o.generation;
    if o.generation > 0 {
        s.after_epoch = s.after_epoch.max((o.generation << 32) - 1);
    }
    s.restore = match &o.restore {
        Restore::Fresh => None,
        // A finished newest checkpoint of this same job means there is nothing to do;
        // the runtime says so once it has checked the checkpoint belongs to this job.
        Restore::Newest => {
            s.skip_if_finished = true;
            store.newest()?
        }
        Restore::Chosen(which) => Some(chosen(&store, which)?),
    };
    if let Some(c) = &s.restore {
        tracing::info!(
            "job {}: restoring checkpoint {} ({})",
            o.job,
            c.manifest.epoch,
            c.location()
        );
    }
    s.store = Some(store);
    Ok(s)
}

fn chosen(store: &CheckpointStore, which: &str) -> Result<StoredCheckpoint> {
    let loaded = match which.parse::<u64>() {
        Ok(epoch) => store.load(epoch),
        Err(_) => sluice_state::load_dir(Path::new(which)),
    };
    loaded.map_err(|e| anyhow!("--from-checkpoint {which}: {e}"))
}

fn offsets(m: &Manifest) -> String {
    m.sources
        .iter()
        .map(|s| {
            let o: Vec<String> = s.offsets.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("{} {}", s.name, o.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `sluice checkpoints list`: one line per checkpoint, newest last.
pub fn list(options: &CheckpointOptions) -> Result<String> {
    let store = options.store()?;
    let mut out = format!(
        "{:>6}  {:<24}  {:>10}  {:<24}  offsets\n",
        "epoch", "written", "bytes", "watermark"
    );
    let epochs = store.epochs()?;
    if epochs.is_empty() {
        return Ok(format!(
            "job {} has no checkpoints under {}\n",
            options.job,
            store.location()
        ));
    }
    for e in epochs {
        match store.load(e) {
            Ok(c) => {
                let m = &c.manifest;
                out.push_str(&format!(
                    "{:>6}  {:<24}  {:>10}  {:<24}  {}{}\n",
                    m.epoch,
                    format_millis(m.created_ms),
                    m.total_bytes(),
                    m.watermark.map_or("-".to_string(), format_millis),
                    offsets(m),
                    if m.finished { "  (finished)" } else { "" }
                ));
            }
            Err(err) => out.push_str(&format!("{e:>6}  damaged: {err}\n")),
        }
    }
    Ok(out)
}

/// `sluice checkpoints inspect`: the manifest, with its state files.
pub fn inspect(options: &CheckpointOptions, which: &str) -> Result<String> {
    let c = chosen(&options.store()?, which)?;
    let m = &c.manifest;
    let mut out = format!(
        "checkpoint {} of job {}\n  location   {}\n  written    {}\n  watermark  {}\n  finished   {}\n  plan       {}\n",
        m.epoch,
        m.job,
        c.location(),
        format_millis(m.created_ms),
        m.watermark.map_or("-".to_string(), format_millis),
        m.finished,
        m.fingerprint
    );
    for line in &m.plan {
        out.push_str(&format!("             {line}\n"));
    }
    for s in &m.sources {
        out.push_str(&format!(
            "  source {}: offsets {:?}, watermark {}\n",
            s.name,
            s.offsets,
            s.watermark.map_or("-".to_string(), format_millis)
        ));
    }
    for f in &m.files {
        out.push_str(&format!(
            "  file {}: {} rows, {} bytes, crc32 {:08x}\n",
            f.name, f.rows, f.bytes, f.crc32
        ));
    }
    Ok(out)
}
