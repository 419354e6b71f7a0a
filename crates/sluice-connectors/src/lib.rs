//! Sluice's connectors: where rows come from and go to. This crate knows every
//! connector's options (so SQL naming an unknown one is refused before the job starts)
//! and builds runtime sources and sinks from a table's options.

mod blackhole;
mod catalog;
mod console;
mod dead_letter;
mod error;
mod file_sink;
mod file_source;
pub mod generator;
pub mod host_metrics;
mod json;
pub mod kafka;
pub mod kafka_sink;
pub mod kafka_txn_sink;
pub mod nexmark;
mod parquet_sink;
pub mod postgres;
pub mod shuffle;

pub use catalog::{Catalog, build_lookup, build_sink, build_source, identity};
pub use error::ConnectorError;
pub use file_source::FileSource;
pub use json::{JsonDecoder, timestamps_as_text};
