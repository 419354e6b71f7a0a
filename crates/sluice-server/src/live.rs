//! Live results as server-sent events: `open` once (the job and sink), then a `row`
//! event per row the sink receives (its JSON object, as the file sinks write rows; `id`
//! numbers the rows of this stream from 1), and a `dropped` event with the running total
//! whenever rows were dropped because this client did not take them in time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sluice_runtime::LiveSubscription;

struct Watching {
    sub: LiveSubscription,
    rows: u64,
    dropped: u64,
    ready: VecDeque<Event>,
}

impl Watching {
    /// The events of one batch, after a `dropped` event if rows were lost since the last.
    fn take(&mut self, batch: &datafusion::arrow::record_batch::RecordBatch) {
        let dropped = self.sub.dropped.load(Ordering::Relaxed);
        if dropped > self.dropped {
            self.dropped = dropped;
            self.ready.push_back(
                Event::default()
                    .event("dropped")
                    .data(serde_json::json!({ "dropped": dropped }).to_string()),
            );
        }
        let mut text = Vec::new();
        if let Err(e) = sluice_runtime::output::json_lines(std::slice::from_ref(batch), &mut text) {
            self.ready.push_back(
                Event::default()
                    .event("error")
                    .data(serde_json::json!({ "error": e.to_string() }).to_string()),
            );
            return;
        }
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.rows += 1;
            self.ready.push_back(
                Event::default()
                    .event("row")
                    .id(self.rows.to_string())
                    .data(String::from_utf8_lossy(line)),
            );
        }
    }
}

/// The stream of one watcher; it ends when the job is deleted.
pub fn events(
    job: &str,
    sink: &str,
    sub: LiveSubscription,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    let open = Event::default()
        .event("open")
        .data(serde_json::json!({ "job": job, "sink": sink }).to_string());
    let state = Watching {
        sub,
        rows: 0,
        dropped: 0,
        ready: VecDeque::from([open]),
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.ready.pop_front() {
                return Some((Ok(e), st));
            }
            let batch = st.sub.rows.recv().await?;
            st.take(&batch);
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
