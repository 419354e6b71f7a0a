//! Shared vocabulary of Sluice: time and progress types, the messages that flow
//! between tasks, connector options and error kinds. No I/O lives here.

mod error;
mod message;
mod options;
mod time;

pub use error::{ErrorKind, Position};
pub use message::Message;
pub use options::{ConnectorCatalog, ConnectorOptions, OptionProblem, OptionValue, TableRole};
pub use time::{Epoch, Watermark, format_millis};
