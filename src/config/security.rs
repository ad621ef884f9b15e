//! TLS and SASL settings: how kflip reaches each cluster (`clusters.X.tls`,
//! `clusters.X.sasl`) and how clients reach kflip (`proxy.tls`,
//! `proxy.sasl`). Secrets are never written in the file: a setting names
//! the file or environment variable that holds one, and the value is read
//! when it is used, so it never sits in the config snapshot, its `Debug`
//! or an error.

use std::path::{Path, PathBuf};

use super::model::{ListenerSaslFile, ListenerTlsFile, SaslFile, TlsFile};
use super::secrets::SecretRef;
use super::values::invalid;
use super::ConfigError;

/// A SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616; send it over TLS only.
    Plain,
    /// RFC 7677.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
    /// RFC 7628 (bearer tokens).
    OAuthBearer,
}

impl Mechanism {
    /// The name Kafka gives it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism Kafka names `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<Mechanism> {
        [
            Mechanism::Plain,
            Mechanism::ScramSha256,
            Mechanism::ScramSha512,
            Mechanism::OAuthBearer,
        ]
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// TLS towards a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// CA bundle; system roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for mTLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Name verified instead of the connected host.
    pub server_name: Option<String>,
}

/// How a bearer token is obtained.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenRef {
    /// Read from a file (re-read when it changes).
    File(PathBuf),
    /// The client-credentials grant at a token endpoint.
    ClientCredentials {
        /// The endpoint URL.
        endpoint: String,
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: SecretRef,
        /// The scope, if any.
        scope: Option<String>,
    },
}

/// One SASL login (a cluster's own, or a principal's on a cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// PLAIN and SCRAM: user name and where the password is.
    pub user: Option<(String, SecretRef)>,
    /// OAUTHBEARER: where the token comes from.
    pub token: Option<TokenRef>,
}

/// `proxy.tls`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListenerTls {
    /// Certificate chain.
    pub cert_file: PathBuf,
    /// Private key.
    pub key_file: PathBuf,
    /// Client CA: client certificates required when set.
    pub client_ca_file: Option<PathBuf>,
}

/// `proxy.sasl.oauthbearer`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthValidation {
    /// JWKS file.
    pub jwks_file: PathBuf,
    /// Required issuer.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Claim naming the principal.
    pub principal_claim: String,
}

/// `proxy.sasl`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSasl {
    /// Offered mechanisms, in the file's order.
    pub mechanisms: Vec<Mechanism>,
    /// The users file (PLAIN, SCRAM).
    pub users_file: Option<PathBuf>,
    /// OAUTHBEARER validation.
    pub oauthbearer: Option<OAuthValidation>,
    /// The principal mapping file.
    pub principals_file: Option<PathBuf>,
}

fn readable(key: &str, path: &Path) -> Result<PathBuf, ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(path.to_path_buf()),
        Ok(_) => Err(invalid(key, format!("{} is not a file", path.display()))),
        Err(e) => Err(invalid(key, format!("cannot read {}: {e}", path.display()))),
    }
}

pub(super) fn secret(
    key: &str,
    file_key: &str,
    file: Option<PathBuf>,
    env_key: &str,
    env: Option<String>,
) -> Result<Option<SecretRef>, ConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            format!("set {file_key} or {env_key}, not both"),
        )),
        (Some(f), None) => Ok(Some(SecretRef::File(readable(
            &format!("{key}.{file_key}"),
            &f,
        )?))),
        (None, Some(v)) => {
            if v.is_empty() {
                return Err(invalid(format!("{key}.{env_key}"), "names no variable"));
            }
            Ok(Some(SecretRef::Env(v)))
        }
        (None, None) => Ok(None),
    }
}

