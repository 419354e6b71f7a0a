//! Checkpoint storage: the layout (`<root>/<job>/epoch-<n>/`, in a directory or an
//! object store such as S3), the manifest,
//! Arrow state files with checksums, which checkpoint to restore, and which to prune.
//! The deciding parts (retention, choice of checkpoint) are pure functions; file I/O
//! sits in [`store`].

mod error;
mod manifest;
mod retention;
mod store;

pub use error::{Result, StateError};
pub use manifest::fingerprint;
pub use manifest::{FileEntry, Manifest, OperatorState, SourceState, TaskState};
pub use retention::{is_incompatible, prune_plan};
pub use store::{CheckpointStore, StoredCheckpoint, is_object_url, load_dir, read_state_file};
