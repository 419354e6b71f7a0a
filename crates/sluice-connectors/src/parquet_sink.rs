//! Parquet sink, exactly once: a directory of part files, one per epoch with rows
//! (`part-<epoch>.parquet`). An epoch's rows are written at its barrier to a hidden
//! `.part-<epoch>.parquet.pending` file and renamed into place once its checkpoint is
//! durable, as Flink's FileSink does; readers skip hidden files.

use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use serde_json::json;
use sluice_runtime::{Result, RuntimeError, Sink, SinkState};
use sluice_types::Epoch;

pub struct ParquetSink {
    dir: PathBuf,
    schema: SchemaRef,
    current: Vec<RecordBatch>,
    /// Epochs whose pending file is written, waiting for their checkpoint.
    pending: Vec<u64>,
    /// The directory is ready: emptied of old parts on a fresh run, put back to a
    /// checkpoint's view on a restore.
    ready: bool,
}

/// What a file in the directory is to the sink.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Committed(u64),
    Pending(u64),
}

fn part_of(name: &str) -> Option<Part> {
    if let Some(e) = name
        .strip_prefix("part-")
        .and_then(|r| r.strip_suffix(".parquet"))
    {
        return e.parse().ok().map(Part::Committed);
    }
    name.strip_prefix(".part-")
        .and_then(|r| r.strip_suffix(".parquet.pending"))
        .and_then(|e| e.parse().ok())
        .map(Part::Pending)
}

/// What a restore of checkpoint `checkpoint` does with each part file: pending files the
/// checkpoint lists are committed (renamed); every other pending file, and every part
/// committed after the checkpoint, is removed (the replay writes those rows again).
fn recovery_plan(names: &[String], checkpoint: u64, listed: &[u64]) -> (Vec<u64>, Vec<String>) {
    let mut commit = Vec::new();
    let mut remove = Vec::new();
    for name in names {
        match part_of(name) {
            Some(Part::Pending(e)) if listed.contains(&e) && e <= checkpoint => commit.push(e),
            Some(Part::Pending(_)) => remove.push(name.clone()),
            Some(Part::Committed(e)) if e > checkpoint => remove.push(name.clone()),
            _ => {}
        }
    }
    commit.sort_unstable();
    (commit, remove)
}

impl ParquetSink {
    pub fn new(dir: &Path, schema: SchemaRef) -> Self {
        ParquetSink {
            dir: dir.to_path_buf(),
            schema,
            current: Vec::new(),
            pending: Vec::new(),
            ready: false,
        }
    }

    fn io(&self, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::External(format!("writing {}: {e}", self.dir.display()))
    }

    fn pending_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!(".part-{epoch:012}.parquet.pending"))
    }

    fn part_path(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("part-{epoch:012}.parquet"))
    }

    fn names(&self) -> Result<Vec<String>> {
        if self.dir.is_file() {
            return Err(RuntimeError::User(format!(
                "{} is a file; a parquet sink writes a directory of part files there (remove the file or choose another path)",
                self.dir.display()
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io(e))?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.io(e))? {
            let entry = entry.map_err(|e| self.io(e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// On a fresh run: removes the parts of earlier runs (only the sink's own files).
    fn prepare(&mut self) -> Result<()> {
        if self.ready {
            return Ok(());
        }
        for name in self.names()? {
            if part_of(&name).is_some() {
                std::fs::remove_file(self.dir.join(&name)).map_err(|e| self.io(e))?;
            }
        }
        self.ready = true;
        sync_dir(&self.dir).map_err(|e| self.io(e))
    }

    fn publish(&self, epoch: u64) -> Result<()> {
        std::fs::rename(self.pending_path(epoch), self.part_path(epoch)).map_err(|e| self.io(e))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Sink for ParquetSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        self.current.push(batch.clone());
        Ok(())
    }

    fn pre_commit(&mut self, epoch: Epoch) -> Result<SinkState> {
        self.prepare()?;
        if !self.current.is_empty() {
            let path = self.pending_path(epoch.0);
            let file = File::create(&path).map_err(|e| self.io(e))?;
            let mut w =
                ArrowWriter::try_new(file, self.schema.clone(), None).map_err(|e| self.io(e))?;
            for b in std::mem::take(&mut self.current) {
                w.write(&b).map_err(|e| self.io(e))?;
            }
            let file = w.into_inner().map_err(|e| self.io(e))?;
            file.sync_all().map_err(|e| self.io(e))?;
            self.pending.push(epoch.0);
        }
        Ok(SinkState {
            pending: Vec::new(),
            values: json!({ "pending": self.pending }),
        })
    }

    fn commit(&mut self, epoch: Epoch) -> Result<()> {
        let n = self.pending.iter().take_while(|e| **e <= epoch.0).count();
        if n == 0 {
            return Ok(());
        }
        for e in self.pending.drain(..n).collect::<Vec<_>>() {
            self.publish(e)?;
        }
        sync_dir(&self.dir).map_err(|e| self.io(e))
    }

    fn recover(&mut self, checkpoint: Epoch, saved: SinkState) -> Result<()> {
        let listed: Vec<u64> =
            serde_json::from_value(saved.values["pending"].clone()).unwrap_or_default();
        let names = self.names()?;
        let (commit, remove) = recovery_plan(&names, checkpoint.0, &listed);
        for e in &listed {
            // Listed, but neither pending nor committed: the directory was changed by hand.
            if !commit.contains(e) && !self.part_path(*e).exists() {
                return Err(RuntimeError::User(format!(
                    "{}: checkpoint {checkpoint} holds part {e}, which is gone: the directory was changed outside the job. Run with --fresh to write it again",
                    self.dir.display()
                )));
            }
        }
        for e in commit {
            self.publish(e)?;
        }
        for name in remove {
            std::fs::remove_file(self.dir.join(&name)).map_err(|e| self.io(e))?;
        }
        sync_dir(&self.dir).map_err(|e| self.io(e))?;
        self.ready = true;
        Ok(())
    }

    /// Rows not committed belong to no durable checkpoint: a restart writes them.
    fn finish(&mut self) -> Result<()> {
        self.prepare()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_restore_commits_what_its_checkpoint_held_and_removes_what_came_after() {
        let files = names(&[
            "part-000000000003.parquet",
            ".part-000000000004.parquet.pending",
            ".part-000000000005.parquet.pending",
            "part-000000000006.parquet",
            "notes.txt",
        ]);
        let (commit, remove) = recovery_plan(&files, 5, &[4, 5]);
        assert_eq!(commit, vec![4, 5]);
        assert_eq!(remove, names(&["part-000000000006.parquet"]));
        // Restoring an older checkpoint: 5 was not durable for it, 6 came after it.
        let (commit, remove) = recovery_plan(&files, 4, &[4]);
        assert_eq!(commit, vec![4]);
        assert_eq!(
            remove,
            names(&[
                ".part-000000000005.parquet.pending",
                "part-000000000006.parquet"
            ])
        );
    }

    #[test]
    fn only_its_own_files_are_parts() {
        assert_eq!(part_of("part-12.parquet"), Some(Part::Committed(12)));
        assert_eq!(part_of(".part-7.parquet.pending"), Some(Part::Pending(7)));
        assert_eq!(part_of("part-x.parquet"), None);
        assert_eq!(part_of("data.parquet"), None);
    }
}
