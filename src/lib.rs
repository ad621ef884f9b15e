//! kflip: a Kafka-protocol proxy that moves every client to the other
//! cluster when one line of its config changes.
//!
//! # Layout
//! - [`codec`]: the trust boundary for client bytes: framing, request
//!   headers, one hand-written walker per API family, and the records of a
//!   batch. Nothing else reads what a client sends.
//! - [`protocol`]: the API policy and versions, the rewrite of broker
//!   addresses and node ids in responses, and the filter chain
//!   ([`protocol::filters`]): kflip's behaviour per API key.
//! - [`failover`]: the switch (a state machine with one deadline for its
//!   hold), the gate every session starts through, what is remembered
//!   about clients across a switch, and the one interface to the engine.
//! - [`proxy`]: listeners, connections and their two loops, the address
//!   rewrite, and what the proxy asks clusters itself.
//! - [`cluster`]: the one way to reach a cluster (connections, librdkafka
//!   configs) that the proxy, kflip's own client and the engine share.
//! - [`kafka`]: kflip's own minimal client for probing clusters and group
//!   and transaction admin.
//! - [`routing`]: the virtual topology clients see, mapped onto the active
//!   cluster.
//! - [`replication`]: the engine: flows, topic sync, record copy,
//!   checkpoints, group offset translation.
//! - [`inventory`]: what each client has been seen doing (software,
//!   topics, groups, acks, idempotence, resets), for `kflip clients`, the
//!   pre-switch report and the DR policy guard
//!   ([`protocol::filters::clients`]).
//! - [`offsets`]: the source-to-target offset map and its translation.
//! - [`auth`]: SASL mechanics, no sockets: secrets, SCRAM, PLAIN, the
//!   users file of salted credentials, OAUTHBEARER.
//! - [`registry`]: the Schema Registry pass-through: HTTP forwarded to
//!   the active cluster's registry, through the same switch gate.
//! - [`config`]: the YAML file's model, validation, and hot reload.
//! - [`error`]: the proxy's error type (which side failed, whether a retry
//!   helps, the Kafka error code).
//! - [`cli`]: the `kflip` command line.
//! - `fuzzing` (hidden): the entry points of the fuzz targets in `fuzz/`
//!   (docs/fuzzing.md).
//!
//! A request flows `proxy::listeners` -> `proxy::connection` (a session
//! started through `failover::gate`) -> `proxy::loops` -> `codec` (parsed)
//! -> `protocol::filters` -> the upstream broker, with `routing` deciding
//! which broker; its response comes back through the filter that forwarded
//! it and `proxy::addresses`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod error;
pub mod failover;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod kafka;
pub mod memory;
pub mod offsets;
pub mod protocol;
pub mod proxy;
pub mod registry;
pub mod replication;
pub mod routing;
