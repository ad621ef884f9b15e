//! The config file exactly as written: serde types that reject unknown keys.

use indexmap::IndexMap;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `clusters:` name -> how to reach it.
    pub clusters: IndexMap<String, ClusterFile>,
    /// `proxy:` the proxy section.
    pub proxy: Option<ProxyFile>,
    /// `replication:` the replication engine's flows.
    pub replication: Option<ReplicationFile>,
}

/// The `replication:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationFile {
    /// One entry per direction.
    pub flows: Vec<FlowFile>,
    /// Topic on each target cluster where the engine keeps its progress.
    pub state_topic: Option<String>,
}

/// One flow: copy matching topics from `source` to `target`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// Source cluster name.
    pub source: String,
    /// Target cluster name.
    pub target: String,
    /// Regular expressions matched against whole topic names.
    pub topics: Vec<String>,
    /// Regular expressions of topics to leave out.
    pub exclude: Option<Vec<String>>,
    /// Target topic name, `{topic}` standing for the source name.
    pub rename: Option<String>,
    /// Regular expressions of consumer groups whose offsets are translated.
    pub groups: Option<Vec<String>>,
    /// Regular expressions of groups to leave out.
    pub exclude_groups: Option<Vec<String>>,
    /// How often new source topics are looked for.
    pub discovery_interval: Option<String>,
    /// How often source group offsets are read and translated.
    pub group_sync_interval: Option<String>,
    /// How often topic configs and partition counts are compared.
    pub config_sync_interval: Option<String>,
    /// How often progress is written to the state topic.
    pub checkpoint_interval: Option<String>,
    /// Replication factor for topics the engine creates (default: the source's).
    pub replication_factor: Option<i16>,
    /// Producer linger, e.g. `5ms`.
    pub linger: Option<String>,
    /// Largest batch sent to the target, in bytes.
    pub batch_bytes: Option<u64>,
    /// Most records buffered towards the target before reading pauses.
    pub max_buffered_records: Option<u64>,
    /// Most bytes fetched per source partition in one request.
    pub fetch_partition_bytes: Option<u64>,
    /// Longest a source fetch waits for data, e.g. `100ms`.
    pub fetch_wait: Option<String>,
    /// What to do with orphans after a disaster switch: `hold` or `copy`.
    pub orphans: Option<String>,
}

/// One entry under `clusters:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `"host:port"`, `"h1:p1,h2:p2"` or a list of `host:port`.
    pub bootstrap: Bootstrap,
    /// Connect with TLS.
    pub tls: Option<super::security::TlsFile>,
    /// Log in with SASL.
    pub sasl: Option<super::security::SaslFile>,
}

/// Bootstrap servers as one comma-separated string or as a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Bootstrap {
    /// `"h1:9092,h2:9092"`.
    One(String),
    /// `["h1:9092", "h2:9092"]`.
    Many(Vec<String>),
}

/// The `proxy:` section; see docs/configuration.md for each key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Bootstrap listener `host:port`.
    pub listen: String,
    /// Name of the cluster clients are forwarded to.
    pub active: String,
    /// Host advertised to clients.
    pub advertised_host: Option<String>,
    /// First virtual broker port.
    pub broker_port_base: Option<u16>,
    /// Most virtual brokers.
    pub max_brokers: Option<u16>,
    /// Cluster id shown to clients.
    pub cluster_id: Option<String>,
    /// Largest accepted request frame in bytes.
    pub max_frame_bytes: Option<u64>,
    /// Most concurrent client connections.
    pub max_connections: Option<u64>,
    /// Idle connection timeout, e.g. `10m`.
    pub idle_timeout: Option<String>,
    /// First-request timeout, e.g. `10s`.
    pub handshake_timeout: Option<String>,
    /// Upstream connect timeout, e.g. `5s`.
    pub connect_timeout: Option<String>,
    /// In-flight bound at a switch, e.g. `5s`.
    pub switch_drain: Option<String>,
    /// See `ProxyConfig::switch_lag_timeout`.
    pub switch_lag_timeout: Option<String>,
    /// Drain bound at shutdown, e.g. `10s`.
    pub shutdown_grace: Option<String>,
    /// TLS for clients.
    pub tls: Option<super::security::ListenerTlsFile>,
    /// SASL for clients.
    pub sasl: Option<super::security::ListenerSaslFile>,
    /// Most connections from one client address (0: no bound).
    pub max_connections_per_address: Option<u64>,
    /// TLS handshake and SASL authentication bound, e.g. `10s`.
    pub auth_timeout: Option<String>,
}
