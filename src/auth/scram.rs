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
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{AuthError, Result, Secret};

mod messages;
#[cfg(test)]
mod tests;

use messages::{escape, parse_client_final, parse_client_first, parse_server_final};
use messages::{parse_server_first, ServerFinal};

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
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
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

/// Where a [`ScramClient`] is in its exchange.
enum ClientState {
    Start,
    SentFirst,
    SentFinal { server_signature: Vec<u8> },
    Done,
    Failed,
}

/// kflip's side of a SCRAM login to an upstream cluster: send
/// [`client_first`](Self::client_first), answer the server's first message
/// with [`client_final`](Self::client_final), then check the server's final
/// message with [`verify`](Self::verify) (only then is the server trusted).
pub struct ScramClient {
    mech: Mechanism,
    /// The user name as sent (escaped).
    user: String,
    password: Secret,
    /// The client nonce.
    nonce: String,
    /// Sends `tokenauth=true`: the user is a delegation token id.
    token_auth: bool,
    /// `n=...,r=...`, kept for the auth message.
    first_bare: String,
    state: ClientState,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mech", &self.mech)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A client for `user` with `password`, with a fresh nonce.
    pub fn new(user: &str, password: Secret, mech: Mechanism) -> Result<Self> {
        if user.is_empty() {
            return Err(AuthError::InvalidInput {
                what: "SCRAM user name",
                reason: "empty",
            });
        }
        Ok(ScramClient {
            mech,
            user: escape(user),
            password,
            nonce: random_nonce()?,
            token_auth: false,
            first_bare: String::new(),
            state: ClientState::Start,
        })
    }

    /// Logs in with a Kafka delegation token: `user` is the token id and the
    /// password its HMAC (the `tokenauth=true` extension).
    pub fn with_token_auth(mut self) -> Self {
        self.token_auth = true;
        self
    }

    /// The client's first message (`n,,n=user,r=nonce`).
    pub fn client_first(&mut self) -> Vec<u8> {
        let ext = if self.token_auth {
            ",tokenauth=true"
        } else {
            ""
        };
        self.first_bare = format!("n={},r={}{ext}", self.user, self.nonce);
        if matches!(self.state, ClientState::Start) {
            self.state = ClientState::SentFirst;
        }
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// The client's final message, with its proof, for the server's first.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>> {
        if !matches!(self.state, ClientState::SentFirst) {
            return Err(out_of_order(self.mech, "client_final before client_first"));
        }
        self.state = ClientState::Failed;
        let sf = parse_server_first(self.mech, server_first)?;
        if sf.nonce.len() <= self.nonce.len() || !sf.nonce.starts_with(&self.nonce) {
            return Err(AuthError::Malformed {
                mechanism: self.mech.kafka_name(),
                reason: "the server nonce does not extend the client nonce",
            });
        }
        let iterations = self.mech.check_iterations(sf.iterations)?;
        let keys = ClientKeys::derive(self.password.expose(), &sf.salt, iterations, self.mech);
        let without_proof = format!("c=biws,r={}", sf.nonce);
        let auth = [
            self.first_bare.as_bytes(),
            b",",
            server_first,
            b",",
            without_proof.as_bytes(),
        ];
        let stored_key = self.mech.hash(&keys.client_key);
        let signature = self.mech.hmac(&stored_key, &auth);
        let proof = xor(&keys.client_key, &signature);
        let server_signature = self.mech.hmac(&keys.server_key, &auth);
        self.state = ClientState::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: the login succeeded and the
    /// server knows the credential.
    pub fn verify(&mut self, server_final: &[u8]) -> Result<()> {
        let ClientState::SentFinal { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Failed)
        else {
            return Err(out_of_order(self.mech, "verify before client_final"));
        };
        match parse_server_final(self.mech, server_final)? {
            ServerFinal::Error(reason) => Err(AuthError::ServerRefused {
                mechanism: self.mech.kafka_name(),
                reason,
            }),
            ServerFinal::Verifier(v) => {
                if bool::from(v.ct_eq(&server_signature)) {
                    self.state = ClientState::Done;
                    Ok(())
                } else {
                    Err(AuthError::ServerSignature {
                        mechanism: self.mech.kafka_name(),
                    })
                }
            }
        }
    }
}

/// Where a [`ScramServer`] is in its exchange.
enum ServerState {
    Start,
    SentFirst(Box<Pending>),
    Done,
    Failed,
}

/// What the server remembers between its two messages.
struct Pending {
    user: String,
    credential: StoredCredential,
    /// False when `credential` is the stand-in of an unknown user.
    known: bool,
    /// The client's gs2 header, which `c=` must echo.
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// kflip's side of a client's SCRAM login: one per login, driven by
/// [`server_first`](Self::server_first) and
/// [`server_final`](Self::server_final). `lookup` gives the credential of a
/// user name for this mechanism; an unknown user gets a stand-in and fails
/// exactly as a wrong password does.
pub struct ScramServer<F> {
    mech: Mechanism,
    lookup: Option<F>,
    unknown_iterations: u32,
    state: ServerState,
}

impl<F> fmt::Debug for ScramServer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("mech", &self.mech)
            .finish_non_exhaustive()
    }
}

