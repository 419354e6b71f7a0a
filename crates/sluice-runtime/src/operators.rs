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

/// The hasher of operator state by key (row-encoded bytes, ids): foldhash, seeded at
/// random per process, hashes a short key several times faster than the standard
/// library's SipHash, which showed in the profile of every keyed operator.
pub type StateHasher = foldhash::fast::RandomState;

/// The hash map that holds operator state by key (the top N keeps an `IndexMap` with the
/// same hasher, to reach changed keys by their place).
pub type StateMap<K, V> = std::collections::HashMap<K, V, StateHasher>;
