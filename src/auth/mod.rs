//! SASL mechanics for both sides of kflip: clients log in to kflip (kflip
//! is the SASL server), and kflip logs in to each upstream cluster on
//! their behalf (kflip is the SASL client). Everything here is pure or
//! reads a local file; the one network call is the OAuth token endpoint of
//! [`oauth::TokenProvider`]. The proxy carries the bytes in
//! SaslHandshake/SaslAuthenticate; this module only decides what they are.
//!
//! - [`secret`]: [`Secret`], a string that never prints, and where one comes
//!   from ([`SecretSource`]: a file or an environment variable).
//! - [`scram`]: SCRAM-SHA-256/512 (RFC 5802, RFC 7677) as Kafka speaks it:
//!   salted credentials, and the client and server state machines.
//! - [`plain`]: the PLAIN message, and checking its password against the
//!   same salted credentials SCRAM uses.
//! - [`users`]: the users file (YAML) of salted credentials, and the entry
//!   `kflip users add` prints.
//! - [`oauth`]: OAUTHBEARER (RFC 7628): the server validates a JWT against
//!   a JWKS; the client gets its token from a file or an OAuth
//!   client-credentials endpoint.
//!
//! What kflip stores: per user and SCRAM mechanism a salt, an iteration
//! count, a stored key and a server key. These let it check a SCRAM proof
//! or a PLAIN password; they do not let it log in as the user elsewhere
//! (that needs the client key, which only a password yields). What kflip
//! never stores nor logs: passwords, tokens, client secrets, derived keys.
//! Secrets are read from their source when needed and held as [`Secret`];
//! [`AuthError`] never carries one, nor a salt, key or token.

pub mod oauth;
pub mod plain;
pub mod scram;
pub mod secret;
pub mod users;

mod error;

pub use error::{AuthError, Result, TokenRejection};
pub use secret::{Secret, SecretSource};

use std::fmt;
use std::str::FromStr;

/// A SASL mechanism kflip speaks, on either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `PLAIN` (RFC 4616): a user name and password in the clear (use TLS).
    Plain,
    /// `SCRAM-SHA-256` (RFC 7677).
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
    /// `OAUTHBEARER` (RFC 7628, KIP-255).
    OAuthBearer,
}

impl SaslMechanism {
    /// Every mechanism, in the order kflip lists them in a SaslHandshake answer.
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::OAuthBearer,
    ];

    /// The name Kafka uses in SaslHandshake and in client configs.
    pub fn kafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => scram::Mechanism::Sha256.kafka_name(),
            SaslMechanism::ScramSha512 => scram::Mechanism::Sha512.kafka_name(),
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of a Kafka name (exact, as Kafka compares them).
    pub fn from_kafka_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_name() == name)
    }

    /// The SCRAM variant, for the two SCRAM mechanisms.
    pub fn scram(self) -> Option<scram::Mechanism> {
        match self {
            SaslMechanism::ScramSha256 => Some(scram::Mechanism::Sha256),
            SaslMechanism::ScramSha512 => Some(scram::Mechanism::Sha512),
            SaslMechanism::Plain | SaslMechanism::OAuthBearer => None,
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kafka_name())
    }
}

impl FromStr for SaslMechanism {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self> {
        SaslMechanism::from_kafka_name(s).ok_or(AuthError::UnsupportedMechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_round_trip() {
        for m in SaslMechanism::ALL {
            assert_eq!(m.kafka_name().parse::<SaslMechanism>().unwrap(), m);
        }
        assert_eq!(SaslMechanism::ScramSha512.kafka_name(), "SCRAM-SHA-512");
        assert!("scram-sha-256".parse::<SaslMechanism>().is_err());
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    }
}
