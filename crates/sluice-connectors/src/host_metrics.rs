//! This machine's own usage as a stream (`connector = 'host_metrics'`): every `interval`
//! one row of CPU (busy share of every core, summed: 0 to 100 × cores), memory, the disk
//! holding `disk_path` and network bytes since the last row, read from `/proc` and
//! `statvfs`. The CPU and network figures are differences, so the source reads once when
//! it opens and its first row comes an interval later: no figure is ever null.
//! Unbounded unless `limit` rows are asked for; a restore goes on sampling from now.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use sluice_runtime::{Positions, Result, RuntimeError, Source, SourcePoll};
use sluice_types::{ConnectorOptions, OptionProblem};

use crate::generator::{declared_columns, number_option, select_declared, set_option};

/// The options a host_metrics table takes.
pub const OPTIONS: &[&str] = &["interval", "limit", "host", "disk_path"];

pub fn schema() -> SchemaRef {
    let bytes = |name: &str| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        Field::new("host", DataType::Utf8, false),
        Field::new(
            "sample_time",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("cpu_percent", DataType::Float64, false),
        Field::new("cpu_cores", DataType::Int64, false),
        bytes("memory_used_bytes"),
        bytes("memory_total_bytes"),
        bytes("disk_used_bytes"),
        bytes("disk_total_bytes"),
        bytes("net_rx_bytes"),
        bytes("net_tx_bytes"),
    ]))
}

#[derive(Debug, Clone)]
pub struct HostMetricsOptions {
    pub interval: Duration,
    pub limit: Option<u64>,
    pub host: String,
    pub disk_path: String,
}

impl HostMetricsOptions {
    pub fn parse(options: &ConnectorOptions) -> Result<Self, OptionProblem> {
        let interval = match set_option(options, "interval") {
            Some(v) => crate::generator::interval_ms("interval", v)?,
            None => 5_000,
        };
        if interval < 100 {
            return Err(OptionProblem::new(
                Some("interval"),
                "interval must be at least 100 ms",
            ));
        }
        let limit = set_option(options, "limit")
            .map(|_| number_option(options, "limit", 0.0))
            .transpose()?
            .map(|x| x as u64);
        let host = match set_option(options, "host") {
            Some(h) => h.to_string(),
            None => hostname(),
        };
        Ok(HostMetricsOptions {
            interval: Duration::from_millis(interval as u64),
            limit,
            host,
            disk_path: set_option(options, "disk_path").unwrap_or("/").to_string(),
        })
    }
}

/// This machine's name, as the kernel has it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Cumulative counters, read at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_busy: u64,
    cpu_total: u64,
    cores: u64,
    rx: u64,
    tx: u64,
}

fn io(what: &str, e: std::io::Error) -> RuntimeError {
    RuntimeError::External(format!("host_metrics: cannot read {what}: {e}"))
}

fn read_counters() -> Result<Counters> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| io("/proc/stat", e))?;
    let mut c = Counters::default();
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("cpu") => {
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is in user).
                let total: u64 = v.iter().take(8).sum();
                let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                c.cpu_total = total;
                c.cpu_busy = total.saturating_sub(idle);
            }
            Some(name) if name.starts_with("cpu") => c.cores += 1,
            _ => {}
        }
    }
    let net = std::fs::read_to_string("/proc/net/dev").map_err(|e| io("/proc/net/dev", e))?;
    for line in net.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        c.rx += v.first().copied().unwrap_or(0);
        c.tx += v.get(8).copied().unwrap_or(0);
    }
    Ok(c)
}

/// (used, total) bytes of memory: total minus what the kernel says is available.
fn memory() -> Result<(i64, i64)> {
    let text = std::fs::read_to_string("/proc/meminfo").map_err(|e| io("/proc/meminfo", e))?;
    let kb = |key: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kb("MemTotal:");
    Ok((total - kb("MemAvailable:"), total))
}

/// (used, total) bytes of the file system holding `path`.
fn disk(path: &str) -> Result<(i64, i64)> {
    let s = rustix::fs::statvfs(path).map_err(|e| io(path, e.into()))?;
    let unit = s.f_frsize as i64;
    let total = s.f_blocks as i64 * unit;
    Ok((total - s.f_bfree as i64 * unit, total))
}

pub struct HostMetricsSource {
    opts: HostMetricsOptions,
    schema: SchemaRef,
    columns: Vec<usize>,
    last: Counters,
    next_due: Instant,
    produced: u64,
}

impl HostMetricsSource {
    pub fn new(table: &str, opts: HostMetricsOptions, schema: SchemaRef) -> Result<Self, String> {
        let columns = declared_columns(table, "host_metrics", &self::schema(), &schema)?;
        let last = read_counters().map_err(|e| e.to_string())?;
        Ok(HostMetricsSource {
            next_due: Instant::now() + opts.interval,
            opts,
            schema,
            columns,
            last,
            produced: 0,
        })
    }