impl<F> ScramServer<F>
where
    F: FnOnce(&str) -> Option<StoredCredential>,
{
    /// A server for one login with `mech`, looking users up with `lookup`.
    pub fn new(mech: Mechanism, lookup: F) -> Self {
        ScramServer {
            mech,
            lookup: Some(lookup),
            unknown_iterations: Mechanism::DEFAULT_ITERATIONS,
            state: ServerState::Start,
        }
    }

    /// The iteration count shown for unknown users: set it to what the
    /// users file mostly uses, so the count does not tell them apart.
    pub fn with_unknown_user_iterations(mut self, iterations: u32) -> Self {
        self.unknown_iterations = iterations;
        self
    }

    /// Answers the client's first message with the salt, iterations and
    /// the combined nonce.
    pub fn server_first(&mut self, client_first: &[u8]) -> Result<Vec<u8>> {
        if !matches!(self.state, ServerState::Start) {
            return Err(out_of_order(self.mech, "a second client-first message"));
        }
        self.state = ServerState::Failed;
        let cf = parse_client_first(self.mech, client_first)?;
        if cf.token_auth {
            return Err(AuthError::Unsupported {
                mechanism: self.mech.kafka_name(),
                feature: "delegation tokens (tokenauth)",
            });
        }
        let lookup = self
            .lookup
            .take()
            .ok_or_else(|| out_of_order(self.mech, "server used twice"))?;
        let (credential, known) = match lookup(&cf.user) {
            Some(c) if c.stored_key.len() == self.mech.key_len() => (c, true),
            _ => {
                let c = StoredCredential::stand_in(&cf.user, self.mech, self.unknown_iterations)?;
                (c, false)
            }
        };
        let nonce = format!("{}{}", cf.nonce, random_nonce()?);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::SentFirst(Box::new(Pending {
            user: cf.user,
            credential,
            known,
            gs2_header: cf.gs2_header.to_string(),
            client_first_bare: cf.bare.to_string(),
            server_first,
            nonce,
        }));
        Ok(reply)
    }

    /// Checks the client's proof; on success returns the server's final
    /// message (to send) and the authenticated user name.
    pub fn server_final(&mut self, client_final: &[u8]) -> Result<(Vec<u8>, String)> {
        let ServerState::SentFirst(p) = std::mem::replace(&mut self.state, ServerState::Failed)
        else {
            return Err(out_of_order(self.mech, "client-final before client-first"));
        };
        let cf = parse_client_final(self.mech, client_final)?;
        if cf.channel_binding != p.gs2_header.as_bytes() {
            return Err(AuthError::Malformed {
                mechanism: self.mech.kafka_name(),
                reason: "channel binding does not echo the gs2 header",
            });
        }
        if !bool::from(cf.nonce.as_bytes().ct_eq(p.nonce.as_bytes())) {
            return Err(AuthError::Malformed {
                mechanism: self.mech.kafka_name(),
                reason: "nonce does not match",
            });
        }
        let auth = [
            p.client_first_bare.as_bytes(),
            b",",
            p.server_first.as_bytes(),
            b",",
            cf.without_proof.as_bytes(),
        ];
        let signature = self.mech.hmac(&p.credential.stored_key, &auth);
        if cf.proof.len() != signature.len() {
            return Err(AuthError::AuthenticationFailed);
        }
        let client_key = Zeroizing::new(xor(&cf.proof, &signature));
        let proof_ok = self.mech.hash(&client_key).ct_eq(&p.credential.stored_key);
        if !bool::from(proof_ok) || !p.known {
            return Err(AuthError::AuthenticationFailed);
        }
        let verifier = self.mech.hmac(&p.credential.server_key, &auth);
        self.state = ServerState::Done;
        Ok((format!("v={}", B64.encode(verifier)).into_bytes(), p.user))
    }

    /// True once the client has proven its credential.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }
}
