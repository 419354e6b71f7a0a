//! Checkpoint directories on disk. A checkpoint is written into `epoch-<n>.tmp/` (state
//! files, then `manifest.json`, each fsynced) and renamed to `epoch-<n>/` in one step,
//! so a directory without `.tmp` is complete unless the disk itself lies; checksums
//! catch that case.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StateError};
use crate::manifest::{FORMAT, FileEntry, Manifest};
use crate::retention::prune_plan;

/// The checkpoints of one job: `<root>/<job>/`.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// A complete checkpoint found on disk.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl StoredCheckpoint {
    /// The rows of one state file named in the manifest.
    pub fn read(&self, name: &str) -> Result<Vec<RecordBatch>> {
        check_file_name(name)?;
        if !self.manifest.files.iter().any(|f| f.name == name) {
            return Err(StateError::Corrupt(format!(
                "{}: state file {name} is not listed with a checksum in the manifest",
                self.dir.display()
            )));
        }
        read_state_file(&self.dir.join(name))
    }
}

/// A state file's name must be a plain name inside its checkpoint directory: a manifest
/// that names `../x` or `/etc/x` is damaged (or hostile), and is not followed.
fn check_file_name(name: &str) -> Result<()> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if plain {
        Ok(())
    } else {
        Err(StateError::Corrupt(format!(
            "the manifest names a state file {name:?} outside its checkpoint directory"
        )))
    }
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| StateError::io(path, e))
}

fn epoch_of(name: &str) -> Option<u64> {
    name.strip_prefix("epoch-")?.parse().ok()
}

impl CheckpointStore {
    pub fn new(root: impl AsRef<Path>, job: &str) -> Self {
        CheckpointStore {
            dir: root.as_ref().join(job),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn epoch_dir(&self, epoch: u64) -> PathBuf {
        self.dir.join(format!("epoch-{epoch}"))
    }

    /// Epochs with a complete directory, oldest first.
    pub fn epochs(&self) -> Result<Vec<u64>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io(&self.dir, e)),
        };
        let mut epochs = Vec::new();
        for entry in entries {
            let entry = io(&self.dir, entry)?;
            if let Some(e) = entry.file_name().to_str().and_then(epoch_of) {
                epochs.push(e);
            }
        }
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Every complete checkpoint's manifest, oldest first, read without verifying the
    /// state files (a listing; [`CheckpointStore::load`] verifies).
    pub fn manifests(&self) -> Result<Vec<(u64, Result<Manifest>)>> {
        Ok(self
            .epochs()?
            .into_iter()
            .map(|e| (e, read_manifest(&self.epoch_dir(e))))
            .collect())
    }

    /// Writes a checkpoint: the state files, then the manifest, then the rename.
    /// Returns the manifest as written (with its file list).
    pub fn write(
        &self,
        mut manifest: Manifest,
        files: Vec<(String, Vec<RecordBatch>)>,
    ) -> Result<Manifest> {
        let tmp = self.dir.join(format!("epoch-{}.tmp", manifest.epoch));
        if tmp.exists() {
            io(&tmp, fs::remove_dir_all(&tmp))?;
        }
        io(&tmp, fs::create_dir_all(&tmp))?;
        manifest.format = FORMAT;
        manifest.files.clear();
        for (name, batches) in files {
            let Some(first) = batches.first() else {
                continue;
            };
            let path = tmp.join(&name);
            let mut buf = Vec::new();
            {
                let mut w = FileWriter::try_new(&mut buf, &first.schema())?;
                for b in &batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            write_synced(&path, &buf)?;
            manifest.files.push(FileEntry {
                name,
                bytes: buf.len() as u64,
                crc32: crc32fast::hash(&buf),
                rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            });
        }
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StateError::Corrupt(format!("cannot encode the manifest: {e}")))?;
        write_synced(&tmp.join("manifest.json"), &json)?;
        sync_dir(&tmp)?;
        let dest = self.epoch_dir(manifest.epoch);
        if dest.exists() {
            io(&dest, fs::remove_dir_all(&dest))?;
        }
        io(&dest, fs::rename(&tmp, &dest))?;
        sync_dir(&self.dir)?;
        Ok(manifest)
    }

