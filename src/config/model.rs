//! The config file exactly as written: serde types that reject unknown keys.

use indexmap::IndexMap;
use std::path::PathBuf;

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
    /// `admin:` the HTTP listener for metrics, status and probes.
    pub admin: Option<AdminFile>,
    /// `policy:` DR rules checked on client requests.
    pub policy: Option<Vec<super::policy::RuleFile>>,
    /// `schema_registry:` the HTTP pass-through to the active cluster's
    /// Schema Registry.
    pub schema_registry: Option<super::registry::RegistryFile>,
}

/// The `admin:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// `host:port` of the HTTP listener (`/metrics`, `/status`, `/healthz`,
    /// `/readyz`).
    pub listen: String,
    /// How often every cluster's reachability is probed (default `5s`).
    pub probe_interval: Option<String>,
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
    /// Bytes a source fetch waits for (at most `fetch_wait`) before the
    /// broker answers.
    pub fetch_min_bytes: Option<u64>,
    /// What to do with orphans after a disaster switch: `hold` or `copy`.
    pub orphans: Option<String>,
    /// Keep the ACLs of the flow's topics and groups on the target.
    pub acls: Option<bool>,
    /// SCRAM users whose credentials the flow sets on the target.
    pub users: Option<Vec<ScramUserFile>>,
    /// Several kflip instances share the flow: its partitions are split
    /// through a consumer group on the source.
    pub shared: Option<bool>,
    /// How long a sharing instance may be silent before its partitions go
    /// to the others, e.g. `10s`.
    pub session_timeout: Option<String>,
    /// How often a shared flow commits its copies, e.g. `100ms`.
    pub commit_interval: Option<String>,
}

/// One entry of a flow's `users:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramUserFile {
    /// The SCRAM user name (the principal `User:<name>`).
    pub name: String,
    /// A file holding the user's password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the user's password.
    pub password_env: Option<String>,
}

/// One entry under `clusters:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `"host:port"`, `"h1:p1,h2:p2"` or a list of `host:port`.
    pub bootstrap: Bootstrap,
    /// Connect with TLS.
    pub tls: Option<TlsFile>,
    /// Log in with SASL.
    pub sasl: Option<SaslFile>,
    /// The cluster's Schema Registry, `http://host:port[/path]`.
    pub schema_registry: Option<String>,
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
    pub tls: Option<ListenerTlsFile>,
    /// SASL for clients.
    pub sasl: Option<ListenerSaslFile>,
    /// Most connections from one client address (0: no bound).
    pub max_connections_per_address: Option<u64>,
    /// TLS handshake and SASL authentication bound, e.g. `10s`.
    pub auth_timeout: Option<String>,
}

/// `tls:` of a cluster: kflip connects with TLS.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM CA bundle to trust; the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for mTLS (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Name to verify the brokers' certificates against (and send as SNI),
    /// instead of the host kflip connects to.
    pub server_name: Option<String>,
}

/// `sasl:` of a cluster, or one principal's login on a cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslFile {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` or `OAUTHBEARER`.
    pub mechanism: String,
    /// The user name (PLAIN and SCRAM).
    pub username: Option<String>,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// OAUTHBEARER: a file holding the token, re-read when it changes.
    pub token_file: Option<PathBuf>,
    /// OAUTHBEARER: the token endpoint (client-credentials grant).
    pub token_endpoint: Option<String>,
    /// OAUTHBEARER: the client id at the token endpoint.
    pub client_id: Option<String>,
    /// OAUTHBEARER: a file holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// OAUTHBEARER: an environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// OAUTHBEARER: the scope to ask for.
    pub scope: Option<String>,
}

/// `proxy.tls:` clients connect to kflip with TLS.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsFile {
    /// PEM certificate chain kflip presents.
    pub cert_file: PathBuf,
    /// Its PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle: with it, clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

/// `proxy.sasl:` clients authenticate to kflip.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSaslFile {
    /// Mechanisms offered, e.g. `[SCRAM-SHA-512, PLAIN]`.
    pub mechanisms: Vec<String>,
    /// Users and their salted keys (PLAIN and SCRAM); hot-reloaded.
    pub users_file: Option<PathBuf>,
    /// OAUTHBEARER validation.
    pub oauthbearer: Option<OAuthFile>,
    /// Principal -> per-cluster logins; hot-reloaded. Without it, every
    /// client's sessions log in with the cluster's own `sasl:`.
    pub principals_file: Option<PathBuf>,
}

/// `proxy.sasl.oauthbearer:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthFile {
    /// The JWKS file whose keys sign valid tokens.
    pub jwks_file: PathBuf,
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
    /// The claim that names the principal (default `sub`).
    pub principal_claim: Option<String>,
}
