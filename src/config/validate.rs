//! Turns a raw [`FileConfig`] into a [`Config`], naming the key of every error.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::model::{Bootstrap, FileConfig, ProxyFile};
use super::values::{duration, invalid, split_host_port};
use super::{ClusterConfig, ClusterName, Config, ConfigError, ProxyConfig};

pub(super) fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    if file.clusters.is_empty() {
        return Err(invalid("clusters", "must name at least one cluster"));
    }
    let mut clusters = IndexMap::new();
    for (name, cluster) in file.clusters {
        let key = format!("clusters.{name}");
        check_name(&key, &name)?;
        let list: Vec<String> = match cluster.bootstrap {
            Bootstrap::One(s) => s.split(',').map(|a| a.trim().to_string()).collect(),
            Bootstrap::Many(v) => v.into_iter().map(|a| a.trim().to_string()).collect(),
        };
        let bootstrap_key = format!("{key}.bootstrap");
        if list.is_empty() || list.iter().all(|a| a.is_empty()) {
            return Err(invalid(bootstrap_key, "must list at least one host:port"));
        }
        for addr in &list {
            split_host_port(&bootstrap_key, addr)?;
        }
        let tls = match cluster.tls {
            Some(t) => Some(super::security::tls(&format!("{key}.tls"), t)?),
            None => None,
        };
        let sasl = match cluster.sasl {
            Some(s) => Some(super::security::credentials(&format!("{key}.sasl"), s)?),
            None => None,
        };
        if tls.is_none()
            && sasl
                .as_ref()
                .is_some_and(|s| s.mechanism == super::Mechanism::Plain)
        {
            tracing::warn!(cluster = %name, "SASL PLAIN without TLS sends the password in clear; set clusters.{name}.tls");
        }
        let schema_registry = match cluster.schema_registry {
            Some(u) => Some(super::registry::url(&format!("{key}.schema_registry"), &u)?),
            None => None,
        };
        clusters.insert(
            ClusterName::from(name.as_str()),
            ClusterConfig {
                bootstrap: list,
                tls,
                sasl,
                schema_registry,
            },
        );
    }
    let proxy = match file.proxy {
        Some(p) => Some(validate_proxy(p, &clusters)?),
        None => None,
    };
    let replication = match file.replication {
        Some(r) => Some(super::replication::validate_replication(r, &clusters)?),
        None => None,
    };
    let admin = match file.admin {
        Some(a) => {
            split_host_port("admin.listen", &a.listen)?;
            let probe_interval = duration(
                "admin.probe_interval",
                a.probe_interval,
                Duration::from_secs(5),
            )?;
            if probe_interval < Duration::from_millis(100) {
                return Err(invalid("admin.probe_interval", "must be at least 100ms"));
            }
            Some(super::AdminConfig {
                listen: a.listen,
                probe_interval,
            })
        }
        None => None,
    };
    let policy = match file.policy {
        Some(rules) => super::policy::validate_policy(rules)?,
        None => super::policy::Policy::default(),
    };
    let schema_registry =
        super::registry::section(file.schema_registry, proxy.as_ref(), &clusters)?;
    Ok(Config {
        clusters,
        proxy,
        replication,
        admin,
        policy: Arc::new(policy),
        schema_registry,
    })
}

fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            "cluster names use only letters, digits, '-', '_' and '.'",
        ))
    }
}

