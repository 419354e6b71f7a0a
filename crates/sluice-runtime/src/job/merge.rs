//! The watermark merge in front of an ordered sink with several inputs: each input's rows
//! wait for its next watermark, and a step's rows go out once every input has passed it,
//! so the sink's output does not depend on how the work was split. Pure: the sink task
//! feeds it messages and writes what it releases.

use std::collections::BTreeMap;

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;
use sluice_types::{Message, Watermark};

use crate::error::{Result, RuntimeError};
use crate::operator::Snapshot;

pub(crate) struct Merge {
    wms: Vec<Watermark>,
    ended: Vec<bool>,
    open: Vec<Vec<RecordBatch>>,
    segments: BTreeMap<Watermark, Vec<RecordBatch>>,
    released: Watermark,
}

/// What one message let out: the steps' rows in watermark order, each step's batches in
/// arrival order, and the sink's new watermark if it moved.
#[derive(Default)]
pub(crate) struct Released {
    pub steps: Vec<Vec<RecordBatch>>,
    pub watermark: Option<Watermark>,
}

impl Merge {
    pub fn new(inputs: usize) -> Self {
        Merge {
            wms: vec![Watermark::MIN; inputs],
            ended: vec![false; inputs],
            open: vec![Vec::new(); inputs],
            segments: BTreeMap::new(),
            released: Watermark::MIN,
        }
    }

    /// Whether every input has ended.
    pub fn done(&self) -> bool {
        self.ended.iter().all(|e| *e)
    }

    /// Takes input `i`'s next message (barriers are the caller's) and returns what it
    /// releases.
    pub fn accept(&mut self, i: usize, msg: Message) -> Released {
        match msg {
            // After an input's last watermark no later one orders its rows: they go with
            // the end, and out as soon as every input is there (not held until the end of
            // stream, which comes after the final checkpoint's commit).
            Message::Batch(b) if self.wms[i] == Watermark::MAX => {
                self.segments.entry(Watermark::MAX).or_default().push(b)
            }
            Message::Batch(b) => self.open[i].push(b),
            Message::Watermark(w) => {
                let seg = std::mem::take(&mut self.open[i]);
                self.segments.entry(w).or_default().extend(seg);
                self.wms[i] = self.wms[i].max(w);
            }
            Message::Barrier(_) => return Released::default(),
            Message::EndOfStream => {
                self.ended[i] = true;
                let seg = std::mem::take(&mut self.open[i]);
                self.segments.entry(Watermark::MAX).or_default().extend(seg);
            }
        }
        let min = (0..self.wms.len())
            .filter(|&i| !self.ended[i])
            .map(|i| self.wms[i])
            .min()
            .unwrap_or(Watermark::MAX);
        let mut out = Released::default();
        if min > self.released || min == Watermark::MAX {
            while let Some(entry) = self.segments.first_entry() {
                if *entry.key() > min {
                    break;
                }
                let batches = entry.remove();
                if !batches.is_empty() {
                    out.steps.push(batches);
                }
            }
            if min > self.released {
                self.released = min;
                out.watermark = Some(min);
            }
        }
        out
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut batches = Vec::new();
        let mut segments = Vec::new();
        for (w, bs) in &self.segments {
            segments.push((w.millis(), bs.len()));
            batches.extend(bs.iter().cloned());
        }
        let open: Vec<usize> = self.open.iter().map(Vec::len).collect();
        for bs in &self.open {
            batches.extend(bs.iter().cloned());
        }
        Snapshot {
            values: json!({
                "watermarks": self.wms.iter().map(|w| w.millis()).collect::<Vec<_>>(),
                "released": self.released.millis(),
                "segments": segments,
                "open": open,
            }),
            batches,
        }
    }

