//! Sluice's job server: jobs submitted as SQL run side by side in one process, each
//! with its own checkpoints; a REST API under `/api/v1` (described by an OpenAPI
//! document at `/api/v1/openapi.json`) manages them, and `/metrics` exposes their
//! figures to Prometheus; live results stream as server-sent events, and a web console
//! (a page at `/`, using only that API) shows it all in a browser. The jobs themselves are started by a [`Launcher`] that the
//! binary provides, which keeps this crate free of connectors.

pub mod api;
pub mod catalog;
mod console;
pub mod error;
mod live;
pub mod manager;
pub mod openapi;
pub mod prometheus;

pub use api::{ServerConfig, router, serve};
pub use error::ServerError;
pub use manager::{
    JobFailure, JobInfo, JobState, Launcher, Manager, RestartPolicy, Restore, Running, SqlProblem,
    StartRequest,
};
