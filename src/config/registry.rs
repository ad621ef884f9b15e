//! The `schema_registry:` section (the HTTP pass-through that follows
//! `proxy.active`) and each cluster's `schema_registry` URL.

use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use super::values::{duration, invalid, split_host_port};
use super::{ClusterConfig, ClusterName, ConfigError, ProxyConfig};

/// `schema_registry:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// `host:port` of the HTTP pass-through.
    pub listen: String,
    /// Bound on one forwarded request, e.g. `30s`.
    pub request_timeout: Option<String>,
}

/// The Schema Registry pass-through: applications talk to it, and it
/// forwards to the registry of the active cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryConfig {
    /// `host:port` to listen on (a change needs a restart).
    pub listen: String,
    /// How long one request may take: reading the client's body, and the
    /// exchange with the registry (the wait at a switch's hold is bounded
    /// by the hold's own deadline).
    pub request_timeout: Duration,
}

/// A cluster's registry, `http://host:port[/path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryUrl {
    /// `host:port` to connect to (port 80 if the URL has none).
    pub authority: String,
    /// Path prefix put before every forwarded path, without a trailing
    /// slash (empty for none).
    pub base_path: String,
}

impl std::fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.base_path)
    }
}

/// Parses `clusters.<name>.schema_registry`.
pub(super) fn url(key: &str, text: &str) -> Result<RegistryUrl, ConfigError> {
    let text = text.trim();
    let rest = match text.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => {
            return Err(invalid(
                key,
                format!("{text:?}: https is not supported by the pass-through; use an http:// URL (a TLS sidecar or a plain listener of the registry)"),
            ))
        }
        _ => return Err(invalid(key, format!("{text:?} is not an http://host:port URL"))),
    };
    if rest.contains(['?', '#', '@']) {
        return Err(invalid(
            key,
            format!("{text:?}: no query, fragment or credentials in the URL; clients' own headers (Authorization) are passed on"),
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    split_host_port(key, &authority)?;
    Ok(RegistryUrl {
        authority,
        base_path: path.trim_end_matches('/').to_string(),
    })
}

/// Validates `schema_registry:` against the proxy section and the clusters'
/// URLs: the active cluster must name its registry.
pub(super) fn section(
    file: Option<RegistryFile>,
    proxy: Option<&ProxyConfig>,
    clusters: &IndexMap<ClusterName, ClusterConfig>,
) -> Result<Option<RegistryConfig>, ConfigError> {
    let Some(file) = file else {
        return Ok(None);
    };
    split_host_port("schema_registry.listen", &file.listen)?;
    let request_timeout = duration(
        "schema_registry.request_timeout",
        file.request_timeout,
        Duration::from_secs(30),
    )?;
    if request_timeout < Duration::from_millis(100) {
        return Err(invalid(
            "schema_registry.request_timeout",
            "must be at least 100ms",
        ));
    }
    let Some(proxy) = proxy else {
        return Err(invalid(
            "schema_registry",
            "needs a proxy: section (the pass-through follows proxy.active)",
        ));
    };
    let active = &proxy.active;
    if clusters
        .get(active)
        .is_none_or(|c| c.schema_registry.is_none())
    {
        return Err(invalid(
            format!("clusters.{active}.schema_registry"),
            format!("is required: schema_registry.listen forwards to the registry of the active cluster ({active}), which names none"),
        ));
    }
    Ok(Some(RegistryConfig {
        listen: file.listen,
        request_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    const BASE: &str = "clusters:\n  dc1: { bootstrap: \"h:1\", schema_registry: \"http://r1:8081\" }\n  dc2: { bootstrap: \"h:2\" }\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\nschema_registry:\n  listen: \"127.0.0.1:8085\"\n";

    #[test]
    fn urls_and_the_section_are_validated_naming_the_key() {
        let c = Config::parse(BASE).unwrap();
        let r = c.clusters.values().next().unwrap().schema_registry.clone();
        assert_eq!(r.unwrap().to_string(), "http://r1:8081");
        assert_eq!(
            c.schema_registry.unwrap().request_timeout,
            std::time::Duration::from_secs(30)
        );

        let e = Config::parse(&BASE.replace("active: dc1", "active: dc2")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("clusters.dc2.schema_registry: is required"),
            "{e}"
        );
        for (bad, why) in [
            ("ftp://r1:8081", "not an http"),
            ("https://r1:8081", "https is not supported"),
            ("http://u:p@r1:8081", "credentials"),
            ("http://r1:99999", "valid port"),
        ] {
            let e = Config::parse(&BASE.replace("http://r1:8081", bad)).unwrap_err();
            let e = e.to_string();
            assert!(
                e.starts_with("clusters.dc1.schema_registry:") && e.contains(why),
                "{e}"
            );
        }
        let no_proxy = "clusters:\n  dc1: { bootstrap: \"h:1\", schema_registry: \"http://r1\" }\nschema_registry:\n  listen: \"127.0.0.1:8085\"\n";
        let e = Config::parse(no_proxy).unwrap_err().to_string();
        assert!(e.contains("needs a proxy"), "{e}");
    }

    #[test]
    fn a_url_without_port_gets_80_and_keeps_its_path() {
        let u = super::url("k", "http://reg.example/apis/ccompat/v7/").unwrap();
        assert_eq!(u.authority, "reg.example:80");
        assert_eq!(u.base_path, "/apis/ccompat/v7");
        let u = super::url("k", "http://[::1]").unwrap();
        assert_eq!(u.authority, "[::1]:80");
    }
}
