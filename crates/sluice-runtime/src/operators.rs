//! The streaming operators, one per file.

pub mod assign;
pub mod filter;
pub mod groups;
pub mod project;
pub mod session_aggregate;
pub mod sort;
pub mod window_aggregate;
