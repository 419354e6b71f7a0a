//! Kafka tables' options: the names the catalog knows, the checks beyond names
//! (sources, sinks, client properties a submitted job may not set), and the librdkafka
//! settings they make.

use rdkafka::config::ClientConfig;
use sluice_types::{ConnectorOptions, JobRules, OptionProblem};

use crate::file_source::BadData;

/// Options of a Kafka source table (besides `properties.*`, passed to librdkafka).
pub const SOURCE_OPTIONS: &[&str] = &[
    "topic",
    "bootstrap.servers",
    "format",
    "scan.startup.mode",
    "scan.bounded.mode",
    "group.id",
    "idle_timeout",
    "batch_size",
    "bad_data",
    "dead_letter.path",
    "key.fields",
    "partitions",
];

/// Options of a Kafka sink table.
pub const SINK_OPTIONS: &[&str] = &[
    "topic",
    "bootstrap.servers",
    "format",
    "key",
    "changelog.mode",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
];

/// `'sink.delivery-guarantee'`: whether the sink keeps exactly once with transactions.
pub fn exactly_once(options: &ConnectorOptions) -> bool {
    options.get("sink.delivery-guarantee") == Some("exactly-once")
}

/// Checks a Kafka sink's options beyond their names.
pub fn check_sink(options: &ConnectorOptions) -> Result<(), OptionProblem> {
    if options.get("topic").is_none_or(str::is_empty)
        || options.get("bootstrap.servers").is_none_or(str::is_empty)
    {
        return Err(OptionProblem::new(
            Some("connector"),
            "a kafka table needs topic = '…' and 'bootstrap.servers' = '…'",
        ));
    }
    match options.get("sink.delivery-guarantee") {
        None | Some("at-least-once" | "exactly-once") => {}
        Some(other) => {
            return Err(OptionProblem::new(
                Some("sink.delivery-guarantee"),
                format!(
                    "'sink.delivery-guarantee' must be 'at-least-once' or 'exactly-once', not '{other}'"
                ),
            ));
        }
    }
    if let Some(m) = options.get("changelog.mode") {
        if m != "upsert" || options.get("format").is_some_and(|f| f != "json") {
            return Err(OptionProblem::new(
                Some("changelog.mode"),
                format!(
                    "changelog.mode '{m}' is not supported for kafka (format 'json' takes 'upsert'; format 'debezium-json' needs none)"
                ),
            ));
        }
        if options.get("key").is_none_or(str::is_empty) {
            return Err(OptionProblem::new(
                Some("changelog.mode"),
                "'changelog.mode' = 'upsert' needs key = '…' (the columns each record is keyed by; a delete is a tombstone for its key)",
            ));
        }
    }
    if options.get("sink.transactional-id-prefix").is_some() && !exactly_once(options) {
        return Err(OptionProblem::new(
            Some("sink.transactional-id-prefix"),
            "'sink.transactional-id-prefix' needs 'sink.delivery-guarantee' = 'exactly-once'",
        ));
    }
    Ok(())
}

/// Checks what the catalog cannot see from the option names alone.
pub fn check_source(options: &ConnectorOptions) -> Result<(), OptionProblem> {
    for key in ["topic", "bootstrap.servers"] {
        if options.get(key).is_none_or(str::is_empty) {
            return Err(OptionProblem::new(
                Some("connector"),
                format!("a kafka table needs {key} = '…'"),
            ));
        }
    }
    match options.get("scan.startup.mode") {
        None | Some("earliest" | "latest" | "group-offsets") => {}
        Some(other) => {
            return Err(OptionProblem::new(
                Some("scan.startup.mode"),
                format!(
                    "scan.startup.mode must be 'earliest', 'latest' or 'group-offsets', not '{other}'"
                ),
            ));
        }
    }
    match options.get("scan.bounded.mode") {
        None | Some("unbounded" | "latest-offset") => {}
        Some(other) => {
            return Err(OptionProblem::new(
                Some("scan.bounded.mode"),
                format!("scan.bounded.mode must be 'latest-offset' or 'unbounded', not '{other}'"),
            ));
        }
    }
    if let Some(k) = options.get("key.fields")
        && (k.trim().is_empty() || k.contains(','))
    {
        return Err(OptionProblem::new(
            Some("key.fields"),
            format!("key.fields names the one column records are keyed by, not '{k}'"),
        ));
    }
    if let Some(p) = options.get("partitions") {
        listed_partitions(p).map_err(|m| OptionProblem::new(Some("partitions"), m))?;
    }
    BadData::check_options(options)
}

/// The partitions a source's `partitions = '0,2'` option lists (a distributed worker
/// sets it for each task it runs).
pub fn listed_partitions(list: &str) -> Result<Vec<i32>, String> {
    list.split(',')
        .map(|p| {
            p.trim()
                .parse::<i32>()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    format!("partitions lists partition numbers, like '0,2', not '{list}'")
                })
        })
        .collect()
}

/// librdkafka settings that read files, load code or run commands: a submitted job may not
/// set them (`sluice run` may). Matched as a prefix when they end in a dot.
pub const REFUSED_CLIENT_PROPERTIES: &[&str] = &[
    "sasl.kerberos.",
    "plugin.library.paths",
    "ssl.engine.location",
    "ssl.engine.id",
    "ssl.providers",
    "ssl_engine_callback_data",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.token.endpoint.url",
];

/// Client properties (`properties.*`) a job under `rules` may not set: the list above, and
/// every `*.location` or `*.directory` (certificate and key files).
pub fn check_client_properties(
    options: &ConnectorOptions,
    rules: &JobRules,
) -> Result<(), OptionProblem> {
    if rules.trusted {
        return Ok(());
    }
    for key in options.keys() {
        let Some(prop) = key.strip_prefix("properties.") else {
            continue;
        };
        let refused = prop.ends_with(".location")
            || prop.ends_with(".directory")
            || REFUSED_CLIENT_PROPERTIES
                .iter()
                .any(|r| prop == *r || (r.ends_with('.') && prop.starts_with(r)));
        if refused {
            return Err(OptionProblem::new(
                Some(key),
                format!(
                    "client property '{prop}' reads files, loads code or reaches other hosts from the server, so a submitted job may not set it (sluice run may)"
                ),
            ));
        }
    }
    Ok(())
}

/// A producer's librdkafka settings: [`client_config`], with keyed records partitioned
/// as Kafka's Java client does (murmur2 of the key; librdkafka's own default differs),
/// so that a topic keyed by a column is partitioned as Sluice's key hash routes that
/// column (`sluice_types::key_hash`). `properties.partitioner` overrides it.
pub fn producer_config(options: &ConnectorOptions) -> ClientConfig {
    let mut config = client_config(options);
    if options.get("properties.partitioner").is_none() {
        config.set("partitioner", "murmur2_random");
    }
    config
}

/// librdkafka settings from `bootstrap.servers` and `properties.*`.
pub fn client_config(options: &ConnectorOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set(
        "bootstrap.servers",
        options.get("bootstrap.servers").unwrap_or_default(),
    );
    for (k, v) in options.iter() {
        if let Some(prop) = k.strip_prefix("properties.") {
            config.set(prop, &v.value);
        }
    }
    config
}
