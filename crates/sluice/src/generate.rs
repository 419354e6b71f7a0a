//! `sluice generate PROFILE`: the built-in generators written as JSON to a Kafka topic,
//! keyed by sensor, machine or user, creating the topic if it is missing, with a progress
//! line. `host-metrics` is this machine's own usage, a sample every interval, keyed by
//! host: run it on each host as its agent.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::json::writer::{LineDelimited, WriterBuilder};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use sluice_connectors::generator::{GeneratorOptions, GeneratorSource};
use sluice_connectors::host_metrics::{self, HostMetricsOptions, HostMetricsSource};
use sluice_connectors::kafka::{client_config, producer_config};
use sluice_connectors::kafka_sink::{CountingProducer, Deliveries, send_record};
use sluice_runtime::Source;
use sluice_types::{ConnectorOptions, Position};

/// What to generate and where to.
#[derive(Debug, Clone)]
pub struct GenerateArgs {
    pub profile: String,
    pub brokers: String,
    pub topic: String,
    pub partitions: i32,
    /// Generator options by name (rate, keys, seed, speedup, …), as in SQL.
    pub options: Vec<(String, String)>,
}

/// Creates `topic` with `partitions` unless it exists.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let mut options = ConnectorOptions::default();
    options.insert(
        "bootstrap.servers",
        brokers.to_string(),
        Position::default(),
    );
    ensure_topic_with(&options, topic, partitions).map(|_| ())
}

/// Creates `topic` with `partitions` unless it exists, with a table's client options;
/// how many partitions it has.
pub fn ensure_topic_with(
    options: &ConnectorOptions,
    topic: &str,
    partitions: i32,
) -> Result<usize> {
    let brokers = options.get("bootstrap.servers").unwrap_or_default();
    let consumer: BaseConsumer = client_config(options).create()?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot reach the Kafka broker at {brokers}"))?;
    if let Some(t) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && !t.partitions().is_empty())
    {
        return Ok(t.partitions().len());
    }
    let admin: AdminClient<DefaultClientContext> = client_config(options).create()?;
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics(&[new], &AdminOptions::new()))?;
    for r in results {
        if let Err((t, code)) = r
            && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(anyhow!("cannot create topic {t}: {code}"));
        }
    }
    Ok(partitions.max(1) as usize)
}

/// Runs until the limit (if any) or until `stop` is set. Returns the events sent.
pub fn run(args: &GenerateArgs, stop: Arc<AtomicBool>) -> Result<u64> {
    let mut options = ConnectorOptions::default();
    for (k, v) in &args.options {
        options.insert(k, v.clone(), Position::default());
    }
    let profile = args.profile.replace('-', "_");
    let mut source: Box<dyn Source> = if profile == "host_metrics" {
        let opts = HostMetricsOptions::parse(&options).map_err(|p| anyhow!(p.message))?;
        Box::new(
            HostMetricsSource::new("generate", opts, host_metrics::schema())
                .map_err(|e| anyhow!(e))?,
        )
    } else {
        options.insert("connector", "generator".into(), Position::default());
        options.insert("profile", profile, Position::default());
        let opts = GeneratorOptions::parse(&options).map_err(|p| anyhow!(p.message))?;
        let schema = opts.profile.schema();
        Box::new(GeneratorSource::new("generate", opts, schema).map_err(|e| anyhow!(e))?)
    };
    ensure_topic(&args.brokers, &args.topic, args.partitions)?;
    let mut kafka = ConnectorOptions::default();
    kafka.insert(
        "bootstrap.servers",
        args.brokers.clone(),
        Position::default(),
    );
    // One request in flight per connection keeps records in order per partition (and
    // the in-memory test broker loses batches sent concurrently to one partition).
    let producer: CountingProducer = producer_config(&kafka)
        .set("linger.ms", "10")
        .set("max.in.flight.requests.per.connection", "1")
        .create_with_context(Deliveries::default())?;
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(batch) = source.next_batch()? else {
            break;
        };
        let text = sluice_connectors::timestamps_as_text(&batch)?;
        buf.clear();
        {
            let mut w = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut buf);
            w.write(&text)?;
            w.finish()?;
        }
        let keys = text.column(0).as_string::<i32>();
        for (row, line) in buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let key = (!keys.is_null(row)).then(|| keys.value(row).as_bytes());
            match send_record(&producer, &args.topic, key, Some(line)) {
                Ok(()) => sent += 1,
                Err(e) => {
                    errors += 1;
                    if errors == 1 || errors.is_multiple_of(1000) {
                        eprintln!("warning: kafka topic {}: {e}", args.topic);
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
        if last.0.elapsed() >= Duration::from_secs(1) {
            let rate = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
            last = (Instant::now(), sent);
            let line = format!(
                "sent {sent} | {rate:.0}/s | errors {errors} | topic {}",
                args.topic
            );
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
        }
    }
    producer.flush(Duration::from_secs(330))?;
    producer
        .context()
        .check(&args.topic)
        .map_err(|e| anyhow!(e))?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    eprintln!(
        "sent {sent} events to {} in {:.1}s ({errors} errors)",
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(sent)
}
