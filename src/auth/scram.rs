//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks
//! them: no channel binding (gs2 header `n,,`), the `tokenauth` extension
//! for delegation tokens, and the password taken as its UTF-8 bytes (Kafka
//! applies no SASLprep, so neither does kflip, or non-ASCII passwords would
//! differ between kflip and the brokers).
//!
//! [`ScramServer`] is what kflip runs for its clients, one per login;
//! [`ScramClient`] is what kflip runs against an upstream cluster.
//! Both are state machines over messages; the caller carries the bytes.

use std::fmt;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use super::{AuthError, Result};

mod client;
mod messages;
mod server;
#[cfg(test)]
mod tests;

pub use client::ScramClient;
pub use server::ScramServer;

/// The longest SCRAM message kflip reads; real ones are under 300 bytes.
pub const MAX_MESSAGE: usize = 4096;
/// Salt length of the credentials kflip makes, in bytes.
pub const SALT_LEN: usize = 32;
/// Random bytes in each nonce kflip makes (base64-encoded on the wire).
const NONCE_BYTES: usize = 24;

/// One of Kafka's two SCRAM mechanisms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl Mechanism {
    /// Both mechanisms.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];
    /// Kafka's (and RFC 7677's) minimum iteration count.
    pub const MIN_ITERATIONS: u32 = 4096;
    /// The most iterations kflip derives for, so a hostile server cannot
    /// make it spin for minutes on one login.
    pub const MAX_ITERATIONS: u32 = 1_000_000;
    /// The iteration count of the stand-in credential for unknown users;
    /// `kflip users add` should use the same so the two look alike.
    pub const DEFAULT_ITERATIONS: u32 = 8192;

    /// The name Kafka uses in SaslHandshake and in its configs.
    pub fn kafka_name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a Kafka name.
    pub fn from_kafka_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_name() == name)
    }

    /// Length of the hash, and so of every key, in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Mechanism::Sha256 => 32,
            Mechanism::Sha512 => 64,
        }
    }

    /// Checks an iteration count against [`Self::MIN_ITERATIONS`] and
    /// [`Self::MAX_ITERATIONS`].
    pub fn check_iterations(self, iterations: u64) -> Result<u32> {
        match u32::try_from(iterations) {
            Ok(i) if (Self::MIN_ITERATIONS..=Self::MAX_ITERATIONS).contains(&i) => Ok(i),
            _ => Err(AuthError::Iterations {
                mechanism: self.kafka_name(),
                iterations,
                min: Self::MIN_ITERATIONS,
                max: Self::MAX_ITERATIONS,
            }),
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Mechanism::Sha256 => run::<Hmac<Sha256>>(key, parts),
            Mechanism::Sha512 => run::<Hmac<Sha512>>(key, parts),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with this HMAC.
    pub(crate) fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; self.key_len()]);
        match self {
            Mechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            Mechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kafka_name())
    }
}

/// What a SCRAM server keeps of a password (RFC 5802 section 3). It can
/// check a login with it, but cannot log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// The salt the password was hashed with.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`: checks the client's proof.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server's answer.
    pub server_key: Vec<u8>,
}

impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl StoredCredential {
    /// The credential of a password, for a salt and iteration count.
    pub fn derive(password: &str, salt: &[u8], iterations: u32, mech: Mechanism) -> Self {
        let keys = ClientKeys::derive(password, salt, iterations, mech);
        StoredCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: mech.hash(&keys.client_key),
            server_key: keys.server_key.to_vec(),
        }
    }

    /// A credential no password matches, the same for a user name on
    /// every call of this process, standing in for an unknown user so a
    /// client cannot tell unknown users from wrong passwords by the salt.
    pub(crate) fn stand_in(user: &str, mech: Mechanism, iterations: u32) -> Result<Self> {
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = match KEY.get() {
            Some(key) => key,
            None => {
                let mut fresh = [0u8; 32];
                random(&mut fresh)?;
                KEY.get_or_init(|| fresh)
            }
        };
        let name = mech.kafka_name().as_bytes();
        let derive = |label: &[u8], len: usize| {
            let mut out = Mechanism::Sha512.hmac(key, &[label, name, b"\0", user.as_bytes()]);
            out.truncate(len);
            out
        };
        Ok(StoredCredential {
            salt: derive(b"salt", SALT_LEN),
            iterations,
            stored_key: derive(b"stored", mech.key_len()),
            server_key: derive(b"server", mech.key_len()),
        })
    }
}

/// The keys a client derives from its password.
struct ClientKeys {
    client_key: Zeroizing<Vec<u8>>,
    server_key: Zeroizing<Vec<u8>>,
}

impl ClientKeys {
    fn derive(password: &str, salt: &[u8], iterations: u32, mech: Mechanism) -> Self {
        let salted = mech.salted_password(password.as_bytes(), salt, iterations);
        ClientKeys {
            client_key: Zeroizing::new(mech.hmac(&salted, &[b"Client Key"])),
            server_key: Zeroizing::new(mech.hmac(&salted, &[b"Server Key"])),
        }
    }
}

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| AuthError::Random(e.to_string()))
}

fn random_nonce() -> Result<String> {
    let mut bytes = [0u8; NONCE_BYTES];
    random(&mut bytes)?;
    Ok(B64.encode(bytes))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn out_of_order(mech: Mechanism, reason: &'static str) -> AuthError {
    AuthError::OutOfOrder {
        mechanism: mech.kafka_name(),
        reason,
    }
}