/// Validates `clusters.X.tls`.
pub(super) fn tls(key: &str, t: TlsFile) -> Result<TlsConfig, ConfigError> {
    let ca_file = match t.ca_file {
        Some(p) => Some(readable(&format!("{key}.ca_file"), &p)?),
        None => None,
    };
    let client_cert = match (t.cert_file, t.key_file) {
        (Some(c), Some(k)) => Some((
            readable(&format!("{key}.cert_file"), &c)?,
            readable(&format!("{key}.key_file"), &k)?,
        )),
        (None, None) => None,
        _ => {
            return Err(invalid(
                key,
                "cert_file and key_file go together (mTLS needs both)",
            ))
        }
    };
    if t.server_name.as_deref() == Some("") {
        return Err(invalid(format!("{key}.server_name"), "must not be empty"));
    }
    Ok(TlsConfig {
        ca_file,
        client_cert,
        server_name: t.server_name,
    })
}

/// Validates a `sasl:` login.
pub fn credentials(key: &str, s: SaslFile) -> Result<Credentials, ConfigError> {
    let mechanism = Mechanism::parse(&s.mechanism).ok_or_else(|| {
        invalid(
            format!("{key}.mechanism"),
            format!(
                "{:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
                s.mechanism
            ),
        )
    })?;
    let password = secret(
        key,
        "password_file",
        s.password_file,
        "password_env",
        s.password_env,
    )?;
    let client_secret = secret(
        key,
        "client_secret_file",
        s.client_secret_file,
        "client_secret_env",
        s.client_secret_env,
    )?;
    if mechanism == Mechanism::OAuthBearer {
        if s.username.is_some() || password.is_some() {
            return Err(invalid(
                key,
                "OAUTHBEARER takes token_file or token_endpoint, not username/password",
            ));
        }
        let token = match (s.token_file, s.token_endpoint) {
            (Some(f), None) => TokenRef::File(readable(&format!("{key}.token_file"), &f)?),
            (None, Some(endpoint)) => {
                if !endpoint.starts_with("https://") && !endpoint.starts_with("http://") {
                    return Err(invalid(
                        format!("{key}.token_endpoint"),
                        "must be an http(s) URL",
                    ));
                }
                let client_id = s.client_id.filter(|c| !c.is_empty()).ok_or_else(|| {
                    invalid(
                        format!("{key}.client_id"),
                        "is required with token_endpoint",
                    )
                })?;
                let client_secret = client_secret.ok_or_else(|| {
                    invalid(
                        key,
                        "token_endpoint needs client_secret_file or client_secret_env",
                    )
                })?;
                TokenRef::ClientCredentials {
                    endpoint,
                    client_id,
                    client_secret,
                    scope: s.scope,
                }
            }
            _ => {
                return Err(invalid(
                    key,
                    "OAUTHBEARER needs exactly one of token_file and token_endpoint",
                ))
            }
        };
        return Ok(Credentials {
            mechanism,
            user: None,
            token: Some(token),
        });
    }
    if s.token_file.is_some() || s.token_endpoint.is_some() || client_secret.is_some() {
        return Err(invalid(
            key,
            format!("token settings belong to OAUTHBEARER, not {mechanism}"),
        ));
    }
    let username = s.username.filter(|u| !u.is_empty()).ok_or_else(|| {
        invalid(
            format!("{key}.username"),
            format!("is required for {mechanism}"),
        )
    })?;
    let password = password.ok_or_else(|| {
        invalid(
            key,
            format!("{mechanism} needs password_file or password_env (passwords are never written in the config)"),
        )
    })?;
    Ok(Credentials {
        mechanism,
        user: Some((username, password)),
        token: None,
    })
}

/// Validates `proxy.tls`.
pub(super) fn listener_tls(t: ListenerTlsFile) -> Result<ListenerTls, ConfigError> {
    Ok(ListenerTls {
        cert_file: readable("proxy.tls.cert_file", &t.cert_file)?,
        key_file: readable("proxy.tls.key_file", &t.key_file)?,
        client_ca_file: match t.client_ca_file {
            Some(p) => Some(readable("proxy.tls.client_ca_file", &p)?),
            None => None,
        },
    })
}

