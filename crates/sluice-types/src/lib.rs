//! Shared vocabulary of Sluice: time and progress types, the messages that flow
//! between tasks, connector options and error kinds. No I/O lives here.

pub mod changelog;
mod error;
pub mod key_hash;
mod message;
mod options;
mod redact;
mod retry;
mod rules;
mod time;

pub use changelog::{OP_COLUMN, RowKind};
pub use error::{ErrorKind, Position};
pub use message::Message;
pub use options::{
    ConnectorCatalog, ConnectorOptions, FixedSchema, OptionProblem, OptionValue, TableRole,
};
pub use redact::redact_secrets;
pub use retry::{Backoff, Interrupt};
pub use rules::{DEFAULT_ALLOWED_ENV, DEFAULT_MAX_WINDOWS_PER_ROW, JobRules};
pub use time::{Epoch, Watermark, format_millis, now_ms, parse_interval_text};
