//! The replication engine: flows copy topics from one cluster to another,
//! keep an exact offset map, and translate consumer-group offsets.
//!
//! Layout:
//! - `engine`: [`Engine`], the running flows, following config reloads, and
//!   what the proxy asks of them; [`switchover`]: its part in a switch;
//!   `registry`: the flows as the flows see each other;
//! - [`flow`]: one flow's thread, from its clusters to its retry loop, and
//!   the map of its parts: `runner` (clients and loop), `copy`, `deliver`
//!   (librdkafka callbacks), `checkpoints` (the state topic), `scan`
//!   (reading a partition to its end, recovery from the target), `writer`
//!   (kflip's own idempotent producer of an unshared flow's copies);
//! - `assign`: topic discovery, creation, partition assignment, config sync;
//! - `shrink`: a source log that ends before what was copied, or a topic
//!   with another id: truncation or recreation, told apart by topic id;
//! - [`orphans`]: records a disaster left uncopied;
//! - [`topics`]: admin operations and the durability rules;
//! - [`provenance`]: the origin header and the loop check (pure);
//! - [`state`]: per-partition state shared with delivery callbacks, lag;
//! - [`groups`]: group offset translation;
//! - [`acls`]: ACLs and SCRAM users of the flow's topics and groups kept
//!   on the target (`acls: true`, `users:`);
//! - `compat`: each workaround for a broker other than Apache Kafka, named.
//!
//! Flows come from the config's `replication.flows` and follow hot reloads:
//! a changed flow is stopped (after its final checkpoint) and started again,
//! which resumes exactly where it stopped.

pub mod acls;
mod assign;
mod checkpoints;
mod chunk;
mod clients;
mod compat;
mod copy;
mod deliver;
mod engine;
pub mod error;
mod fetcher;
pub mod flow;
pub mod groups;
mod handover;
mod lag;
mod membership;
pub mod orphans;
pub mod provenance;
mod registry;
mod remote;
mod runner;
mod scan;
mod shrink;
mod source;
pub mod state;
pub mod switchover;
pub mod topics;
mod txn;
mod writer;

pub use engine::{Engine, FlowLag};
pub use lag::log_lag;
pub use registry::{Registry, Slot};
