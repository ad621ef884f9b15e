//! The one place librdkafka client configs are built from a cluster's
//! settings.

use rdkafka::ClientConfig;

use crate::config::ClusterConfig;

/// A librdkafka config that reaches `cluster`, naming itself `client_id`.
/// Callers add their role's settings (group, acks, ...) on top.
pub fn client_config(cluster: &ClusterConfig, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cluster.bootstrap.join(","))
        .set("client.id", client_id);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bootstrap_address_is_passed_on() {
        let cluster = ClusterConfig {
            bootstrap: vec!["a:9092".into(), "b:9093".into()],
        };
        let c = client_config(&cluster, "kflip-engine");
        assert_eq!(c.get("bootstrap.servers"), Some("a:9092,b:9093"));
        assert_eq!(c.get("client.id"), Some("kflip-engine"));
    }
}
