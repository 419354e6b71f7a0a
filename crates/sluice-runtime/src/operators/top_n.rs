//! Top N per key (`ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) <= N`), the last row per
//! key among them (`ORDER BY t DESC`, N = 1). Each key keeps its best N rows (an input
//! row that ranks below them can never rise, the input being append-only). Per window
//! (a window column among the keys) a window's rows go out once, when the watermark
//! passes its end: append-only. Without a window the result is updating: at each
//! barrier a changed key's ranks whose row changed are updated (a row's rank is its
//! identity with the key: a new best row shifts the others down one rank each).
//! Over a changelog (a top N of an updating aggregate, such as a leaderboard) each key
//! keeps all its live rows: a retraction takes its row out, and the next row rises into
//! the best N.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use datafusion::arrow::array::{
    ArrayRef, AsArray, Int8Array, Int64Array, RecordBatch, RecordBatchOptions, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimestampMillisecondType};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::expressions::Column;
use indexmap::IndexMap;
use indexmap::map::raw_entry_v1::{RawEntryApiV1, RawEntryMut};
use sluice_types::changelog::{data_columns, kinds_of};
use sluice_types::{Epoch, Message, RowKind, Watermark};
use smallvec::SmallVec;

use crate::error::{Result, RuntimeError};
use crate::operator::{Collector, Operator, Snapshot};
use crate::operators::join_state::KeyEncoder;
use crate::plan::TopNPlan;

/// A row by its ORDER BY values and the rest of its columns, in one allocation that the
/// key's best rows and its rows out share (a row is held once; a column the order holds
/// is not held again).
#[derive(Clone)]
struct Ranked {
    /// The ORDER BY values, encoded so that bytes compare as the order does, then the
    /// columns the order does not hold (`TopN::rest`).
    bytes: Arc<[u8]>,
    order_len: u32,
}

impl Ranked {
    fn new(order: &[u8], row: &[u8]) -> Ranked {
        Ranked {
            bytes: order.iter().chain(row).copied().collect(),
            order_len: order.len() as u32,
        }
    }

    fn order(&self) -> &[u8] {
        &self.bytes[..self.order_len as usize]
    }

    fn row(&self) -> &[u8] {
        &self.bytes[self.order_len as usize..]
    }
}

/// A key's rows, inline for the most common N = 1 (the last row per key).
type Rows = SmallVec<[Ranked; 1]>;

/// A key's state. Updating, what is out downstream is its best N rows as of the last
/// barrier: the key's `top` unless it changed since, and then what `dirty` saved.
#[derive(Default)]
struct Partition {
    top: Rows,
    /// Changed since the last barrier (updating: its rows out are saved in `dirty`).
    changed: bool,
    /// The watermark when it last changed (updating), or its window's end (per window).
    time: i64,
}

impl Partition {
    /// Before a change: the first since the last barrier saves the rows out (updating).
    fn touch(&mut self, at: usize, limit: usize, dirty: Option<&mut Vec<Dirty>>, time: i64) {
        if let Some(dirty) = dirty
            && !self.changed
        {
            dirty.push((at, self.top.iter().take(limit).cloned().collect()));
        }
        self.changed = true;
        self.time = time;
    }
}

/// A key changed since the last barrier (its place in `TopN::partitions`), with its
/// rows out as of that barrier. Keys leave only at a barrier, after these are read,
/// so places hold until then.
type Dirty = (usize, Rows);

pub struct TopN {
    plan: TopNPlan,
    keys: KeyEncoder,
    order: RowConverter,
    /// The input's columns that are not an ORDER BY column, encoded.
    rows: RowConverter,
    rest: Vec<usize>,
    /// Per input column, where the order holds it, if it does.
    in_order: Vec<Option<usize>>,
    /// Keyed and in places: a barrier reaches a changed key by its place, not its hash.
    partitions: IndexMap<Box<[u8]>, Partition, super::StateHasher>,
    /// Updating: the keys changed since the last barrier, each once (what a barrier
    /// looks at, rather than every key held).
    dirty: Vec<Dirty>,
    watermark: Watermark,
    late: Arc<AtomicU64>,
    keys_held: Arc<AtomicI64>,
}