/// Validates `proxy.sasl`.
pub(super) fn listener_sasl(s: ListenerSaslFile) -> Result<ListenerSasl, ConfigError> {
    if s.mechanisms.is_empty() {
        return Err(invalid("proxy.sasl.mechanisms", "must name at least one"));
    }
    let mut mechanisms = Vec::new();
    for m in &s.mechanisms {
        let mech = Mechanism::parse(m).ok_or_else(|| {
            invalid(
                "proxy.sasl.mechanisms",
                format!("{m:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"),
            )
        })?;
        if !mechanisms.contains(&mech) {
            mechanisms.push(mech);
        }
    }
    let users_file = match s.users_file {
        Some(p) => Some(readable("proxy.sasl.users_file", &p)?),
        None => None,
    };
    if users_file.is_none() && mechanisms.iter().any(|m| *m != Mechanism::OAuthBearer) {
        return Err(invalid(
            "proxy.sasl.users_file",
            "is required for PLAIN and SCRAM",
        ));
    }
    let oauthbearer = match s.oauthbearer {
        Some(o) => Some(OAuthValidation {
            jwks_file: readable("proxy.sasl.oauthbearer.jwks_file", &o.jwks_file)?,
            issuer: o.issuer,
            audience: o.audience,
            principal_claim: o.principal_claim.unwrap_or_else(|| "sub".into()),
        }),
        None => None,
    };
    if mechanisms.contains(&Mechanism::OAuthBearer) != oauthbearer.is_some() {
        return Err(invalid(
            "proxy.sasl.oauthbearer",
            "is required with OAUTHBEARER among the mechanisms, and only then",
        ));
    }
    let principals_file = match s.principals_file {
        Some(p) => Some(readable("proxy.sasl.principals_file", &p)?),
        None => None,
    };
    Ok(ListenerSasl {
        mechanisms,
        users_file,
        oauthbearer,
        principals_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(yaml: &str) -> Result<Credentials, String> {
        let f: SaslFile = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        credentials("clusters.dc1.sasl", f).map_err(|e| e.to_string())
    }

    #[test]
    fn logins_name_where_the_secret_is_and_never_hold_it() {
        let c =
            sasl("{ mechanism: scram-sha-512, username: kflip, password_env: DC1_PW }").unwrap();
        assert_eq!(c.mechanism, Mechanism::ScramSha512);
        assert_eq!(
            c.user,
            Some(("kflip".into(), SecretRef::Env("DC1_PW".into())))
        );
        let e = sasl("{ mechanism: PLAIN, username: kflip }").unwrap_err();
        assert!(e.contains("password_file or password_env"), "{e}");
        let e = sasl("{ mechanism: PLAIN, username: u, password: hunter2 }").unwrap_err();
        assert!(e.contains("unknown field `password`"), "{e}");
        let e = sasl("{ mechanism: GSSAPI, username: u, password_env: X }").unwrap_err();
        assert!(e.contains("GSSAPI") && e.contains("SCRAM-SHA-256"), "{e}");
        let e =
            sasl("{ mechanism: PLAIN, username: u, password_file: /nonexistent/pw }").unwrap_err();
        assert!(e.contains("clusters.dc1.sasl.password_file"), "{e}");
    }

    #[test]
    fn oauthbearer_takes_a_token_source_only() {
        let c = sasl(
            "{ mechanism: OAUTHBEARER, token_endpoint: 'https://idp/token', client_id: kflip, client_secret_env: S }",
        )
        .unwrap();
        assert!(matches!(c.token, Some(TokenRef::ClientCredentials { .. })));
        let e = sasl("{ mechanism: OAUTHBEARER, username: u, password_env: X }").unwrap_err();
        assert!(e.contains("not username/password"), "{e}");
        let e =
            sasl("{ mechanism: OAUTHBEARER, token_endpoint: 'https://idp/token' }").unwrap_err();
        assert!(e.contains("client_id"), "{e}");
    }
}
