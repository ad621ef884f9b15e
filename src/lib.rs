//! kflip: a Kafka-protocol proxy that moves every client to the other
//! cluster when one line of its config changes.
//!
//! # Layout
//! - [`cluster`]: the one way to reach a cluster (connections, librdkafka
//!   configs) that the proxy, kflip's own client and the engine share.
//! - [`config`]: the YAML file's model, validation, and hot reload.
//! - [`protocol`]: framing, request headers, the API policy, and one rewrite
//!   filter per API key that carries broker addresses or node ids.
//! - [`routing`]: the virtual topology clients see, mapped onto the active
//!   cluster.
//! - [`proxy`]: listeners, connections, the switch between clusters.
//! - [`replication`]: the engine: flows, topic sync, record copy,
//!   checkpoints, group offset translation.
//! - [`kafka`]: kflip's own minimal client for probing clusters.
//! - [`offsets`]: the source-to-target offset map and its translation.
//! - [`cli`]: the `kflip` command line.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`
//!   (docs/fuzzing.md).
//!
//! Data flows `proxy::listeners` -> `proxy::connection` -> (frames through
//! `protocol`) -> upstream broker, with `routing` deciding which broker.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod kafka;
pub mod offsets;
pub mod protocol;
pub mod proxy;
pub mod replication;
pub mod routing;