impl TopN {
    pub fn new(plan: TopNPlan, late: Arc<AtomicU64>, keys_held: Arc<AtomicI64>) -> Result<Self> {
        let keys = KeyEncoder::new(&plan.keys, &plan.schema, true)?;
        let order = RowConverter::new(
            plan.order
                .iter()
                .map(|o| {
                    Ok(SortField::new_with_options(
                        o.expr.data_type(&plan.schema)?,
                        o.options,
                    ))
                })
                .collect::<Result<Vec<_>>>()?,
        )?;
        let width = plan.schema.fields().len();
        let mut in_order = vec![None; width];
        for (j, o) in plan.order.iter().enumerate() {
            if let Some(c) = o.expr.downcast_ref::<Column>()
                && c.index() < width
                && in_order[c.index()].is_none()
            {
                in_order[c.index()] = Some(j);
            }
        }
        // The rest keeps one column at least: a converter of no columns has no rows.
        if width > 0 && in_order.iter().all(Option::is_some) {
            in_order[0] = None;
        }
        let rest: Vec<usize> = (0..width).filter(|&i| in_order[i].is_none()).collect();
        let rows = RowConverter::new(
            rest.iter()
                .map(|&i| SortField::new(plan.schema.field(i).data_type().clone()))
                .collect(),
        )?;
        Ok(TopN {
            plan,
            keys,
            order,
            rows,
            rest,
            in_order,
            partitions: IndexMap::default(),
            dirty: Vec::new(),
            watermark: Watermark::MIN,
            late,
            keys_held,
        })
    }

    fn updating(&self) -> bool {
        self.plan.window.is_none()
    }

    /// Each row's window end (per window only).
    fn window_ends(&self, batch: &RecordBatch) -> Result<Option<Vec<i64>>> {
        let Some((column, offset)) = self.plan.window else {
            return Ok(None);
        };
        let times = batch
            .column(column)
            .as_primitive_opt::<TimestampMillisecondType>()
            .ok_or_else(|| RuntimeError::Internal("a window column is not a timestamp".into()))?;
        Ok(Some(
            times
                .iter()
                .map(|t| t.map_or(i64::MAX, |t| t.saturating_add(offset)))
                .collect(),
        ))
    }

    /// Takes in a batch: its rows, or over a changelog its changes (`__op`).
    fn insert(&mut self, batch: &RecordBatch, check_late: bool) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let kinds = kinds_of(batch);
        let batch = &data_columns(batch);
        let keys = self.keys.encode(batch)?;
        let order_cols = self
            .plan
            .order
            .iter()
            .map(|o| o.expr.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let order = self.order.convert_columns(&order_cols)?;
        let rest: Vec<_> = self.rest.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = self.rows.convert_columns(&rest)?;
        let ends = self.window_ends(batch)?;
        let wm = self.watermark.millis();
        // Over a changelog every live row is kept: any of the best may be taken back.
        let keep_all = self.plan.input_updating;
        let updating = self.updating();
        let limit = self.plan.limit;
        let mut late = 0;
        for i in 0..n {
            let time = match &ends {
                Some(e) => {
                    if check_late && e[i] <= wm {
                        late += 1;
                        continue;
                    }
                    e[i]
                }
                None => wm,
            };
            let key = keys.key(i);
            let o = order.row(i);
            let row = rows.row(i);
            if kinds[i].is_retraction() {
                let Some((at_key, _, p)) = self.partitions.get_full_mut(key) else {
                    continue;
                };
                // The row among its equals in order (a row forgotten by the TTL is not).
                let from = p.top.partition_point(|e| e.order() < o.as_ref());
                let to = p.top.partition_point(|e| e.order() <= o.as_ref());
                if let Some(at) = (from..to).find(|&j| p.top[j].row() == row.as_ref()) {
                    p.touch(at_key, limit, updating.then_some(&mut self.dirty), time);
                    p.top.remove(at);
                }
                continue;
            }
            // The key is hashed once, and copied only when it is new.
            let hash = self.partitions.hasher().hash_one(key);
            let (at_key, p) = match self
                .partitions
                .raw_entry_mut_v1()
                .from_key_hashed_nocheck(hash, key)
            {
                RawEntryMut::Occupied(e) => (e.index(), e.into_mut()),
                RawEntryMut::Vacant(e) => {
                    let at_key = e.index();
                    (
                        at_key,
                        e.insert_hashed_nocheck(hash, key.into(), Partition::default())
                            .1,
                    )
                }
            };
            // Ties keep their arrival order: a new row goes after its equals.
            let at = p.top.partition_point(|e| e.order() <= o.as_ref());
            if at >= limit && !keep_all {
                continue;
            }
            p.touch(at_key, limit, updating.then_some(&mut self.dirty), time);
            p.top.insert(at, Ranked::new(o.as_ref(), row.as_ref()));
            if !keep_all {
                p.top.truncate(limit);
            }
        }
        if late > 0 {
            self.late.fetch_add(late, Ordering::Relaxed);
        }
        self.keys_held
            .store(self.partitions.len() as i64, Ordering::Relaxed);
        Ok(())
    }