    /// Reads and verifies one epoch's checkpoint.
    pub fn load(&self, epoch: u64) -> Result<StoredCheckpoint> {
        let dir = self.epoch_dir(epoch);
        if !dir.exists() {
            let have = self.epochs()?;
            return Err(StateError::User(format!(
                "job has no checkpoint {epoch} under {} (it has: {})",
                self.dir.display(),
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        load_dir(&dir)
    }

    /// The newest checkpoint that verifies; damaged ones are skipped with a warning.
    pub fn newest(&self) -> Result<Option<StoredCheckpoint>> {
        for epoch in self.epochs()?.into_iter().rev() {
            match self.load(epoch) {
                Ok(c) => return Ok(Some(c)),
                Err(e) => tracing::warn!(
                    "checkpoint {} is damaged and is skipped: {e}",
                    self.epoch_dir(epoch).display()
                ),
            }
        }
        Ok(None)
    }

    /// Deletes all but the newest `keep` checkpoints (never `in_use`), and stale
    /// half-written directories. Returns the epochs deleted.
    pub fn prune(&self, keep: usize, in_use: Option<u64>) -> Result<Vec<u64>> {
        let doomed = prune_plan(&self.epochs()?, keep, in_use);
        for e in &doomed {
            let dir = self.epoch_dir(*e);
            io(&dir, fs::remove_dir_all(&dir))?;
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("epoch-") && name.ends_with(".tmp") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(doomed)
    }
}

/// A checkpoint directory's manifest, of a format this build reads.
fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("manifest.json");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::Corrupt(format!(
                "{} has no manifest.json (an unfinished checkpoint)",
                dir.display()
            )));
        }
        Err(e) => return Err(StateError::io(&path, e)),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| StateError::Corrupt(format!("{}: {e}", path.display())))?;
    if manifest.format > FORMAT {
        return Err(StateError::User(format!(
            "{} was written by a newer Sluice (format {}, this one reads {FORMAT})",
            path.display(),
            manifest.format
        )));
    }
    Ok(manifest)
}

/// Reads and verifies a checkpoint directory (as given by a user's path).
pub fn load_dir(dir: &Path) -> Result<StoredCheckpoint> {
    let manifest = read_manifest(dir)?;
    for f in &manifest.files {
        check_file_name(&f.name)?;
        let p = dir.join(&f.name);
        let mut data = Vec::new();
        File::open(&p)
            .and_then(|mut h| h.read_to_end(&mut data))
            .map_err(|e| StateError::Corrupt(format!("{}: {e}", p.display())))?;
        if data.len() as u64 != f.bytes || crc32fast::hash(&data) != f.crc32 {
            return Err(StateError::Corrupt(format!(
                "{}: checksum mismatch ({} bytes, {} expected)",
                p.display(),
                data.len(),
                f.bytes
            )));
        }
    }
    Ok(StoredCheckpoint {
        manifest,
        dir: dir.to_path_buf(),
    })
}

/// Reads the record batches of an Arrow IPC state file.
pub fn read_state_file(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = io(path, File::open(path))?;
    let reader = FileReader::try_new(file, None)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(StateError::from)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = io(path, File::create(path))?;
    io(path, f.write_all(data))?;
    io(path, f.sync_all())
}

fn sync_dir(dir: &Path) -> Result<()> {
    io(dir, File::open(dir).and_then(|d| d.sync_all()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{OperatorState, SourceState, TaskState};
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn manifest(epoch: u64) -> Manifest {
        let mut tasks = std::collections::BTreeMap::new();
        tasks.insert(
            "t".to_string(),
            TaskState {
                operators: vec![OperatorState {
                    values: serde_json::json!({"watermark": 5}),
                    file: Some("t-0.arrow".into()),
                }],
            },
        );
        Manifest {
            format: FORMAT,
            job: "j".into(),
            epoch,
            created_ms: 0,
            sql: "select 1".into(),
            fingerprint: "x".into(),
            plan: vec!["p".into()],
            finished: false,
            rows_out: 0,
            watermark: Some(1),
            sources: vec![SourceState::default()],
            tasks,
            files: Vec::new(),
        }
    }

    fn batch(v: i64) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v, v + 1])) as _)])
            .unwrap()
    }

    #[test]
    fn a_manifest_naming_files_outside_its_directory_is_damaged() {
        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(root.path(), "j");
        let written = store
            .write(manifest(1), vec![("t-0.arrow".into(), vec![batch(1)])])
            .unwrap();
        let dir = store.dir().join("epoch-1");
        // A secret beside the checkpoint that a hostile manifest would point at.
        fs::write(root.path().join("secret"), b"x").unwrap();
        for name in ["../../secret", "/etc/passwd", "..", "a\\b", ""] {
            let mut m = written.clone();
            m.files[0].name = name.to_string();
            fs::write(dir.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
            let err = load_dir(&dir).unwrap_err().to_string();
            assert!(
                err.contains("outside its checkpoint directory"),
                "{name}: {err}"
            );
        }
        // A task may only read files the manifest lists with a checksum.
        fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&written).unwrap(),
        )
        .unwrap();
        let c = load_dir(&dir).unwrap();
        assert!(c.read("other.arrow").is_err());
        assert!(c.read("../../secret").is_err());
        assert_eq!(c.read("t-0.arrow").unwrap(), vec![batch(1)]);
    }

    #[test]
    fn writes_reads_and_skips_damaged_checkpoints() {
        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(root.path(), "j");
        assert!(store.newest().unwrap().is_none());
        for e in 1..=3 {
            store
                .write(
                    manifest(e),
                    vec![("t-0.arrow".into(), vec![batch(e as i64)])],
                )
                .unwrap();
        }
        assert_eq!(store.epochs().unwrap(), vec![1, 2, 3]);
        let newest = store.newest().unwrap().unwrap();
        assert_eq!(newest.manifest.epoch, 3);
        assert_eq!(newest.read("t-0.arrow").unwrap(), vec![batch(3)]);

        // Flip a byte in the newest state file: it is skipped, epoch 2 is used.
        let p = store.dir().join("epoch-3/t-0.arrow");
        let mut data = fs::read(&p).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(&p, data).unwrap();
        assert_eq!(store.newest().unwrap().unwrap().manifest.epoch, 2);

        // A half-written directory (no rename yet) is not a checkpoint.
        fs::create_dir_all(store.dir().join("epoch-4.tmp")).unwrap();
        // A directory whose manifest is missing is skipped too.
        fs::create_dir_all(store.dir().join("epoch-5")).unwrap();
        assert_eq!(store.newest().unwrap().unwrap().manifest.epoch, 2);

        assert_eq!(store.prune(2, Some(1)).unwrap(), vec![2]);
        assert_eq!(store.epochs().unwrap(), vec![1, 3, 5]);
        assert!(!store.dir().join("epoch-4.tmp").exists());
    }

    #[test]
    fn asking_for_a_missing_epoch_lists_the_ones_there() {
        let root = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(root.path(), "j");
        store.write(manifest(7), Vec::new()).unwrap();
        let e = store.load(9).unwrap_err().to_string();
        assert!(
            e.contains("no checkpoint 9") && e.contains("it has: 7"),
            "{e}"
        );
    }
}
