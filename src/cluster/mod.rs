//! One way to reach a cluster.
//!
//! Every connection kflip makes to a Kafka cluster starts here: the proxy's
//! upstream sessions, kflip's own requests (the `kafka` module) and the
//! replication engine's librdkafka clients. A cluster's settings
//! ([`crate::config::ClusterConfig`]: bootstrap today, TLS and SASL next)
//! are read in this module only, so a new transport or login is written
//! once:
//! - [`connect`]: a connection to the first address that answers, with
//!   TLS when the cluster uses it ([`connect::connect`]);
//! - [`stream`]: the one stream type for plain and TLS connections;
//! - [`splice`]: moving bytes between two plain sockets in the kernel;
//! - [`tls`]: rustls configurations built from PEM files, rebuilt when a
//!   file changes;
//! - [`rdkafka`]: the librdkafka client config for a cluster;
//! - [`oauth`]: bearer tokens for OAUTHBEARER logins, one cached provider
//!   per source.
//!
//! The SASL login that follows a connect speaks Kafka requests, so it lives
//! with kflip's client (`kafka::sasl`).

pub mod connect;
pub mod oauth;
pub mod rdkafka;
pub mod splice;
pub mod stream;
pub mod tls;

pub use connect::{connect, connect_any, ConnectError};
pub use stream::Stream;