    /// Rows out: (encoded row, rank from 1, kind).
    fn output(&self, rows: &[(&Ranked, u64, RowKind)]) -> Result<Option<RecordBatch>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = self.columns(rows.iter().map(|(r, _, _)| *r))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|(_, rank, _)| *rank),
        )));
        let schema = if self.updating() {
            columns.push(Arc::new(Int8Array::from_iter_values(
                rows.iter().map(|(_, _, k)| *k as i8),
            )));
            sluice_types::changelog::with_op(&self.plan.output_schema)
        } else {
            self.plan.output_schema.clone()
        };
        Ok(Some(RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?))
    }

    /// The input's columns of `rows`: those the order holds from the order's values.
    fn columns<'a>(&self, rows: impl Iterator<Item = &'a Ranked> + Clone) -> Result<Vec<ArrayRef>> {
        let parser = self.order.parser();
        let ordered = self
            .order
            .convert_rows(rows.clone().map(|r| parser.parse(r.order())))?;
        let parser = self.rows.parser();
        let mut rest = self
            .rows
            .convert_rows(rows.map(|r| parser.parse(r.row())))?
            .into_iter();
        self.in_order
            .iter()
            .map(|o| match o {
                Some(j) => Ok(ordered[*j].clone()),
                None => rest
                    .next()
                    .ok_or_else(|| RuntimeError::Internal("top n: a column is missing".into())),
            })
            .collect::<Result<Vec<_>>>()
    }

    /// Updating: what changed since the last barrier, an update's `-U` right before its
    /// `+U`; with a TTL, first the keys it forgets.
    fn flush(&mut self, out: &mut Collector) -> Result<()> {
        let wm = self.watermark.millis();
        let mut changes: Vec<(Ranked, u64, RowKind)> = Vec::new();
        let ttl = self
            .plan
            .ttl_ms
            .filter(|_| wm != i64::MIN && wm != i64::MAX);
        let mut gone = Vec::new();
        if let Some(ttl) = ttl {
            for (key, p) in self.partitions.iter_mut() {
                if p.time == i64::MIN {
                    p.time = wm;
                }
                if !p.changed && p.time.saturating_add(ttl) <= wm {
                    for (r, row) in p.top.drain(..).take(self.plan.limit).enumerate() {
                        changes.push((row, r as u64 + 1, RowKind::Delete));
                    }
                    gone.push(key.clone());
                }
            }
        }
        for (at_key, old) in std::mem::take(&mut self.dirty) {
            let Some((key, p)) = self.partitions.get_index_mut(at_key) else {
                continue;
            };
            if p.time == i64::MIN && wm != i64::MIN {
                p.time = wm;
            }
            p.changed = false;
            let new = &p.top[..p.top.len().min(self.plan.limit)];
            // By rank: a rank whose row changed is updated.
            for r in 0..old.len().max(new.len()) {
                let rank = r as u64 + 1;
                match (old.get(r), new.get(r)) {
                    // `Arc`'s equality tries the pointer first: an unchanged rank costs no compare.
                    (Some(o), Some(n)) if o.bytes == n.bytes => {}
                    (Some(o), Some(n)) => {
                        changes.push((o.clone(), rank, RowKind::UpdateBefore));
                        changes.push((n.clone(), rank, RowKind::UpdateAfter));
                    }
                    (Some(o), None) => changes.push((o.clone(), rank, RowKind::Delete)),
                    (None, Some(n)) => changes.push((n.clone(), rank, RowKind::Insert)),
                    (None, None) => {}
                }
            }
            if new.is_empty() {
                // Every row of the key was taken back: it is gone once its ranks are.
                gone.push(key.clone());
            }
        }
        // Last, as a removal moves the last key into the place freed.
        for key in gone {
            self.partitions.swap_remove(&key);
        }
        let rows: Vec<(&Ranked, u64, RowKind)> =
            changes.iter().map(|(r, n, k)| (r, *n, *k)).collect();
        if let Some(b) = self.output(&rows)? {
            out.batch(b);
        }
        self.keys_held
            .store(self.partitions.len() as i64, Ordering::Relaxed);
        Ok(())
    }

    /// Per window: every window the watermark has passed goes out, in window order.
    fn close_windows(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        let wm = watermark.millis();
        let mut closed: Vec<(i64, Box<[u8]>)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.time <= wm || watermark == Watermark::MAX)
            .map(|(k, p)| (p.time, k.clone()))
            .collect();
        closed.sort();
        let mut parts = Vec::new();
        for (_, key) in &closed {
            if let Some(p) = self.partitions.swap_remove(key) {
                parts.push(p);
            }
        }
        let rows: Vec<(&Ranked, u64, RowKind)> = parts
            .iter()
            .flat_map(|p| {
                p.top
                    .iter()
                    .enumerate()
                    .map(|(r, e)| (e, r as u64 + 1, RowKind::Insert))
            })
            .collect();
        if let Some(b) = self.output(&rows)? {
            out.batch(b);
        }
        self.keys_held
            .store(self.partitions.len() as i64, Ordering::Relaxed);
        Ok(())
    }
}

