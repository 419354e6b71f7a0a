//! The `sluice` binary's library: turning a planned job into a running one, and the
//! progress display. The CLI in `main.rs` is a thin shell over this.

pub mod checkpoints;
pub mod client;
pub mod demo;
pub mod distributed;
pub mod engine;
pub mod generate;
pub mod progress;
pub mod server;

pub use engine::{
    JobRun, RunOptions, plan, plan_with_catalog, plan_with_catalog_env, plan_with_env,
    plan_with_rules, run_sql,
};
