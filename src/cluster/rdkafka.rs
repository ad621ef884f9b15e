//! The one place librdkafka client configs are built from a cluster's
//! settings: bootstrap, TLS and SASL.

use rdkafka::ClientConfig;

use crate::config::{ClusterConfig, Mechanism, SecretError, TokenRef};

/// Why no librdkafka config could be built for a cluster. Never carries a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A login secret could not be read (it names where, never a value).
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The cluster's login is one librdkafka clients cannot use.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Why an OAUTHBEARER login from a token file is refused.
const TOKEN_FILE: &str = "the replication engine cannot log in with an OAUTHBEARER token_file \
     (its admin client could not pick up a new token); use token_endpoint with client_id and \
     a client secret (client credentials) for a cluster the engine replicates";

/// A librdkafka config that reaches `cluster`, naming itself `client_id`.
/// Callers add their role's settings (group, acks, ...) on top. Fails when
/// a secret cannot be read (the error names where it was looked for) or
/// for an OAUTHBEARER login from a token file.
///
/// OAUTHBEARER with client credentials uses librdkafka's own OIDC client
/// (`sasl.oauthbearer.method=oidc`): librdkafka fetches and refreshes the
/// token on its background thread, for consumers, producers and admin
/// clients alike. A token file would need the application's refresh
/// callback, which the rdkafka crate only serves for clients that poll
/// their main queue; its admin client does not.
pub fn client_config(
    cluster: &ClusterConfig,
    client_id: &str,
) -> Result<ClientConfig, ConfigError> {
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
        match (&sasl.user, &sasl.token) {
            (Some((user, password)), _) => {
                c.set("sasl.username", user)
                    .set("sasl.password", password.read()?.expose());
            }
            (None, Some(TokenRef::File(_))) => return Err(ConfigError::Unsupported(TOKEN_FILE)),
            (
                None,
                Some(TokenRef::ClientCredentials {
                    endpoint,
                    client_id,
                    client_secret,
                    scope,
                }),
            ) => {
                c.set("sasl.oauthbearer.method", "oidc")
                    .set("sasl.oauthbearer.token.endpoint.url", endpoint)
                    .set("sasl.oauthbearer.client.id", client_id)
                    .set(
                        "sasl.oauthbearer.client.secret",
                        client_secret.read()?.expose(),
                    );
                if let Some(scope) = scope {
                    c.set("sasl.oauthbearer.scope", scope);
                }
            }
            (None, None) if sasl.mechanism == Mechanism::OAuthBearer => {
                return Err(ConfigError::Unsupported(
                    "an OAUTHBEARER login needs token_endpoint (client credentials)",
                ))
            }
            (None, None) => {}
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

    #[test]
    fn oauthbearer_client_credentials_go_to_librdkafka_oidc_and_token_files_are_refused() {
        std::env::set_var("KFLIP_TEST_RDKAFKA_CLIENT_SECRET", "cs-1");
        let mut cluster = ClusterConfig {
            bootstrap: vec!["a:9092".into()],
            sasl: Some(Credentials {
                mechanism: Mechanism::OAuthBearer,
                user: None,
                token: Some(TokenRef::ClientCredentials {
                    endpoint: "https://idp/token".into(),
                    client_id: "kflip".into(),
                    client_secret: SecretRef::Env("KFLIP_TEST_RDKAFKA_CLIENT_SECRET".into()),
                    scope: Some("kafka".into()),
                }),
            }),
            ..ClusterConfig::default()
        };
        let c = client_config(&cluster, "kflip-engine").unwrap();
        assert_eq!(c.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(c.get("sasl.mechanism"), Some("OAUTHBEARER"));
        assert_eq!(c.get("sasl.oauthbearer.method"), Some("oidc"));
        assert_eq!(
            c.get("sasl.oauthbearer.token.endpoint.url"),
            Some("https://idp/token")
        );
        assert_eq!(c.get("sasl.oauthbearer.client.id"), Some("kflip"));
        assert_eq!(c.get("sasl.oauthbearer.client.secret"), Some("cs-1"));
        assert_eq!(c.get("sasl.oauthbearer.scope"), Some("kafka"));

        cluster.sasl.as_mut().unwrap().token = Some(TokenRef::File("/run/token".into()));
        let e = client_config(&cluster, "x").unwrap_err().to_string();
        assert!(
            e.contains("token_file") && e.contains("token_endpoint"),
            "{e}"
        );
    }
}