    pub fn restore(&mut self, s: Snapshot) -> Result<()> {
        let bad = || RuntimeError::Internal("a sink's saved state does not fit this job".into());
        let wms: Vec<i64> =
            serde_json::from_value(s.values["watermarks"].clone()).map_err(|_| bad())?;
        let segments: Vec<(i64, usize)> =
            serde_json::from_value(s.values["segments"].clone()).map_err(|_| bad())?;
        let open: Vec<usize> =
            serde_json::from_value(s.values["open"].clone()).map_err(|_| bad())?;
        if wms.len() != self.wms.len() || open.len() != self.open.len() {
            return Err(bad());
        }
        self.wms = wms.into_iter().map(Watermark::from_millis).collect();
        self.released = Watermark::from_millis(s.values["released"].as_i64().ok_or_else(bad)?);
        let mut it = s.batches.into_iter();
        for (w, n) in segments {
            let seg = self.segments.entry(Watermark::from_millis(w)).or_default();
            seg.extend(it.by_ref().take(n));
        }
        for (i, n) in open.into_iter().enumerate() {
            self.open[i].extend(it.by_ref().take(n));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use sluice_types::Epoch;

    use super::*;

    fn rows(v: &[i64]) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let col = Arc::new(Int64Array::from(v.to_vec()));
        Message::Batch(RecordBatch::try_new(schema, vec![col]).unwrap())
    }

    fn wm(ms: i64) -> Message {
        Message::Watermark(Watermark::from_millis(ms))
    }

    /// The values released, step by step.
    fn values(r: &Released) -> Vec<Vec<i64>> {
        r.steps
            .iter()
            .map(|step| {
                step.iter()
                    .flat_map(|b| {
                        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                        (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn releases_a_step_once_every_input_has_passed_it() {
        let mut m = Merge::new(2);
        assert!(values(&m.accept(0, rows(&[1]))).is_empty());
        let r = m.accept(0, wm(10));
        assert!(values(&r).is_empty() && r.watermark.is_none());
        assert!(values(&m.accept(1, rows(&[2]))).is_empty());
        assert!(values(&m.accept(0, rows(&[3]))).is_empty());
        let r = m.accept(1, wm(20));
        assert_eq!(values(&r), vec![vec![1]]);
        assert_eq!(r.watermark, Some(Watermark::from_millis(10)));
        let r = m.accept(0, wm(30));
        assert_eq!(values(&r), vec![vec![2]]);
        assert_eq!(r.watermark, Some(Watermark::from_millis(20)));
        // Input 0's row after watermark 10 waits for input 1 to pass 30.
        assert!(values(&m.accept(1, Message::Barrier(Epoch(1)))).is_empty());
        let r = m.accept(1, Message::EndOfStream);
        assert_eq!(values(&r), vec![vec![3]]);
        assert_eq!(r.watermark, Some(Watermark::from_millis(30)));
        assert!(!m.done());
        m.accept(0, Message::EndOfStream);
        assert!(m.done());
    }

    /// Rows that come after an input's last watermark but before its end (an updating
    /// aggregate's changes, emitted at a barrier that comes after the sources' end) go
    /// out as soon as every input is at the end: a final checkpoint can then commit them.
    #[test]
    fn rows_after_the_last_watermark_go_out_before_the_end_of_stream() {
        let mut m = Merge::new(2);
        m.accept(0, Message::Watermark(Watermark::MAX));
        m.accept(0, rows(&[1]));
        let r = m.accept(1, wm(5));
        assert!(values(&r).is_empty(), "input 1 is not at the end yet");
        let r = m.accept(1, Message::Watermark(Watermark::MAX));
        assert_eq!(values(&r), vec![vec![1]]);
        assert_eq!(values(&m.accept(1, rows(&[2]))), vec![vec![2]]);
        assert_eq!(values(&m.accept(0, rows(&[3]))), vec![vec![3]]);
        assert!(!m.done());
    }

    #[test]
    fn a_snapshot_keeps_what_waits() {
        let mut m = Merge::new(2);
        m.accept(0, rows(&[1]));
        m.accept(0, wm(10));
        m.accept(0, rows(&[2]));
        m.accept(1, wm(5));
        let mut back = Merge::new(2);
        back.restore(m.snapshot()).unwrap();
        let r = back.accept(1, wm(40));
        assert_eq!(values(&r), vec![vec![1]]);
        assert!(values(&back.accept(0, Message::EndOfStream)).is_empty());
        let r = back.accept(1, Message::EndOfStream);
        assert_eq!(values(&r), vec![vec![2]]);
        assert!(Merge::new(3).restore(m.snapshot()).is_err());
    }
}
