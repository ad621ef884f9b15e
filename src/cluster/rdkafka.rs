//! The one place librdkafka client configs are built from a cluster's
//! settings: bootstrap, TLS and SASL.

use rdkafka::ClientConfig;

use crate::config::{ClusterConfig, Mechanism, SecretError};

/// A librdkafka config that reaches `cluster`, naming itself `client_id`.
/// Callers add their role's settings (group, acks, ...) on top. Fails only
/// when a secret cannot be read; the error names where it was looked for.
///
/// OAUTHBEARER logins are not passed to librdkafka (it takes tokens
/// through a callback); a cluster that needs one is refused here with a
/// clear message until the engine's clients implement it.
pub fn client_config(
    cluster: &ClusterConfig,
    client_id: &str,
) -> Result<ClientConfig, SecretError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cluster.bootstrap.join(","))
        .set("client.id", client_id);
    let protocol = match (&cluster.tls, &cluster.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &cluster.tls {
        if let Some(ca) = &tls.ca_file {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        if let Some((cert, key)) = &tls.client_cert {
            c.set("ssl.certificate.location", cert.display().to_string())
                .set("ssl.key.location", key.display().to_string());
        }
    }
    if let Some(sasl) = &cluster.sasl {
        c.set("sasl.mechanism", sasl.mechanism.name());
        match (&sasl.user, sasl.mechanism) {
            (Some((user, password)), _) => {
                c.set("sasl.username", user)
                    .set("sasl.password", password.read()?.expose());
            }
            (None, Mechanism::OAuthBearer) => {
                return Err(SecretError::Empty(
                    "an OAUTHBEARER login: the replication engine cannot log in with OAUTHBEARER yet (the proxy can)".into(),
                ))
            }
            (None, _) => {}
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Credentials, SecretRef, TlsConfig};

    #[test]
    fn every_bootstrap_address_and_security_setting_is_passed_on() {
        let mut cluster = ClusterConfig {
            bootstrap: vec!["a:9092".into(), "b:9093".into()],
            ..ClusterConfig::default()
        };
        let c = client_config(&cluster, "kflip-engine").unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("a:9092,b:9093"));
        assert_eq!(c.get("client.id"), Some("kflip-engine"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));

        std::env::set_var("KFLIP_TEST_RDKAFKA_PW", "s3cret");
        cluster.tls = Some(TlsConfig {
            ca_file: Some("/etc/ca.pem".into()),
            ..TlsConfig::default()
        });
        cluster.sasl = Some(Credentials {
            mechanism: Mechanism::ScramSha512,
            user: Some((
                "kflip".into(),
                SecretRef::Env("KFLIP_TEST_RDKAFKA_PW".into()),
            )),
            token: None,
        });
        let c = client_config(&cluster, "kflip-engine").unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));

        cluster.sasl.as_mut().unwrap().user =
            Some(("kflip".into(), SecretRef::Env("KFLIP_TEST_UNSET_PW".into())));
        let e = client_config(&cluster, "x").unwrap_err().to_string();
        assert!(e.contains("KFLIP_TEST_UNSET_PW"), "{e}");
    }
}
