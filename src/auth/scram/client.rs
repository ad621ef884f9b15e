//! [`ScramClient`]: kflip logging in to an upstream cluster.

use std::fmt;

use base64::Engine as _;
use subtle::ConstantTimeEq;

use super::messages::{escape, parse_server_final, parse_server_first, ServerFinal};
use super::{out_of_order, random_nonce, xor, ClientKeys, Mechanism, B64};
use crate::auth::{AuthError, Result, Secret};

/// Where a [`ScramClient`] is in its exchange.
pub(super) enum ClientState {
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
    pub(super) mech: Mechanism,
    /// The user name as sent (escaped).
    pub(super) user: String,
    pub(super) password: Secret,
    /// The client nonce.
    pub(super) nonce: String,
    /// Sends `tokenauth=true`: the user is a delegation token id.
    pub(super) token_auth: bool,
    /// `n=...,r=...`, kept for the auth message.
    pub(super) first_bare: String,
    pub(super) state: ClientState,
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
