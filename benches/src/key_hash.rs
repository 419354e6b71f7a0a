//! `key-hash`: the cost of routing rows to tasks by key. Sluice's key hash (version 1,
//! Kafka's murmur2 over the key's bytes) beside the hash it replaced (DataFusion's
//! `create_hashes`, ahash with a fixed seed), over the same text keys of 1,000 sensors,
//! in nanoseconds per row (best of three passes). Checked: every v1 hash equals murmur2 of
//! the key's bytes, and both spread the keys over two tasks within 10 % of even.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::common::hash_utils::{RandomState, create_hashes};
use sluice_types::key_hash::{key_hashes, murmur2, partition_of};

/// Rows per batch, as the sources make them.
const BATCH: usize = 8192;

pub fn run_key_hash(events: usize) -> Result<()> {
    let batches: Vec<ArrayRef> = (0..events.div_ceil(BATCH))
        .map(|b| {
            let n = BATCH.min(events - b * BATCH);
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("sensor-{:04}", (b * BATCH + i) * 7919 % 1000)),
            )) as ArrayRef
        })
        .collect();
    let best = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best * 1e9 / events as f64)
    };
    let mut v1 = Vec::new();
    let mut v1_tasks = [0usize; 2];
    let ns_v1 = best(&mut || {
        v1_tasks = [0; 2];
        for c in &batches {
            key_hashes(std::slice::from_ref(c), c.len(), &mut v1)?;
            for h in &v1 {
                v1_tasks[partition_of(*h, 2)] += 1;
            }
        }
        Ok(())
    })?;
    let mut ahash = Vec::new();
    let mut ahash_tasks = [0usize; 2];
    let ns_ahash = best(&mut || {
        ahash_tasks = [0; 2];
        for c in &batches {
            ahash.clear();
            ahash.resize(c.len(), 0u64);
            create_hashes(
                std::slice::from_ref(c),
                &RandomState::with_seed(0x51_1C_E5),
                &mut ahash,
            )?;
            for h in &ahash {
                ahash_tasks[(h % 2) as usize] += 1;
            }
        }
        Ok(())
    })?;
    // The output: v1 is Kafka's murmur2 of each key, and both split the rows evenly.
    let last = batches.last().map(|c| c.len()).unwrap_or(0);
    if let Some(c) = batches.last() {
        key_hashes(std::slice::from_ref(c), last, &mut v1)?;
        let s = c
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap_or_else(|| unreachable!());
        for (i, h) in v1.iter().enumerate() {
            ensure!(
                *h == (murmur2(s.value(i).as_bytes()) as u32) & 0x7fff_ffff,
                "row {i}: the key hash is not murmur2 of {}",
                s.value(i)
            );
        }
    }
    for (name, t) in [("v1", v1_tasks), ("ahash", ahash_tasks)] {
        let even = events as f64 / 2.0;
        ensure!(
            t.iter().all(|&n| (n as f64 - even).abs() < even * 0.1),
            "{name} splits {events} rows unevenly: {t:?}"
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "scenario": "key-hash",
            "events": events,
            "ns_per_row_v1": (ns_v1 * 100.0).round() / 100.0,
            "ns_per_row_ahash": (ns_ahash * 100.0).round() / 100.0,
            "tasks_v1": v1_tasks,
            "tasks_ahash": ahash_tasks,
        })
    );
    Ok(())
}
