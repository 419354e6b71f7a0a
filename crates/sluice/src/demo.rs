//! `sluice demo`: the IoT and user-activity generators and the four reference jobs in
//! one process, no Kafka or database, with the newest window results, alerts and a
//! status line on the terminal (plain lines when the output is not a terminal).

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sluice_runtime::{JobHandle, MetricsSnapshot, Sink};
use sluice_types::Watermark;

use crate::engine::{JobRun, RunOptions};
use crate::progress;

/// The reference jobs, as shipped in `sql/`.
pub const JOBS: &[(&str, &str)] = &[
    (
        "iot_aggregates",
        include_str!("../../../sql/iot_aggregates.sql"),
    ),
    ("iot_alerts", include_str!("../../../sql/iot_alerts.sql")),
    (
        "user_activity",
        include_str!("../../../sql/user_activity.sql"),
    ),
    (
        "long_sessions",
        include_str!("../../../sql/long_sessions.sql"),
    ),
];

/// The catalog the demo reads its streams from: the built-in generators.
pub const CATALOG: (&str, &str) = (
    "sql/catalog/generators.sql",
    include_str!("../../../sql/catalog/generators.sql"),
);

/// Tables whose rows are alerts; every other table's rows are window results.
const ALERT_TABLES: &[&str] = &["iot_alerts", "long_sessions"];

/// Settings the demo uses unless the environment says otherwise: fast enough that
/// 5-minute windows close every few seconds.
const DEMO_ENV: &[(&str, &str)] = &[
    ("IOT_RATE", "4000"),
    ("IOT_SPEEDUP", "120"),
    ("USER_RATE", "1"),
    ("USER_SPEEDUP", "300"),
];

#[derive(Default)]
struct Board {
    windows: BTreeMap<String, Vec<String>>,
    /// Newest alerts by kind, so that a frequent kind does not hide a rare one.
    alerts: BTreeMap<String, VecDeque<String>>,
    window_rows: u64,
    alert_rows: u64,
}

struct DemoSink {
    table: String,
    alert: bool,
    board: Arc<Mutex<Board>>,
    plain: bool,
}

