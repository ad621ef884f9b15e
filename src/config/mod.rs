//! The configuration file: its model, validation, loading and hot reload.
//!
//! The file is YAML. Parsing rejects unknown keys; validation then turns the
//! raw file into a typed, immutable [`Config`] snapshot that the rest of kflip
//! shares through an `Arc`. Nothing in this module but [`load`] and the
//! watcher does I/O, so validation is tested without files.
//!
//! Layout: [`FileConfig`] (`model`, the file as written) is checked by
//! `validate` (clusters and the proxy section), which hands the
//! `replication:` section to `replication`; both parse values with
//! `values`, which depends on neither. [`watch`] reloads the file.

pub mod acls;
mod model;
pub mod policy;
pub mod registry;
mod replication;
#[cfg(test)]
mod replication_tests;
pub mod secrets;
pub mod security;
mod validate;
mod values;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

pub use model::{FileConfig, SaslFile};
pub use replication::{is_internal, FlowConfig, Pattern, ReplicationConfig};
pub use secrets::{Secret, SecretError, SecretRef};
pub use security::{
    Credentials, ListenerSasl, ListenerTls, Mechanism, OAuthValidation, TlsConfig, TokenRef,
};

/// A cluster's name as written under `clusters:` in the config file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(pub Arc<str>);

impl ClusterName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClusterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ClusterName {
    fn from(s: &str) -> Self {
        ClusterName(Arc::from(s))
    }
}

/// A validated configuration: what kflip runs on until the next valid reload.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The Kafka clusters kflip knows, in file order.
    pub clusters: IndexMap<ClusterName, ClusterConfig>,
    /// The proxy section, if the file has one.
    pub proxy: Option<ProxyConfig>,
    /// The replication section, if the file has one.
    pub replication: Option<ReplicationConfig>,
    /// The admin listener, if the file has one.
    pub admin: Option<AdminConfig>,
    /// The DR policy rules (empty when the file has none).
    pub policy: Arc<policy::Policy>,
    /// The Schema Registry pass-through, if the file has one.
    pub schema_registry: Option<registry::RegistryConfig>,
}

/// The admin HTTP listener.
#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    /// `host:port` to listen on.
    pub listen: String,
    /// How often every cluster's reachability is probed.
    pub probe_interval: std::time::Duration,
}

/// How to reach one Kafka cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterConfig {
    /// Bootstrap addresses as `host:port`, tried in order.
    pub bootstrap: Vec<String>,
    /// TLS, if the cluster's listener uses it.
    pub tls: Option<TlsConfig>,
    /// kflip's own SASL login (and every client's, without a principal
    /// mapping).
    pub sasl: Option<Credentials>,
    /// The cluster's Schema Registry, where the pass-through forwards
    /// while this cluster is active.
    pub schema_registry: Option<registry::RegistryUrl>,
}

/// The proxy's listeners, limits and the cluster it forwards to.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyConfig {
    /// Host part of the bootstrap listener address.
    pub listen_host: String,
    /// Port of the bootstrap listener; 0 picks a free port.
    pub listen_port: u16,
    /// The cluster that clients are forwarded to: the one line to flip.
    pub active: ClusterName,
    /// Host name advertised to clients for every virtual broker.
    pub advertised_host: String,
    /// First virtual broker port; `None` means "after the bootstrap port", or
    /// free ports when the bootstrap port is 0.
    pub broker_port_base: Option<u16>,
    /// How many virtual brokers (and so listeners) kflip may open.
    pub max_brokers: u16,
    /// The cluster id every client sees, whichever cluster is active.
    pub cluster_id: String,
    /// Largest request frame accepted from a client, in bytes.
    pub max_frame_bytes: usize,
    /// Most client connections served at once; more are refused.
    pub max_connections: usize,
    /// A client connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// A new client connection must send its first request within this time.
    pub handshake_timeout: Duration,
    /// How long connecting to an upstream broker may take.
    pub connect_timeout: Duration,
    /// On a switch, how long in-flight requests get to finish before the old
    /// connection is closed.
    pub switch_drain: Duration,
    /// On a planned switch, how long kflip waits for replication from the
    /// old cluster to catch up before it flips anyway and reports the gap.
    pub switch_lag_timeout: Duration,
    /// On SIGTERM/SIGINT, how long connections get to drain.
    pub shutdown_grace: Duration,
    /// TLS for clients.
    pub tls: Option<ListenerTls>,
    /// SASL for clients: when set, a connection must authenticate before
    /// any request but ApiVersions and SASL's own.
    pub sasl: Option<ListenerSasl>,
    /// Most connections from one client address; 0 for no bound.
    pub max_connections_per_address: usize,
    /// How long a client has for the TLS handshake and for SASL.
    pub auth_timeout: Duration,
}

impl Config {
    /// Validates a raw file into a snapshot.
    pub fn from_file(file: FileConfig) -> Result<Config, ConfigError> {
        validate::validate(file)
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            message: e.to_string(),
        })?;
        Config::from_file(file)
    }

    /// The proxy section, or an error naming it when the file has none.
    pub fn require_proxy(&self) -> Result<&ProxyConfig, ConfigError> {
        self.proxy.as_ref().ok_or_else(|| ConfigError::Invalid {
            key: "proxy".into(),
            message: "is required to run the proxy".into(),
        })
    }

    /// The cluster a name refers to. Validation guarantees `proxy.active` exists.
    pub fn cluster(&self, name: &ClusterName) -> Option<&ClusterConfig> {
        self.clusters.get(name)
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown or mistyped keys.
    #[error("{message}")]
    Parse {
        /// serde's message, which names the key and position.
        message: String,
    },
    /// A key has a value that kflip cannot use.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `proxy.active`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Config::parse(&text)
}