impl Operator for TopN {
    fn name(&self) -> &str {
        "top n per key"
    }

    fn process_batch(&mut self, batch: RecordBatch, _out: &mut Collector) -> Result<()> {
        self.insert(&batch, true)
    }

    fn on_watermark(&mut self, watermark: Watermark, out: &mut Collector) -> Result<()> {
        if watermark > self.watermark {
            self.watermark = watermark;
            if self.updating() {
                if watermark == Watermark::MAX {
                    self.flush(out)?;
                }
            } else {
                self.close_windows(watermark, out)?;
            }
        }
        out.message(Message::Watermark(watermark));
        Ok(())
    }

    fn before_barrier(&mut self, _epoch: Epoch, out: &mut Collector) -> Result<()> {
        if self.updating() {
            self.flush(out)?;
        }
        Ok(())
    }

    /// Each key's rows in rank order with `time`: the input's columns (nullable) and
    /// the partition's time. (At a barrier an updating key's rows out are its rows.)
    fn snapshot(&mut self) -> Result<Snapshot> {
        let mut encoded: Vec<&Ranked> = Vec::new();
        let mut times = Vec::new();
        for p in self.partitions.values() {
            for e in &p.top {
                encoded.push(e);
                times.push(p.time);
            }
        }
        let mut columns = self.columns(encoded.iter().copied())?;
        let mut fields: Vec<Field> = self
            .plan
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new("time", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(times)));
        Ok(Snapshot {
            values: serde_json::json!({ "watermark": self.watermark.millis() }),
            batches: vec![RecordBatch::try_new_with_options(
                Arc::new(Schema::new(fields)),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(encoded.len())),
            )?],
        })
    }

    fn restore(&mut self, state: Snapshot) -> Result<()> {
        if let Some(wm) = state
            .values
            .get("watermark")
            .and_then(serde_json::Value::as_i64)
        {
            self.watermark = Watermark::from_millis(wm);
        }
        for batch in &state.batches {
            let w = self.plan.schema.fields().len();
            let times: Vec<i64> = batch
                .columns()
                .get(w)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| RuntimeError::Internal("top-n state has no time column".into()))?
                .values()
                .to_vec();
            let data = RecordBatch::try_new_with_options(
                self.plan.schema.clone(),
                batch.columns()[..w].to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?;
            // Rows come in rank order: inserting them again rebuilds each key's list.
            self.insert(&data, false)?;
            let keys = self.keys.encode(&data)?;
            for (i, t) in times.iter().enumerate() {
                if let Some(p) = self.partitions.get_mut(keys.key(i)) {
                    p.time = *t;
                }
            }
        }
        // What was restored is what is out: nothing has changed since.
        self.dirty.clear();
        for p in self.partitions.values_mut() {
            p.changed = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use datafusion::arrow::array::{StringArray, TimestampMillisecondArray};
    use datafusion::arrow::compute::SortOptions;
    use datafusion::arrow::datatypes::{SchemaRef, TimeUnit};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::physical_expr::PhysicalSortExpr;
    use datafusion::physical_expr::expressions::Column;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]))
    }

    /// The best `limit` rows by `v` descending per `k` (per window: per `window_end`).
    fn op(limit: usize, per_window: bool) -> TopN {
        let s = schema();
        let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("row_number", DataType::UInt64, false));
        let keys: Vec<Arc<dyn datafusion::physical_plan::PhysicalExpr>> = if per_window {
            vec![Arc::new(Column::new("window_end", 2))]
        } else {
            vec![Arc::new(Column::new("k", 0))]
        };
        let plan = TopNPlan {
            schema: s,
            keys,
            order: vec![PhysicalSortExpr {
                expr: Arc::new(Column::new("v", 1)),
                options: SortOptions {
                    descending: true,
                    nulls_first: false,
                },
            }],
            limit,
            window: per_window.then_some((2, 0)),
            ttl_ms: None,
            input_updating: false,
            output_schema: Arc::new(Schema::new(fields)),
        };
        TopN::new(plan, Arc::default(), Arc::default()).unwrap()
    }

    fn rows(k: &str, values: &[i64], end: i64) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![k; values.len()])),
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(TimestampMillisecondArray::from(vec![end; values.len()])),
            ],
        )
        .unwrap()
    }

    /// `k v rank [op]` per row out.
    fn lines(out: &mut Collector) -> Vec<String> {
        let batches: Vec<RecordBatch> = out
            .take()
            .into_iter()
            .filter_map(|m| match m {
                Message::Batch(b) => Some(b.project(&[0, 1, 3]).ok().map(|p| {
                    let mut cols = p.columns().to_vec();
                    let mut fields: Vec<Field> = p
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| f.as_ref().clone())
                        .collect();
                    if let Some(op) = sluice_types::changelog::row_kinds(&b) {
                        cols.push(Arc::new(op.clone()));
                        fields.push(Field::new("op", DataType::Int8, false));
                    }
                    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
                })),
                _ => None,
            })
            .flatten()
            .collect();
        pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains("row_number"))
            .map(|l| {
                l.split('|')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn barrier(t: &mut TopN, e: u64) -> Vec<String> {
        let mut out = Collector::default();
        t.before_barrier(Epoch(e), &mut out).unwrap();
        lines(&mut out)
    }

    #[test]
    fn a_new_best_row_updates_each_rank_it_moves_and_a_restore_keeps_what_is_out() {
        let mut t = op(2, false);
        let mut out = Collector::default();
        t.process_batch(rows("a", &[1, 5, 3], 0), &mut out).unwrap();
        assert_eq!(barrier(&mut t, 1), vec!["a 5 1 0", "a 3 2 0"]);
        t.process_batch(rows("a", &[4, 2], 0), &mut out).unwrap();
        assert_eq!(barrier(&mut t, 2), vec!["a 3 2 1", "a 4 2 2"]);
        t.process_batch(rows("a", &[9], 0), &mut out).unwrap();
        assert_eq!(
            barrier(&mut t, 3),
            vec!["a 5 1 1", "a 9 1 2", "a 4 2 1", "a 5 2 2"]
        );
        let state = t.snapshot().unwrap();
        let mut again = op(2, false);
        again.restore(state).unwrap();
        assert!(barrier(&mut again, 4).is_empty(), "nothing changed");
        again.process_batch(rows("a", &[6], 0), &mut out).unwrap();
        assert_eq!(barrier(&mut again, 5), vec!["a 5 2 1", "a 6 2 2"]);
    }

    #[test]
    fn a_barrier_updates_a_changed_key_from_what_was_out_and_the_ttl_deletes_an_idle_one() {
        let mut t = op(1, false);
        t.plan.ttl_ms = Some(100);
        let mut out = Collector::default();
        t.process_batch(rows("a", &[5], 0), &mut out).unwrap();
        t.process_batch(rows("b", &[1], 0), &mut out).unwrap();
        assert_eq!(barrier(&mut t, 1), vec!["a 5 1 0", "b 1 1 0"]);
        // Several changes in one epoch make one update, from what was out to the best
        // now; a row below a key's best changes nothing.
        t.process_batch(rows("a", &[7, 6, 9], 0), &mut out).unwrap();
        t.process_batch(rows("b", &[0], 0), &mut out).unwrap();
        assert_eq!(barrier(&mut t, 2), vec!["a 5 1 1", "a 9 1 2"]);
        assert!(t.dirty.is_empty());
        t.on_watermark(Watermark::from_millis(10), &mut out)
            .unwrap();
        assert!(barrier(&mut t, 3).is_empty(), "nothing changed");
        // `b` unchanged since the watermark was 10: at 150 the TTL forgets it.
        t.on_watermark(Watermark::from_millis(150), &mut out)
            .unwrap();
        out.take();
        t.process_batch(rows("a", &[11], 0), &mut out).unwrap();
        assert_eq!(barrier(&mut t, 4), vec!["b 1 1 3", "a 9 1 1", "a 11 1 2"]);
        assert_eq!(t.partitions.len(), 1);
    }

    #[test]
    fn an_order_over_every_column_still_gives_whole_rows_back() {
        let mut t = op(2, false);
        let all = |i: usize, name: &str| PhysicalSortExpr {
            expr: Arc::new(Column::new(name, i)),
            options: SortOptions {
                descending: true,
                nulls_first: false,
            },
        };
        t.plan.order = vec![all(1, "v"), all(0, "k"), all(2, "window_end")];
        let mut t = TopN::new(t.plan, Arc::default(), Arc::default()).unwrap();
        let mut out = Collector::default();
        t.process_batch(rows("a", &[1, 5, 3], 7), &mut out).unwrap();
        assert_eq!(barrier(&mut t, 1), vec!["a 5 1 0", "a 3 2 0"]);
        let state = t.snapshot().unwrap();
        let mut again = TopN::new(t.plan.clone(), Arc::default(), Arc::default()).unwrap();
        again.restore(state).unwrap();
        again.process_batch(rows("a", &[4], 7), &mut out).unwrap();
        assert_eq!(barrier(&mut again, 2), vec!["a 3 2 1", "a 4 2 2"]);
    }

    /// `rows` as changes of a changelog.
    fn changes(k: &str, values: &[i64], kind: RowKind) -> RecordBatch {
        let b = rows(k, values, 0);
        let mut cols = b.columns().to_vec();
        cols.push(sluice_types::changelog::op_column(kind, values.len()));
        RecordBatch::try_new(sluice_types::changelog::with_op(&schema()), cols).unwrap()
    }

    #[test]
    fn over_a_changelog_a_retracted_best_row_lets_the_next_one_rise() {
        let mut t = op(2, false);
        t.plan.input_updating = true;
        let mut out = Collector::default();
        t.process_batch(changes("a", &[1, 5, 3], RowKind::Insert), &mut out)
            .unwrap();
        assert_eq!(barrier(&mut t, 1), vec!["a 5 1 0", "a 3 2 0"]);
        // 5 becomes 2: the row below the best two (1) is kept, and 3 moves up.
        t.process_batch(changes("a", &[5], RowKind::UpdateBefore), &mut out)
            .unwrap();
        t.process_batch(changes("a", &[2], RowKind::UpdateAfter), &mut out)
            .unwrap();
        assert_eq!(
            barrier(&mut t, 2),
            vec!["a 5 1 1", "a 3 1 2", "a 3 2 1", "a 2 2 2"]
        );
        // Restored, the rows below the best two are still there to rise.
        let state = t.snapshot().unwrap();
        let mut again = op(2, false);
        again.plan.input_updating = true;
        again.restore(state).unwrap();
        assert!(barrier(&mut again, 3).is_empty(), "nothing changed");
        again
            .process_batch(changes("a", &[3, 2], RowKind::Delete), &mut out)
            .unwrap();
        assert_eq!(
            barrier(&mut again, 4),
            vec!["a 3 1 1", "a 1 1 2", "a 2 2 3"]
        );
        // The key's last row taken back: its rank is deleted and the key forgotten.
        again
            .process_batch(changes("a", &[1], RowKind::Delete), &mut out)
            .unwrap();
        assert_eq!(barrier(&mut again, 5), vec!["a 1 1 3"]);
        assert!(again.partitions.is_empty());
    }

    #[test]
    fn a_key_moved_into_a_forgotten_keys_place_is_still_updated_from_what_was_out() {
        let mut t = op(1, false);
        t.plan.input_updating = true;
        let mut out = Collector::default();
        for (k, v) in [("a", 1), ("b", 2), ("c", 3)] {
            t.process_batch(changes(k, &[v], RowKind::Insert), &mut out)
                .unwrap();
        }
        assert_eq!(barrier(&mut t, 1), vec!["a 1 1 0", "b 2 1 0", "c 3 1 0"]);
        // `a` is forgotten at the barrier; the last key, `c`, takes its place.
        t.process_batch(changes("a", &[1], RowKind::Delete), &mut out)
            .unwrap();
        assert_eq!(barrier(&mut t, 2), vec!["a 1 1 3"]);
        t.process_batch(changes("c", &[4], RowKind::Insert), &mut out)
            .unwrap();
        t.process_batch(changes("b", &[5], RowKind::Insert), &mut out)
            .unwrap();
        assert_eq!(
            barrier(&mut t, 3),
            vec!["c 3 1 1", "c 4 1 2", "b 2 1 1", "b 5 1 2"]
        );
        assert_eq!(t.partitions.len(), 2);
    }

    #[test]
    fn per_window_each_windows_best_rows_go_out_once_when_it_closes() {
        let mut t = op(2, true);
        let mut out = Collector::default();
        t.process_batch(rows("a", &[1, 7], 10), &mut out).unwrap();
        t.process_batch(rows("b", &[5], 10), &mut out).unwrap();
        t.process_batch(rows("c", &[3], 20), &mut out).unwrap();
        assert!(
            barrier(&mut t, 1).is_empty(),
            "nothing before a window closes"
        );
        t.on_watermark(Watermark::from_millis(10), &mut out)
            .unwrap();
        assert_eq!(lines(&mut out), vec!["a 7 1", "b 5 2"]);
        // A row of a closed window is late: dropped and counted.
        t.process_batch(rows("d", &[99], 10), &mut out).unwrap();
        assert_eq!(t.late.load(Ordering::Relaxed), 1);
        let state = t.snapshot().unwrap();
        let mut again = op(2, true);
        again.restore(state).unwrap();
        again.on_watermark(Watermark::MAX, &mut out).unwrap();
        assert_eq!(lines(&mut out), vec!["c 3 1"]);
    }
}
