//! The streaming operators, one per file.

pub mod assign;
pub mod filter;
pub mod first_row;
pub mod groups;
pub mod join_state;
pub mod lookup_join;
pub mod project;
pub mod retracting_groups;
pub mod running_groups;
pub mod session_aggregate;
pub mod session_assign;
pub(crate) mod sessions;
pub mod sort;
pub mod stream_join;
pub mod top_n;
pub mod updating_aggregate;
pub mod window_aggregate;
pub mod window_join;