impl Sink for DemoSink {
    fn write_batch(&mut self, batch: &RecordBatch) -> sluice_runtime::Result<()> {
        let lines = describe_rows(&self.table, self.alert, batch)?;
        if self.plain {
            let mut out = std::io::stdout().lock();
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
        }
        if let Ok(mut b) = self.board.lock() {
            if self.alert {
                b.alert_rows += lines.len() as u64;
                for l in lines {
                    let kind = l.split_whitespace().nth(1).unwrap_or("alert").to_string();
                    let list = b.alerts.entry(kind).or_default();
                    list.push_back(compact(&l, 2));
                    while list.len() > 4 {
                        list.pop_front();
                    }
                }
            } else {
                b.window_rows += lines.len() as u64;
                let rows = b.windows.entry(self.table.clone()).or_default();
                rows.extend(lines.iter().map(|l| compact(l, 2)));
                let excess = rows.len().saturating_sub(8);
                rows.drain(..excess);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> sluice_runtime::Result<()> {
        Ok(())
    }
}

/// One line per row: `window TABLE col=value …` or `alert KIND col=value …`.
fn describe_rows(
    table: &str,
    alert: bool,
    batch: &RecordBatch,
) -> sluice_runtime::Result<Vec<String>> {
    let batch = sluice_connectors::timestamps_as_text(batch)?;
    let options = FormatOptions::default().with_null("null");
    let schema = batch.schema();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let kind_col = schema.index_of("kind").ok();
    let mut lines = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let head = match (alert, kind_col) {
            (true, Some(k)) => format!("alert {}", formatters[k].value(row)),
            (true, None) => format!("alert {}", table.trim_end_matches('s')),
            (false, _) => format!("window {table}"),
        };
        let mut line = head;
        for (i, f) in schema.fields().iter().enumerate() {
            if Some(i) == kind_col && alert {
                continue;
            }
            line.push_str(&format!(" {}={}", f.name(), formatters[i].value(row)));
        }
        lines.push(line);
    }
    Ok(lines)
}

fn status(handles: &[JobHandle], since: &mut (Instant, u64)) -> String {
    let snaps: Vec<MetricsSnapshot> = handles.iter().map(|h| h.metrics.snapshot()).collect();
    let total = MetricsSnapshot {
        events_in: snaps.iter().map(|s| s.events_in).sum(),
        rows_out: snaps.iter().map(|s| s.rows_out).sum(),
        late: snaps.iter().map(|s| s.late).sum(),
        bad: snaps.iter().map(|s| s.bad).sum(),
        join_rows_held: snaps.iter().map(|s| s.join_rows_held).sum(),
        state_keys_held: snaps.iter().map(|s| s.state_keys_held).sum(),
        watermark: snaps
            .iter()
            .map(|s| s.watermark)
            .filter(|w| w.is_known())
            .min()
            .unwrap_or(Watermark::MIN),
        checkpoint: None,
    };
    let dt = since.0.elapsed().as_secs_f64().max(1e-9);
    let rate = (total.events_in - since.1) as f64 / dt;
    *since = (Instant::now(), total.events_in);
    progress::line(&total, rate)
}

/// Runs the demo until `duration` has passed (or forever), or Ctrl-C.
pub fn run(duration: Option<Duration>, options: &RunOptions) -> Result<()> {
    let tty = std::io::stdout().is_terminal();
    let board = Arc::new(Mutex::new(Board::default()));
    let env = |name: &str| -> Option<String> {
        std::env::var(name).ok().or_else(|| {
            DEMO_ENV
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let mut runs = Vec::new();
    for (name, sql) in JOBS {
        let catalog = [sluice_sql::CatalogFile {
            name: CATALOG.0.to_string(),
            sql: CATALOG.1.to_string(),
        }];
        let graph = crate::engine::plan_with_catalog_env(sql, &catalog, &env)
            .map_err(|e| anyhow!("reference job {name}: {e}"))?;
        let run = JobRun::build_with_sinks(&graph, options, &|t| {
            Some(Box::new(DemoSink {
                table: t.def.name.clone(),
                alert: ALERT_TABLES.contains(&t.def.name.as_str()),
                board: board.clone(),
                plain: !tty,
            }))
        })?;
        runs.push(run);
    }
    let handles: Vec<JobHandle> = runs.iter().map(|r| r.handle.clone()).collect();
    {
        let hs = handles.clone();
        let _ = ctrlc::set_handler(move || hs.iter().for_each(JobHandle::stop));
    }
    let threads: Vec<_> = runs
        .into_iter()
        .map(|r| std::thread::spawn(move || r.run()))
        .collect();
    let started = Instant::now();
    let mut since = (Instant::now(), 0u64);
    let mut last_plain_status = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(if tty { 1000 } else { 250 }));
        let over = duration.is_some_and(|d| started.elapsed() >= d);
        let stopped =
            handles.iter().any(JobHandle::is_stopping) || threads.iter().all(|t| t.is_finished());
        if tty {
            let line = status(&handles, &mut since);
            draw(&board, &line, started.elapsed());
        } else if last_plain_status.elapsed() >= Duration::from_secs(5) {
            last_plain_status = Instant::now();
            println!("status {}", status(&handles, &mut since));
        }
        if over || stopped {
            break;
        }
    }
    handles.iter().for_each(JobHandle::stop);
    let mut first_error = None;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("a job thread panicked"));
            }
        }
    }
    let (w, a) = board
        .lock()
        .map_or((0, 0), |b| (b.window_rows, b.alert_rows));
    let mut since = (started, 0);
    println!(
        "demo finished after {:.1}s: {w} window results, {a} alerts; {}",
        started.elapsed().as_secs_f64(),
        status(&handles, &mut since)
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn draw(board: &Arc<Mutex<Board>>, status: &str, elapsed: Duration) {
    let Ok(b) = board.lock() else { return };
    let mut out = String::from("\x1b[2J\x1b[H");
    out.push_str(&format!(
        "Sluice demo — 4 reference jobs on generated IoT and user-activity streams ({:.0}s, Ctrl-C to stop)\n\n",
        elapsed.as_secs_f64()
    ));
    for (table, rows) in &b.windows {
        out.push_str(&format!("\x1b[1m{table}\x1b[0m (latest window results)\n"));
        for r in rows.iter().rev().take(5).rev() {
            out.push_str(&format!("  {}\n", shorten(r, 150)));
        }
        out.push('\n');
    }
    out.push_str("\x1b[1mnewest alerts\x1b[0m\n");
    for (kind, rows) in &b.alerts {
        for r in rows {
            out.push_str(&format!("  {kind:<17} {}\n", shorten(r, 150)));
        }
    }
    out.push_str(&format!("\n{status}\n"));
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.as_bytes());
    let _ = so.flush();
}

/// A row for the screen: without its first `skip` words, times as HH:MM:SS.
fn compact(line: &str, skip: usize) -> String {
    line.split_whitespace()
        .skip(skip)
        .map(|part| match part.split_once('=') {
            Some((k, v)) if v.len() == 24 && v.as_bytes()[10] == b'T' && v.ends_with('Z') => {
                format!("{k}={}", &v[11..19])
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