    fn sample(&mut self) -> Result<RecordBatch> {
        let now = read_counters()?;
        let total = now.cpu_total.saturating_sub(self.last.cpu_total);
        let busy = now.cpu_busy.saturating_sub(self.last.cpu_busy);
        let cores = now.cores.max(1);
        let cpu = if total == 0 {
            0.0
        } else {
            (busy as f64 / total as f64 * 100.0 * cores as f64).clamp(0.0, 100.0 * cores as f64)
        };
        let (mem_used, mem_total) = memory()?;
        let (disk_used, disk_total) = disk(&self.opts.disk_path)?;
        let rx = now.rx.saturating_sub(self.last.rx) as i64;
        let tx = now.tx.saturating_sub(self.last.tx) as i64;
        self.last = now;
        let int = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
        let all: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.opts.host.as_str()])),
            Arc::new(TimestampMillisecondArray::from(
                vec![sluice_types::now_ms()],
            )),
            Arc::new(Float64Array::from(vec![(cpu * 100.0).round() / 100.0])),
            int(cores as i64),
            int(mem_used),
            int(mem_total),
            int(disk_used),
            int(disk_total),
            int(rx),
            int(tx),
        ];
        self.produced += 1;
        select_declared(&all, &self.columns, &self.schema)
    }
}

impl Source for HostMetricsSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Waits for the next sample (used where a source is read to its end).
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.opts.limit.is_some_and(|l| self.produced >= l) {
            return Ok(None);
        }
        let wait = self.next_due.saturating_duration_since(Instant::now());
        std::thread::sleep(wait);
        self.next_due += self.opts.interval;
        self.sample().map(Some)
    }

    fn poll(&mut self) -> Result<SourcePoll> {
        if self.opts.limit.is_some_and(|l| self.produced >= l) {
            return Ok(SourcePoll::End);
        }
        let wait = self.next_due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            // Short naps, so that barriers and stops are not held up.
            std::thread::sleep(wait.min(Duration::from_millis(50)));
            return Ok(SourcePoll::Idle);
        }
        self.next_due += self.opts.interval;
        Ok(SourcePoll::Batch {
            partition: 0,
            batch: self.sample()?,
        })
    }

    fn position(&self) -> Positions {
        Positions::from([("samples".to_string(), self.produced as i64)])
    }

    /// A restore counts the samples already taken against `limit`; sampling goes on
    /// from now (the past cannot be read again).
    fn seek(&mut self, position: &Positions) -> Result<()> {
        if let Some(&n) = position.get("samples") {
            self.produced = n.max(0) as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type};

    #[test]
    fn reads_plausible_figures_of_this_machine() {
        let mut options = ConnectorOptions::default();
        for (k, v) in [("interval", "200ms"), ("limit", "3")] {
            options.insert(k, v.to_string(), sluice_types::Position::default());
        }
        let opts = HostMetricsOptions::parse(&options).expect("options");
        let mut s = HostMetricsSource::new("h", opts, schema()).expect("opens");
        let t0 = sluice_types::now_ms();
        let mut rows = Vec::new();
        while let Some(b) = s.next_batch().expect("a sample") {
            rows.push(b);
        }
        assert_eq!(rows.len(), 3);
        let mut last_time = 0;
        for b in &rows {
            let int = |name: &str| {
                b.column_by_name(name)
                    .expect("column")
                    .as_primitive::<Int64Type>()
                    .value(0)
            };
            let cores = int("cpu_cores");
            assert!(cores >= 1);
            let cpu = b
                .column_by_name("cpu_percent")
                .expect("cpu")
                .as_primitive::<Float64Type>();
            assert_eq!(cpu.null_count(), 0);
            assert!(
                (0.0..=100.0 * cores as f64).contains(&cpu.value(0)),
                "{cpu:?}"
            );
            let (mu, mt) = (int("memory_used_bytes"), int("memory_total_bytes"));
            assert!(mt > 64 << 20 && mu > 0 && mu <= mt, "memory {mu} of {mt}");
            let (du, dt) = (int("disk_used_bytes"), int("disk_total_bytes"));
            assert!(dt > 0 && du >= 0 && du <= dt, "disk {du} of {dt}");
            assert!(int("net_rx_bytes") >= 0 && int("net_tx_bytes") >= 0);
            let t = b
                .column_by_name("sample_time")
                .expect("time")
                .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                .value(0);
            assert!(t >= t0 + 150 && t > last_time, "samples an interval apart");
            last_time = t;
            let host = b.column_by_name("host").expect("host").as_string::<i32>();
            assert!(!host.value(0).is_empty());
        }
    }
}
