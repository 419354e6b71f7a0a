//! Sluice's streaming runtime: the operator trait, window operators built on
//! DataFusion's accumulators, watermark tracking, and the task graph that runs a job.

mod error;
mod job;
mod live;
mod metrics;
mod operator;
pub mod operators;
pub mod output;
mod partition_local;
mod plan;
mod sink;
mod source;
mod topology;

pub use error::{Result, RuntimeError};
pub use job::{JobHandle, run_job};
pub use live::{LiveRows, LiveSubscription, MAX_WATCHERS, TooManyWatchers, WATCHER_QUEUE};
pub use metrics::{
    BadRecord, CheckpointStats, CommitStats, JobMetrics, MetricsDetail, MetricsSnapshot,
    TaskCounters, TaskFigures,
};
pub use operator::{Chain, Collector, Operator, Snapshot};
pub use partition_local::{NotPartitionLocal, check_partition_local};
pub use plan::{
    AggregatePlan, AssignSpec, CheckpointSettings, Consumer, EdgeSpec, FirstRowPlan, JobOutcome,
    JobSpec, JoinKind, JoinPlan, JoinTime, Lookup, LookupFactory, LookupSpec, NodeOp, NodeSpec,
    Producer, SessionPlan, SinkSpec, SourceSpec, Step, TopNPlan, WindowKind,
};
pub use sink::{
    CommitOnCheckpoint, EpochBuffer, EpochStore, PendingEpochs, Sink, SinkState, not_committed,
};
pub use source::{Positions, Source, SourcePoll, SourceWatermarks, WatermarkGenerator};
pub use topology::{Topology, TopologyEdge, TopologyNode};
