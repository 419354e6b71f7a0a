//! The progress line of `sluice run` and its closing summary.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sluice_runtime::{JobMetrics, MetricsSnapshot};

/// One line: events in, rate, watermark, late and bad counts.
pub fn line(s: &MetricsSnapshot, rate: f64) -> String {
    let mut l = format!(
        "events {} | {}/s | watermark {} | out {} | late {} | bad {}",
        group(s.events_in),
        human(rate),
        s.watermark,
        group(s.rows_out),
        group(s.late),
        group(s.bad)
    );
    if let Some(c) = s.checkpoint {
        let now = sluice_types::now_ms();
        l.push_str(&format!(
            " | checkpoint {} ({:.0}s ago, {} ms, {})",
            c.epoch,
            ((now - c.at_ms).max(0) as f64) / 1000.0,
            c.duration_ms,
            bytes(c.bytes)
        ));
    }
    l
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// Redraws the progress line on stderr every half second while stderr is a terminal.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<JobMetrics>,
}

impl Progress {
    pub fn start(metrics: Arc<JobMetrics>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let (done, metrics) = (done.clone(), metrics.clone());
            std::thread::spawn(move || {
                let mut last = (Instant::now(), 0u64);
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let s = metrics.snapshot();
                    let dt = last.0.elapsed().as_secs_f64().max(1e-9);
                    let rate = (s.events_in - last.1) as f64 / dt;
                    last = (Instant::now(), s.events_in);
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{}", line(&s, rate));
                    let _ = err.flush();
                }
            })
        });
        Progress {
            done,
            thread,
            metrics,
        }
    }

    /// Stops redrawing and returns the summary line.
    pub fn finish(mut self) -> String {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            eprint!("\r\x1b[2K");
        }
        let s = self.metrics.snapshot();
        let secs = self.metrics.started.elapsed().as_secs_f64().max(1e-9);
        format!(
            "done in {secs:.2}s: {}",
            line(&s, s.events_in as f64 / secs)
        )
    }
}
