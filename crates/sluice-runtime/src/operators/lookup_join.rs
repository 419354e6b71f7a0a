//! Lookup join: each stream row meets the rows a table (a database table) holds for its
//! key when the row arrives. Keys missing from the cache are fetched in one call per
//! batch; fetched rows (and keys the table lacks) are kept for the cache's TTL, so an
//! edit in the table reaches rows that arrive after the TTL has passed. INNER drops a
//! row whose key the table lacks; LEFT keeps it with NULLs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{Field, Schema};

use crate::error::{Result, RuntimeError};
use crate::operator::{Chain, Collector, Operator};
use crate::operators::join_state::{
    KeyEncoder, SideRows, joined, meeting_condition, padded, take_columns, take_rows,
};
use crate::plan::{JoinPlan, JoinTime, Lookup};

struct Cached {
    at: Instant,
    /// The right rows for the key (none: the table has no such key).
    rows: Option<RecordBatch>,
}

pub struct LookupJoin {
    plan: JoinPlan,
    lookup: Box<dyn Lookup>,
    ttl: Duration,
    /// Fetched rows become right rows through these.
    steps: Chain,
    key_columns: Vec<String>,
    stream_keys: KeyEncoder,
    right_keys: KeyEncoder,
    cache: super::StateMap<Box<[u8]>, Cached>,
}

impl LookupJoin {
    pub fn new(plan: JoinPlan, lookup: Box<dyn Lookup>, steps: Chain) -> Result<Self> {
        let JoinTime::Lookup {
            ttl_ms,
            key_columns,
            ..
        } = &plan.time
        else {
            return Err(RuntimeError::Internal("not a lookup join".into()));
        };
        Ok(LookupJoin {
            ttl: Duration::from_millis((*ttl_ms).max(0) as u64),
            key_columns: key_columns.clone(),
            stream_keys: KeyEncoder::new(&plan.left_keys, &plan.left_schema, false)?,
            right_keys: KeyEncoder::new(&plan.right_keys, &plan.right_schema, false)?,
            lookup,
            steps,
            cache: super::StateMap::default(),
            plan,
        })
    }

    /// Fetches the keys of `batch` the cache lacks (or holds too long) and caches them.
    fn refresh(
        &mut self,
        batch: &RecordBatch,
        keys: &crate::operators::join_state::EncodedKeys,
    ) -> Result<()> {
        let now = Instant::now();
        let mut missing: Vec<u32> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in 0..batch.num_rows() {
            if !keys.valid[r] {
                continue;
            }
            let k = keys.key(r);
            let fresh = self
                .cache
                .get(k)
                .is_some_and(|c| now.duration_since(c.at) < self.ttl);
            if !fresh && seen.insert(k) {
                missing.push(r as u32);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // The distinct missing keys as a batch named by the table's key columns.
        let n = batch.num_rows();
        let key_arrays: Vec<ArrayRef> = self
            .plan
            .left_keys
            .iter()
            .map(|e| e.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<_, _>>()?;
        let idx = UInt32Array::from(missing.clone());
        let fields: Vec<Field> = key_arrays
            .iter()
            .zip(&self.key_columns)
            .map(|(a, name)| Field::new(name, a.data_type().clone(), true))
            .collect();
        let cols = key_arrays
            .iter()
            .map(|a| datafusion::arrow::compute::take(a.as_ref(), &idx, None))
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
        let fetched = self.lookup.fetch(&wanted)?;
        // Through the lookup side's steps, into right rows.
        let mut right: Vec<RecordBatch> = Vec::new();
        for m in self.steps.push(sluice_types::Message::Batch(fetched))? {
            if let sluice_types::Message::Batch(b) = m {
                right.push(b);
            }
        }
        let right = concat_batches(&self.plan.right_schema, &right)?;
        // Group the right rows by key; keys without rows are cached as absent.
        let rkeys = self.right_keys.encode(&right)?;
        let mut by_key: super::StateMap<Vec<u8>, Vec<u32>> = super::StateMap::default();
        for r in 0..right.num_rows() {
            if rkeys.valid[r] {
                by_key
                    .entry(rkeys.key(r).to_vec())
                    .or_default()
                    .push(r as u32);
            }
        }
        for r in missing {
            let k = keys.key(r as usize).to_vec();
            let rows = match by_key.get(&k) {
                Some(idx) => Some(take_record_batch(&right, &UInt32Array::from(idx.clone()))?),
                None => None,
            };
            self.cache
                .insert(k.into_boxed_slice(), Cached { at: now, rows });
        }
        Ok(())
    }
}

impl Operator for LookupJoin {
    fn name(&self) -> &str {
        "lookup join"
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.stream_keys.encode(&batch)?;
        self.refresh(&batch, &keys)?;
        // The right rows for this batch's keys, held as one side to probe.
        let mut parts: Vec<RecordBatch> = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for r in 0..batch.num_rows() {
            let k = keys.key(r);
            if keys.valid[r]
                && taken.insert(k)
                && let Some(Cached { rows: Some(b), .. }) = self.cache.get(k)
            {
                parts.push(b.clone());
            }
        }
        let right = concat_batches(&self.plan.right_schema, &parts)?;
        let mut held = SideRows::new(self.plan.right_schema.clone());
        let rk = self.right_keys.encode(&right)?;
        let nr = right.num_rows();
        held.insert(right, &rk, vec![false; nr], vec![i64::MAX; nr]);
        let (probe, refs) = held.probe(&keys);
        let left = take_columns(&batch, &probe)?;
        let rcols = held.gather(&refs)?;
        let (left, rcols, probe, _) = meeting_condition(&self.plan, left, rcols, probe, refs)?;
        let n = probe.len();
        if n > 0 {
            out.batch(joined(&self.plan, left, rcols, n)?);
        }
        if self.plan.kind.keeps_left() {
            let mut met = vec![false; batch.num_rows()];
            for p in probe {
                met[p as usize] = true;
            }
            let rows: Vec<u32> = (0..batch.num_rows() as u32)
                .filter(|&r| !met[r as usize])
                .collect();
            if !rows.is_empty() {
                out.batch(padded(&self.plan, &take_rows(&batch, &rows)?, true)?);
            }
        }
        Ok(())
    }
}