fn validate_proxy(
    p: ProxyFile,
    clusters: &IndexMap<ClusterName, ClusterConfig>,
) -> Result<ProxyConfig, ConfigError> {
    let (listen_host, listen_port) = split_host_port("proxy.listen", &p.listen)?;
    let active = ClusterName::from(p.active.as_str());
    if !clusters.contains_key(&active) {
        let known: Vec<&str> = clusters.keys().map(|c| c.as_str()).collect();
        return Err(invalid(
            "proxy.active",
            format!(
                "names cluster {:?}, which is not under clusters (known: {})",
                p.active,
                known.join(", ")
            ),
        ));
    }
    let advertised_host = match p.advertised_host {
        Some(h) if h.trim().is_empty() => {
            return Err(invalid("proxy.advertised_host", "must not be empty"))
        }
        Some(h) => h.trim().to_string(),
        None if listen_host == "0.0.0.0" || listen_host == "::" => {
            return Err(invalid(
                "proxy.advertised_host",
                format!(
                    "is required when proxy.listen binds all interfaces ({}); \
                     set it to the name clients use to reach this proxy",
                    p.listen
                ),
            ))
        }
        None => listen_host.clone(),
    };
    let max_brokers = p.max_brokers.unwrap_or(32);
    if max_brokers == 0 {
        return Err(invalid("proxy.max_brokers", "must be at least 1"));
    }
    if let Some(base) = p.broker_port_base {
        if base == 0 || u32::from(base) + u32::from(max_brokers) > 65536 {
            return Err(invalid(
                "proxy.broker_port_base",
                format!("{base} + max_brokers {max_brokers} does not fit in 1-65535"),
            ));
        }
    } else if listen_port != 0 && u32::from(listen_port) + u32::from(max_brokers) > 65535 {
        return Err(invalid(
            "proxy.listen",
            format!(
                "virtual broker ports after {listen_port} would pass 65535; \
                 set proxy.broker_port_base or lower proxy.max_brokers"
            ),
        ));
    }
    let max_frame_bytes = p.max_frame_bytes.unwrap_or(100 * 1024 * 1024);
    if !(1024..=i32::MAX as u64).contains(&max_frame_bytes) {
        return Err(invalid(
            "proxy.max_frame_bytes",
            format!("{max_frame_bytes} is outside 1024..=2147483647"),
        ));
    }
    let max_connections = p.max_connections.unwrap_or(10_000);
    if max_connections == 0 {
        return Err(invalid("proxy.max_connections", "must be at least 1"));
    }
    let cluster_id = p.cluster_id.unwrap_or_else(|| "kflip".to_string());
    if cluster_id.is_empty() {
        return Err(invalid("proxy.cluster_id", "must not be empty"));
    }
    let positive = |key: &str, d: Duration| {
        if d.is_zero() {
            Err(invalid(key, "must be greater than zero"))
        } else {
            Ok(d)
        }
    };
    Ok(ProxyConfig {
        listen_host,
        listen_port,
        active,
        advertised_host,
        broker_port_base: p.broker_port_base,
        max_brokers,
        cluster_id,
        max_frame_bytes: max_frame_bytes as usize,
        max_connections: max_connections as usize,
        idle_timeout: positive(
            "proxy.idle_timeout",
            duration(
                "proxy.idle_timeout",
                p.idle_timeout,
                Duration::from_secs(600),
            )?,
        )?,
        handshake_timeout: positive(
            "proxy.handshake_timeout",
            duration(
                "proxy.handshake_timeout",
                p.handshake_timeout,
                Duration::from_secs(10),
            )?,
        )?,
        connect_timeout: positive(
            "proxy.connect_timeout",
            duration(
                "proxy.connect_timeout",
                p.connect_timeout,
                Duration::from_secs(5),
            )?,
        )?,
        switch_drain: duration("proxy.switch_drain", p.switch_drain, Duration::from_secs(5))?,
        switch_lag_timeout: duration(
            "proxy.switch_lag_timeout",
            p.switch_lag_timeout,
            Duration::from_secs(10),
        )?,
        shutdown_grace: duration(
            "proxy.shutdown_grace",
            p.shutdown_grace,
            Duration::from_secs(10),
        )?,
        tls: match p.tls {
            Some(t) => Some(super::security::listener_tls(t)?),
            None => None,
        },
        sasl: match p.sasl {
            Some(s) => Some(super::security::listener_sasl(s)?),
            None => None,
        },
        max_connections_per_address: p.max_connections_per_address.unwrap_or(0) as usize,
        auth_timeout: positive(
            "proxy.auth_timeout",
            duration(
                "proxy.auth_timeout",
                p.auth_timeout,
                Duration::from_secs(10),
            )?,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MINIMAL: &str = r#"
clusters:
  dc1: { bootstrap: "127.0.0.1:19092" }
  dc2: { bootstrap: "127.0.0.1:29092" }
proxy:
  listen: "127.0.0.1:9092"   # bootstrap listener
  active: dc1                # the one line to flip
"#;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_form_is_accepted_with_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        let p = c.proxy.unwrap();
        assert_eq!(p.active.as_str(), "dc1");
        assert_eq!(p.listen_port, 9092);
        assert_eq!(p.advertised_host, "127.0.0.1");
        assert_eq!(p.cluster_id, "kflip");
        assert_eq!(c.clusters.len(), 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&MINIMAL.replace("active: dc1", "active: dc1\n  actve: dc2"));
        assert!(e.contains("actve"), "{e}");
        assert!(e.contains("proxy"), "{e}");
    }

    #[test]
    fn active_must_name_a_cluster() {
        let e = err(&MINIMAL.replace("active: dc1", "active: dc3"));
        assert!(e.starts_with("proxy.active:"), "{e}");
        assert!(e.contains("dc3") && e.contains("dc1, dc2"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (from, to, key) in [
            ("127.0.0.1:9092\"", "127.0.0.1:99999\"", "proxy.listen"),
            ("127.0.0.1:19092\"", "nohost\"", "clusters.dc1.bootstrap"),
            (
                "active: dc1",
                "active: dc1\n  idle_timeout: soon",
                "proxy.idle_timeout",
            ),
            (
                "active: dc1",
                "active: dc1\n  max_frame_bytes: 10",
                "proxy.max_frame_bytes",
            ),
            (
                "127.0.0.1:9092\"",
                "0.0.0.0:9092\"",
                "proxy.advertised_host",
            ),
        ] {
            let e = err(&MINIMAL.replacen(from, to, 1));
            assert!(e.starts_with(key), "{key}: {e}");
        }
    }

    #[test]
    fn bootstrap_accepts_list_and_commas() {
        let c = Config::parse(
            "clusters:\n  a: { bootstrap: [\"h1:1\", \"h2:2\"] }\n  b: { bootstrap: \"h3:3, h4:4\" }\n",
        )
        .unwrap();
        assert_eq!(c.clusters[0].bootstrap, vec!["h1:1", "h2:2"]);
        assert_eq!(c.clusters[1].bootstrap, vec!["h3:3", "h4:4"]);
        assert!(c.proxy.is_none());
    }

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        for text in ["", "[", "clusters: 5", "\u{0}\u{1}", "proxy: {}"] {
            assert!(Config::parse(text).is_err(), "{text:?}");
        }
    }
}
