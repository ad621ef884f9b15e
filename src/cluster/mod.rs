//! One way to reach a cluster.
//!
//! Every connection kflip makes to a Kafka cluster starts here: the proxy's
//! upstream sessions, kflip's own requests (the `kafka` module) and the
//! replication engine's librdkafka clients. A cluster's settings
//! ([`crate::config::ClusterConfig`]: bootstrap today, TLS and SASL next)
//! are read in this module only, so a new transport or login is written
//! once:
//! - [`connect`]: a TCP connection to the first address that answers;
//! - [`rdkafka`]: the librdkafka client config for a cluster.

pub mod connect;
pub mod rdkafka;

pub use connect::{connect_any, ConnectError};
