//! [`ScramServer`]: a client logging in to kflip.

use std::fmt;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::messages::{parse_client_final, parse_client_first};
use super::{out_of_order, random_nonce, xor, Mechanism, StoredCredential, B64};
use crate::auth::{AuthError, Result};

/// Where a [`ScramServer`] is in its exchange.
pub(super) enum ServerState {
    Start,
    SentFirst(Box<Pending>),
    Done,
    Failed,
}

/// What the server remembers between its two messages.
pub(super) struct Pending {
    pub(super) user: String,
    pub(super) credential: StoredCredential,
    /// False when `credential` is the stand-in of an unknown user.
    pub(super) known: bool,
    /// The client's gs2 header, which `c=` must echo.
    pub(super) gs2_header: String,
    pub(super) client_first_bare: String,
    pub(super) server_first: String,
    pub(super) nonce: String,
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
    pub(super) state: ServerState,
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
