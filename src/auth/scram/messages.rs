//! The four SCRAM messages: parsing what a peer sends (bounded, never
//! panicking) and the user name escaping of RFC 5802 (`,` is `=2C`, `=` is
//! `=3D`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{Mechanism, MAX_MESSAGE};
use crate::auth::{AuthError, Result};

/// The client's first message, parsed.
pub(super) struct ClientFirst<'a> {
    /// `n,,` or `y,,` (or with `a=`), echoed in the final message's `c=`.
    pub gs2_header: &'a str,
    /// The user name, unescaped.
    pub user: String,
    /// The client nonce.
    pub nonce: &'a str,
    /// Everything after the gs2 header (part of the auth message).
    pub bare: &'a str,
    /// `tokenauth=true`: a Kafka delegation token login.
    pub token_auth: bool,
}

/// The server's first message, parsed.
pub(super) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u64,
}

/// The client's final message, parsed.
pub(super) struct ClientFinal<'a> {
    /// `c=`, decoded.
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    /// The message up to `,p=` (part of the auth message).
    pub without_proof: &'a str,
    pub proof: Vec<u8>,
}

/// The server's final message.
pub(super) enum ServerFinal {
    /// `v=`: the server signature, decoded.
    Verifier(Vec<u8>),
    /// `e=`: the server's error value, reduced to `[a-z0-9-]`.
    Error(String),
}

/// Escapes a user name for `n=` and `a=`.
pub(super) fn escape(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn malformed(mech: Mechanism, reason: &'static str) -> AuthError {
    AuthError::Malformed {
        mechanism: mech.kafka_name(),
        reason,
    }
}

/// Undoes [`escape`]; any other `=` is an error.
fn unescape(mech: Mechanism, name: &str) -> Result<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        match code {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(malformed(mech, "bad escape in a user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn text(mech: Mechanism, msg: &[u8]) -> Result<&str> {
    if msg.len() > MAX_MESSAGE {
        return Err(malformed(mech, "message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| malformed(mech, "not UTF-8"))
}

/// Splits `k=v` attributes; `k` is one ASCII letter, or a name of letters
/// for extensions.
fn attributes<'a>(
    mech: Mechanism,
    msg: &'a str,
) -> impl Iterator<Item = Result<(&'a str, &'a str)>> + 'a {
    msg.split(',').map(move |attr| {
        let (key, value) = attr
            .split_once('=')
            .ok_or_else(|| malformed(mech, "attribute without '='"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(malformed(mech, "bad attribute name"));
        }
        Ok((key, value))
    })
}

/// Takes the next attribute, which must be `key`.
fn expect<'a>(
    mech: Mechanism,
    attrs: &mut impl Iterator<Item = Result<(&'a str, &'a str)>>,
    key: &str,
    reason: &'static str,
) -> Result<&'a str> {
    match attrs.next() {
        Some(Ok((k, v))) if k == key => Ok(v),
        Some(Err(e)) => Err(e),
        Some(Ok(("m", _))) => Err(AuthError::Unsupported {
            mechanism: mech.kafka_name(),
            feature: "mandatory extensions (m=)",
        }),
        _ => Err(malformed(mech, reason)),
    }
}

fn check_nonce(mech: Mechanism, nonce: &str) -> Result<()> {
    // RFC 5802: printable ASCII except ','.
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed(mech, "bad nonce"));
    }
    Ok(())
}

fn base64(mech: Mechanism, value: &str, reason: &'static str) -> Result<Vec<u8>> {
    B64.decode(value).map_err(|_| malformed(mech, reason))
}

pub(super) fn parse_client_first(mech: Mechanism, msg: &[u8]) -> Result<ClientFirst<'_>> {
    let msg = text(mech, msg)?;
    let mut parts = msg.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed(mech, "no gs2 header"));
    };
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(AuthError::Unsupported {
                mechanism: mech.kafka_name(),
                feature: "channel binding",
            })
        }
        _ => return Err(malformed(mech, "bad channel binding flag")),
    }
    let gs2_header = &msg[..flag.len() + authzid.len() + 2];
    let authzid = match authzid {
        "" => None,
        a => match a.strip_prefix("a=") {
            Some(name) => Some(unescape(mech, name)?),
            None => return Err(malformed(mech, "bad authorization id")),
        },
    };
    let mut attrs = attributes(mech, bare);
    let user = unescape(mech, expect(mech, &mut attrs, "n", "no user name")?)?;
    if user.is_empty() {
        return Err(malformed(mech, "empty user name"));
    }
    if authzid.is_some_and(|a| a != user) {
        return Err(malformed(
            mech,
            "authorization id differs from the user name",
        ));
    }
    let nonce = expect(mech, &mut attrs, "r", "no nonce")?;
    check_nonce(mech, nonce)?;
    let mut token_auth = false;
    for attr in attrs {
        let (key, value) = attr?;
        if key == "tokenauth" {
            token_auth = value.eq_ignore_ascii_case("true");
        }
    }
    Ok(ClientFirst {
        gs2_header,
        user,
        nonce,
        bare,
        token_auth,
    })
}

pub(super) fn parse_server_first(mech: Mechanism, msg: &[u8]) -> Result<ServerFirst<'_>> {
    let msg = text(mech, msg)?;
    let mut attrs = attributes(mech, msg);
    let nonce = expect(mech, &mut attrs, "r", "no nonce")?;
    check_nonce(mech, nonce)?;
    let salt = base64(
        mech,
        expect(mech, &mut attrs, "s", "no salt")?,
        "salt is not base64",
    )?;
    if salt.is_empty() {
        return Err(malformed(mech, "empty salt"));
    }
    let iterations = expect(mech, &mut attrs, "i", "no iteration count")?;
    if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(mech, "iteration count is not a number"));
    }
    let iterations = iterations.parse::<u64>().unwrap_or(u64::MAX);
    for attr in attrs {
        attr?;
    }
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

pub(super) fn parse_client_final(mech: Mechanism, msg: &[u8]) -> Result<ClientFinal<'_>> {
    let msg = text(mech, msg)?;
    let (without_proof, proof) = msg
        .rsplit_once(",p=")
        .ok_or_else(|| malformed(mech, "no proof"))?;
    if proof.contains(',') {
        return Err(malformed(mech, "the proof is not the last attribute"));
    }
    let mut attrs = attributes(mech, without_proof);
    let cb = expect(mech, &mut attrs, "c", "no channel binding")?;
    let channel_binding = base64(mech, cb, "channel binding is not base64")?;
    let nonce = expect(mech, &mut attrs, "r", "no nonce")?;
    for attr in attrs {
        attr?;
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof: base64(mech, proof, "proof is not base64")?,
    })
}

pub(super) fn parse_server_final(mech: Mechanism, msg: &[u8]) -> Result<ServerFinal> {
    let msg = text(mech, msg)?;
    let first = msg.split(',').next().unwrap_or_default();
    if let Some(v) = first.strip_prefix("v=") {
        return Ok(ServerFinal::Verifier(base64(
            mech,
            v,
            "verifier is not base64",
        )?));
    }
    if let Some(e) = first.strip_prefix("e=") {
        let reason: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect::<String>()
            .to_ascii_lowercase();
        return Ok(ServerFinal::Error(reason));
    }
    Err(malformed(mech, "neither a verifier nor an error"))
}
