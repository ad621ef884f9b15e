//! PLAIN (RFC 4616): `authzid NUL authcid NUL password`. kflip checks the
//! password against the same salted credentials SCRAM uses (derive with the
//! stored salt and iterations, compare stored keys in constant time), so one
//! users file serves both mechanisms and holds no password.

use std::fmt;

use subtle::ConstantTimeEq;

use super::scram::{Mechanism, StoredCredential};
use super::{AuthError, Result, Secret};

/// The longest PLAIN message kflip reads.
pub const MAX_MESSAGE: usize = 1024;

const NAME: &str = "PLAIN";

/// A client's PLAIN message, borrowed from the bytes it arrived in.
pub struct PlainMessage<'a> {
    /// The user logging in (the authentication identity).
    pub user: &'a str,
    /// The password, in the clear.
    pub password: &'a str,
}

impl fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

fn malformed(reason: &'static str) -> AuthError {
    AuthError::Malformed {
        mechanism: NAME,
        reason,
    }
}

/// Parses a client's PLAIN message. An authorization id other than the user
/// (acting as someone else) is refused, as Kafka does.
pub fn parse(msg: &[u8]) -> Result<PlainMessage<'_>> {
    if msg.len() > MAX_MESSAGE {
        return Err(malformed("message too long"));
    }
    let text = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three fields separated by NUL"));
    };
    if user.is_empty() {
        return Err(malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(malformed("empty password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(malformed("authorization id differs from the user name"));
    }
    Ok(PlainMessage { user, password })
}

/// The PLAIN message kflip sends upstream (no authorization id, as Kafka's
/// client sends it).
pub fn build(user: &str, password: &Secret) -> Result<Vec<u8>> {
    let invalid = |what, reason| AuthError::InvalidInput { what, reason };
    if user.is_empty() || user.contains('\0') {
        return Err(invalid("PLAIN user name", "empty or contains NUL"));
    }
    let password = password.expose();
    if password.is_empty() || password.contains('\0') {
        return Err(invalid("PLAIN password", "empty or contains NUL"));
    }
    let mut msg = Vec::with_capacity(user.len() + password.len() + 2);
    msg.push(0);
    msg.extend_from_slice(user.as_bytes());
    msg.push(0);
    msg.extend_from_slice(password.as_bytes());
    Ok(msg)
}

/// True if `password` is the one `credential` was derived from.
pub fn verify_password(password: &str, credential: &StoredCredential, mech: Mechanism) -> bool {
    let derived = StoredCredential::derive(password, &credential.salt, credential.iterations, mech);
    bool::from(derived.stored_key.ct_eq(&credential.stored_key))
}

/// Runs a whole PLAIN login: parses `msg`, looks the user up (`lookup`
/// gives the credential and its mechanism, e.g.
/// [`Users::plain_credential`](super::users::Users::plain_credential)) and
/// checks the password. An unknown user costs the same key derivation and
/// fails the same way as a wrong password. Returns the user name.
pub fn authenticate<F>(msg: &[u8], lookup: F) -> Result<String>
where
    F: FnOnce(&str) -> Option<(Mechanism, StoredCredential)>,
{
    let m = parse(msg)?;
    let (mech, credential, known) = match lookup(m.user) {
        Some((mech, c)) => (mech, c, true),
        None => {
            let mech = Mechanism::Sha512;
            let c = StoredCredential::stand_in(m.user, mech, Mechanism::DEFAULT_ITERATIONS)?;
            (mech, c, false)
        }
    };
    if verify_password(m.password, &credential, mech) && known {
        Ok(m.user.to_string())
    } else {
        Err(AuthError::AuthenticationFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(user: &str) -> Option<(Mechanism, StoredCredential)> {
        let mech = Mechanism::Sha256;
        (user == "alice").then(|| (mech, StoredCredential::derive("pw", b"salt", 4096, mech)))
    }

    #[test]
    fn round_trip() {
        let msg = build("alice", &Secret::new("pw")).unwrap();
        assert_eq!(msg, b"\0alice\0pw");
        let m = parse(&msg).unwrap();
        assert_eq!((m.user, m.password), ("alice", "pw"));
        assert!(!format!("{m:?}").contains("pw\""));
        assert_eq!(authenticate(&msg, alice).unwrap(), "alice");
        assert_eq!(authenticate(b"alice\0alice\0pw", alice).unwrap(), "alice");
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        for msg in [&b"\0alice\0nope"[..], b"\0bob\0pw"] {
            let e = authenticate(msg, alice).unwrap_err();
            assert!(matches!(e, AuthError::AuthenticationFailed), "{e}");
        }
    }

    #[test]
    fn refuses_bad_messages() {
        let long = [b"\0alice\0".as_slice(), &[b'x'; MAX_MESSAGE]].concat();
        for msg in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"\0alice\0",
            b"bob\0alice\0pw",
            b"\0alice\0pw\0more",
            b"\0al\xffice\0pw",
            &long,
        ] {
            assert!(parse(msg).is_err(), "{:?}", String::from_utf8_lossy(msg));
            assert!(authenticate(msg, alice).is_err());
        }
        assert!(build("", &Secret::new("pw")).is_err());
        assert!(build("a\0b", &Secret::new("pw")).is_err());
        assert!(build("alice", &Secret::new("")).is_err());
    }

    #[test]
    fn same_credential_serves_scram() {
        let mech = Mechanism::Sha512;
        let c = StoredCredential::derive("pencil", b"NaCl", 4096, mech);
        assert!(verify_password("pencil", &c, mech));
        assert!(!verify_password("pencil", &c, Mechanism::Sha256));
        assert!(!verify_password("Pencil", &c, mech));
    }
}
