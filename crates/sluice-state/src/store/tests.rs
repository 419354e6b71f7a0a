//! The checkpoint store in a directory and in an object store (in memory).

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
    RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![v, v + 1])) as _)]).unwrap()
}

/// Writes epochs 1 to 3 (each a state file of its epoch's rows); returns the newest.
fn write_three(store: &CheckpointStore) -> StoredCheckpoint {
    for e in 1..=3 {
        store
            .write(
                manifest(e),
                vec![("t-0.arrow".into(), vec![batch(e as i64)])],
            )
            .unwrap();
    }
    assert_eq!(store.epochs().unwrap(), vec![1, 2, 3]);
    store.newest().unwrap().unwrap()
}

#[test]
fn a_manifest_naming_files_outside_its_directory_is_damaged() {
    let root = tempfile::tempdir().unwrap();
    let store = CheckpointStore::new(root.path(), "j");
    let written = store
        .write(manifest(1), vec![("t-0.arrow".into(), vec![batch(1)])])
        .unwrap();
    let dir = root.path().join("j").join("epoch-1");
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
    let newest = write_three(&store);
    assert_eq!(newest.manifest.epoch, 3);
    assert_eq!(newest.read("t-0.arrow").unwrap(), vec![batch(3)]);

    // Flip a byte in the newest state file: it is skipped, epoch 2 is used.
    let p = root.path().join("j").join("epoch-3/t-0.arrow");
    let mut data = fs::read(&p).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&p, data).unwrap();
    assert_eq!(store.newest().unwrap().unwrap().manifest.epoch, 2);

    // A half-written directory (no rename yet) is not a checkpoint.
    fs::create_dir_all(root.path().join("j").join("epoch-4.tmp")).unwrap();
    // A directory whose manifest is missing is skipped too.
    fs::create_dir_all(root.path().join("j").join("epoch-5")).unwrap();
    assert_eq!(store.newest().unwrap().unwrap().manifest.epoch, 2);

    assert_eq!(store.prune(2, Some(1)).unwrap(), vec![2]);
    assert_eq!(store.epochs().unwrap(), vec![1, 3, 5]);
    assert!(!root.path().join("j").join("epoch-4.tmp").exists());
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

#[test]
fn in_an_object_store_a_checkpoint_is_complete_once_its_manifest_is_there() {
    use object_store::{ObjectStore, ObjectStoreExt};
    let memory = Arc::new(object_store::memory::InMemory::new());
    let store = CheckpointStore::in_object_store(memory.clone(), "cp", "j");
    assert!(store.newest().unwrap().is_none());
    let newest = write_three(&store);
    assert_eq!(newest.read("t-0.arrow").unwrap(), vec![batch(3)]);
    assert_eq!(newest.location(), "memory://cp/j/epoch-3");

    let path = |e: u64, f: &str| object_store::path::Path::from(format!("cp/j/epoch-{e}/{f}"));
    let put = |e: u64, f: &str, data: Vec<u8>| {
        object::block(async {
            memory
                .put(&path(e, f), data.into())
                .await
                .map_err(|e| StateError::Store(e.to_string()))
        })
        .unwrap();
    };
    // A state file changed under the manifest: epoch 3 is damaged, 2 is used.
    put(3, "t-0.arrow", b"not arrow".to_vec());
    assert_eq!(store.newest().unwrap().unwrap().manifest.epoch, 2);
    // An attempt that died before its manifest is not a checkpoint.
    put(4, "t-0.arrow", b"half".to_vec());
    assert_eq!(store.epochs().unwrap(), vec![1, 2, 3]);
    // Pruning keeps the newest two and the one in use, and clears the dead attempt
    // older than the newest complete one only.
    put(0, "t-0.arrow", b"older attempt".to_vec());
    assert_eq!(store.prune(2, Some(1)).unwrap(), Vec::<u64>::new());
    assert_eq!(store.prune(1, None).unwrap(), vec![2, 1]);
    assert_eq!(store.epochs().unwrap(), vec![3]);
    let left: Vec<String> = object::block(async {
        use futures::TryStreamExt;
        memory
            .list(None)
            .map_ok(|o| o.location.to_string())
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| StateError::Store(e.to_string()))
    })
    .unwrap();
    assert!(
        left.iter()
            .all(|l| l.starts_with("cp/j/epoch-3/") || l.starts_with("cp/j/epoch-4/")),
        "{left:?}"
    );
    // Written again, an epoch's old manifest goes first: it is the new one after.
    store
        .write(manifest(3), vec![("t-0.arrow".into(), vec![batch(30)])])
        .unwrap();
    assert_eq!(
        store.load(3).unwrap().read("t-0.arrow").unwrap(),
        vec![batch(30)]
    );
}

/// The job's store in a temporary directory and in memory (the object-store path).
fn both_backends(job: &str) -> (tempfile::TempDir, [CheckpointStore; 2]) {
    let root = tempfile::tempdir().unwrap();
    let memory = Arc::new(object_store::memory::InMemory::new());
    let stores = [
        CheckpointStore::new(root.path(), job),
        CheckpointStore::in_object_store(memory, "cp", job),
    ];
    (root, stores)
}

#[test]
fn each_generation_is_claimed_once_and_above_the_last() {
    let (_root, stores) = both_backends("j.p0");
    for store in stores {
        write_three(&store);
        let claims: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| store.claim_generation()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        let mut sorted = claims.clone();
        sorted.sort();
        assert_eq!(sorted, vec![1, 2, 3, 4], "{claims:?}");
        assert_eq!(store.claim_generation().unwrap(), 5);
        assert_eq!(store.claim_generation_above(9).unwrap(), 10);
        // The markers are not checkpoints.
        assert_eq!(store.epochs().unwrap(), vec![1, 2, 3]);
    }
}

#[test]
fn small_files_are_replaced_listed_and_deleted() {
    let (_root, stores) = both_backends("j.workers");
    for store in stores {
        assert!(store.files().unwrap().is_empty());
        store.put_file("a", b"1").unwrap();
        store.put_file("b", b"2").unwrap();
        store.put_file("a", b"3").unwrap();
        let mut files = store.files().unwrap();
        files.sort();
        assert_eq!(
            files,
            vec![("a".into(), b"3".to_vec()), ("b".into(), b"2".to_vec())]
        );
        store.delete_file("a").unwrap();
        store.delete_file("a").unwrap();
        assert_eq!(store.files().unwrap(), vec![("b".into(), b"2".to_vec())]);
    }
}

#[test]
fn a_file_written_only_where_absent_has_one_writer() {
    let (_root, stores) = both_backends("j.shuffle");
    for store in stores {
        let won: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u8)
                .map(|i| {
                    let store = &store;
                    s.spawn(move || store.put_file_new("layout", &[i; 64]).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let winner = won.iter().position(|w| *w).unwrap() as u8;
        assert_eq!(
            store.files().unwrap(),
            vec![("layout".into(), vec![winner; 64])]
        );
        assert!(!store.put_file_new("layout", b"late").unwrap());
    }
}

#[test]
fn finished_is_read_from_the_newest_manifest_alone() {
    let (_root, stores) = both_backends("j");
    for store in stores {
        assert!(!store.finished().unwrap());
        write_three(&store);
        assert!(!store.finished().unwrap());
        let mut last = manifest(4);
        last.finished = true;
        store.write(last, Vec::new()).unwrap();
        assert!(store.finished().unwrap());
    }
}
