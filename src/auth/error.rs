//! The one error type of [`crate::auth`]. No message carries a password,
//! token, client secret, salt or key: only file names, variable names,
//! user names, field names and fixed reasons.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Shorthand for results of [`crate::auth`].
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// What went wrong while loading credentials or running a SASL exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A secret file could not be read.
    #[error("cannot read the secret file {path}: {source}")]
    SecretFile {
        /// The file named in the config.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// A secret file or variable holds no usable text.
    #[error("the secret in {origin} is {reason}")]
    SecretInvalid {
        /// `file PATH` or `environment variable NAME`.
        origin: String,
        /// `empty` or `not UTF-8`.
        reason: &'static str,
    },
    /// The environment variable named in the config is not set.
    #[error("the environment variable {name} is not set")]
    SecretEnvUnset {
        /// The variable's name.
        name: String,
    },
    /// A SASL mechanism name kflip does not speak.
    #[error("unsupported SASL mechanism")]
    UnsupportedMechanism,
    /// The peer sent bytes that are not a message of the mechanism.
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        /// The mechanism's Kafka name.
        mechanism: &'static str,
        /// Which rule the message broke.
        reason: &'static str,
    },
    /// A step was called twice, too early, or after a failure.
    #[error("{mechanism} exchange out of order: {reason}")]
    OutOfOrder {
        /// The mechanism's Kafka name.
        mechanism: &'static str,
        /// Which step was expected.
        reason: &'static str,
    },
    /// The client's credentials were wrong, or the user is unknown: the
    /// server never says which.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// As a client: the server could not prove it knows the password.
    #[error("{mechanism}: the server's signature does not match (it does not know the credential, or the exchange was altered)")]
    ServerSignature {
        /// The mechanism's Kafka name.
        mechanism: &'static str,
    },
    /// As a client: the server refused the login with an error.
    #[error("{mechanism}: the server refused the login: {reason}")]
    ServerRefused {
        /// The mechanism's Kafka name.
        mechanism: &'static str,
        /// The server's error value, reduced to `[a-z0-9-]`.
        reason: String,
    },
    /// An iteration count outside what kflip accepts.
    #[error("{mechanism}: iteration count {iterations} is outside {min}..={max}")]
    Iterations {
        /// The mechanism's Kafka name.
        mechanism: &'static str,
        /// The count asked for.
        iterations: u64,
        /// The smallest count accepted.
        min: u32,
        /// The largest count accepted.
        max: u32,
    },
    /// A feature of the mechanism that kflip does not implement.
    #[error("{mechanism}: {feature} is not supported")]
    Unsupported {
        /// The mechanism's Kafka name.
        mechanism: &'static str,
        /// What the peer asked for.
        feature: &'static str,
    },
    /// Local input (a user name, a token) that cannot be put in a message.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was given.
        what: &'static str,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// The users file could not be read.
    #[error("cannot read the users file {path}: {source}")]
    UsersFileRead {
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// The users file is not valid; `reason` names the user and field.
    #[error("users file {path}: {reason}")]
    UsersFile {
        /// The file.
        path: PathBuf,
        /// Where and what, e.g. `user alice: scram-sha-256.salt: not base64`.
        reason: String,
    },
    /// The JWKS could not be read or used.
    #[error("JWKS {origin}: {reason}")]
    Jwks {
        /// The file it came from.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An OAUTHBEARER token failed validation.
    #[error("token rejected: {0}")]
    Token(TokenRejection),
    /// A token file could not be read or holds no token.
    #[error("token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The OAuth token endpoint could not be used.
    #[error("token endpoint {endpoint}: {reason}")]
    TokenEndpoint {
        /// The endpoint's URL, as configured.
        endpoint: String,
        /// What failed (transport, HTTP status, or the answer's shape).
        reason: String,
    },
}

/// Why a bearer token was refused. Says nothing of the token's content.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// Not a JWT, or its parts do not decode.
    Malformed,
    /// The header's `alg` is not one kflip accepts (`none`, HMAC, unknown).
    Algorithm,
    /// No key of the JWKS matches the token's `kid`, or it lacks one.
    UnknownKey,
    /// The key does not fit the algorithm, or the signature is wrong.
    Signature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` does not contain the configured audience.
    Audience,
    /// A required claim is absent or of the wrong type.
    Claim(String),
}

impl fmt::Display for TokenRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRejection::Malformed => f.write_str("not a well-formed JWT"),
            TokenRejection::Algorithm => f.write_str("signature algorithm not accepted"),
            TokenRejection::UnknownKey => f.write_str("no key in the JWKS for its kid"),
            TokenRejection::Signature => f.write_str("bad signature"),
            TokenRejection::Expired => f.write_str("expired"),
            TokenRejection::NotYetValid => f.write_str("not valid yet (nbf)"),
            TokenRejection::Issuer => f.write_str("wrong issuer"),
            TokenRejection::Audience => f.write_str("wrong audience"),
            TokenRejection::Claim(c) => write!(f, "claim {c} missing or not valid"),
        }
    }
}

/// Kafka's UNSUPPORTED_SASL_MECHANISM.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's ILLEGAL_SASL_STATE.
const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's SASL_AUTHENTICATION_FAILED.
const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// Kafka's UNKNOWN_SERVER_ERROR.
const UNKNOWN_SERVER_ERROR: i16 = -1;

impl AuthError {
    /// The Kafka error code a SaslHandshake/SaslAuthenticate answer to a
    /// client should carry for this error. Failures of kflip's own
    /// configuration (files, variables, endpoints) are UNKNOWN_SERVER_ERROR
    /// so a client is not told its credentials were wrong when they were not.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            AuthError::UnsupportedMechanism | AuthError::Unsupported { .. } => {
                UNSUPPORTED_SASL_MECHANISM
            }
            AuthError::OutOfOrder { .. } => ILLEGAL_SASL_STATE,
            AuthError::Malformed { .. }
            | AuthError::AuthenticationFailed
            | AuthError::Token(_)
            | AuthError::InvalidInput { .. } => SASL_AUTHENTICATION_FAILED,
            _ => UNKNOWN_SERVER_ERROR,
        }
    }

    /// The message to send a client in SaslAuthenticate's error message:
    /// the same for every credential failure, so it reveals nothing.
    pub fn client_message(&self) -> String {
        match self {
            AuthError::AuthenticationFailed | AuthError::Token(_) => {
                return "Authentication failed: invalid credentials".to_string()
            }
            AuthError::Malformed { .. } => return self.to_string(),
            _ => {}
        }
        match self.kafka_error_code() {
            SASL_AUTHENTICATION_FAILED => "Authentication failed".to_string(),
            UNKNOWN_SERVER_ERROR => "Authentication is unavailable".to_string(),
            _ => self.to_string(),
        }
    }
}
