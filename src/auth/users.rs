//! The users file: per user and SCRAM mechanism a salt, an iteration count
//! and the two derived keys (never a password):
//!
//! ```yaml
//! users:
//!   alice:
//!     scram-sha-256: { salt: <base64>, iterations: 8192, stored_key: <base64>, server_key: <base64> }
//!     scram-sha-512: { salt: <base64>, iterations: 8192, stored_key: <base64>, server_key: <base64> }
//! ```
//!
//! [`Users`] is an `Arc` inside, so a reload builds a new one and swaps it
//! in (a `watch` channel or an `ArcSwap` at the caller); logins in flight
//! keep the one they started with.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_yaml::Value;

use super::scram::{self, Mechanism, StoredCredential};
use super::{AuthError, Result, Secret};

/// The credentials of one user, per mechanism.
#[derive(Clone, Debug, Default)]
struct Entry {
    sha256: Option<StoredCredential>,
    sha512: Option<StoredCredential>,
}

/// The loaded users file. Cloning is cheap (one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct Users {
    /// User name to credentials.
    users: Arc<HashMap<String, Entry>>,
}

impl Users {
    /// Reads and checks a users file. Errors name the file and the user and
    /// field at fault, never key material.
    pub fn load(path: &Path) -> Result<Users> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::UsersFileRead {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// Parses the text of a users file; `path` is only for errors.
    pub fn parse(text: &str, path: &Path) -> Result<Users> {
        let fail = |reason: String| AuthError::UsersFile {
            path: path.to_path_buf(),
            reason,
        };
        // serde_yaml's type errors quote the offending value, which may be a
        // key: parse to a Value (syntax errors only give a position) and
        // check the shape here.
        let doc: Value = serde_yaml::from_str(text).map_err(|e| {
            fail(match e.location() {
                Some(l) => format!("not YAML (line {}, column {})", l.line(), l.column()),
                None => "not YAML".to_string(),
            })
        })?;
        let root = mapping(&doc).ok_or_else(|| fail("expected a map with `users:`".into()))?;
        let mut users = HashMap::new();
        for (key, value) in root {
            match key.as_str() {
                Some("users") => {}
                Some(other) => return Err(fail(format!("unknown key `{other}`"))),
                None => return Err(fail("top-level keys must be strings".into())),
            }
            if value.is_null() {
                continue;
            }
            let list = mapping(value).ok_or_else(|| fail("`users` must be a map".into()))?;
            for (name, creds) in list {
                let name = name
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| fail("user names must be non-empty strings".into()))?;
                let entry = parse_entry(creds).map_err(|r| fail(format!("user {name}: {r}")))?;
                users.insert(name.to_string(), entry);
            }
        }
        Ok(Users {
            users: Arc::new(users),
        })
    }

    /// The credential of `user` for `mech`, if the file has one.
    pub fn lookup(&self, user: &str, mech: Mechanism) -> Option<&StoredCredential> {
        let entry = self.users.get(user)?;
        match mech {
            Mechanism::Sha256 => entry.sha256.as_ref(),
            Mechanism::Sha512 => entry.sha512.as_ref(),
        }
    }

    /// The credential PLAIN checks a password against: SCRAM-SHA-512's if
    /// present, else SCRAM-SHA-256's.
    pub fn plain_credential(&self, user: &str) -> Option<(Mechanism, StoredCredential)> {
        [Mechanism::Sha512, Mechanism::Sha256]
            .into_iter()
            .find_map(|m| self.lookup(user, m).map(|c| (m, c.clone())))
    }

    /// How many users the file has.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True if the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn mapping(v: &Value) -> Option<&serde_yaml::Mapping> {
    match v {
        Value::Mapping(m) => Some(m),
        _ => None,
    }
}

fn parse_entry(value: &Value) -> std::result::Result<Entry, String> {
    let creds = mapping(value).ok_or("expected a map of mechanisms")?;
    let mut entry = Entry::default();
    for (mech_name, fields) in creds {
        let name = mech_name.as_str().unwrap_or_default();
        let mech = Mechanism::ALL
            .into_iter()
            .find(|m| m.kafka_name().eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown mechanism `{name}` (scram-sha-256, scram-sha-512)"))?;
        let cred = parse_credential(fields, mech).map_err(|r| format!("{name}.{r}"))?;
        match mech {
            Mechanism::Sha256 => entry.sha256 = Some(cred),
            Mechanism::Sha512 => entry.sha512 = Some(cred),
        }
    }
    if entry.sha256.is_none() && entry.sha512.is_none() {
        return Err("no credential".into());
    }
    Ok(entry)
}

/// Parses one credential; errors start with the field's name.
fn parse_credential(
    value: &Value,
    mech: Mechanism,
) -> std::result::Result<StoredCredential, String> {
    let fields =
        mapping(value).ok_or("salt: expected a map of salt, iterations, stored_key, server_key")?;
    for key in fields.keys() {
        let key = key.as_str().unwrap_or_default();
        if !["salt", "iterations", "stored_key", "server_key"].contains(&key) {
            return Err(format!("{key}: unknown field"));
        }
    }
    let bytes = |field: &str, len: Option<usize>| {
        let text = fields
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{field}: missing, or not a string"))?;
        let bytes = B64
            .decode(text)
            .map_err(|_| format!("{field}: not base64"))?;
        match len {
            Some(len) if bytes.len() != len => Err(format!(
                "{field}: {} bytes, {} needs {len}",
                bytes.len(),
                mech.kafka_name()
            )),
            None if bytes.is_empty() => Err(format!("{field}: empty")),
            _ => Ok(bytes),
        }
    };
    let iterations = fields
        .get("iterations")
        .and_then(Value::as_u64)
        .ok_or("iterations: missing, or not a whole number")?;
    let iterations = mech
        .check_iterations(iterations)
        .map_err(|e| format!("iterations: {e}"))?;
    Ok(StoredCredential {
        salt: bytes("salt", None)?,
        iterations,
        stored_key: bytes("stored_key", Some(mech.key_len()))?,
        server_key: bytes("server_key", Some(mech.key_len()))?,
    })
}

/// The users-file entry of `user` with `password`, for both mechanisms with
/// fresh salts, ready to paste under `users:` (what `kflip users add`
/// prints). Use [`Mechanism::DEFAULT_ITERATIONS`] unless there is a reason.
pub fn entry(user: &str, password: &Secret, iterations: u32) -> Result<String> {
    for mech in Mechanism::ALL {
        mech.check_iterations(iterations.into())?;
    }
    if user.is_empty() {
        return Err(AuthError::InvalidInput {
            what: "user name",
            reason: "empty",
        });
    }
    // A JSON string is a YAML scalar, so any user name stays one key.
    let name = serde_json::to_string(user).map_err(|_| AuthError::InvalidInput {
        what: "user name",
        reason: "cannot be written as YAML",
    })?;
    let mut out = format!("  {name}:\n");
    for mech in Mechanism::ALL {
        let mut salt = [0u8; scram::SALT_LEN];
        scram::random(&mut salt)?;
        let c = StoredCredential::derive(password.expose(), &salt, iterations, mech);
        let _ = writeln!(
            out,
            "    {}: {{ salt: {}, iterations: {}, stored_key: {}, server_key: {} }}",
            mech.kafka_name().to_ascii_lowercase(),
            B64.encode(&c.salt),
            c.iterations,
            B64.encode(&c.stored_key),
            B64.encode(&c.server_key),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::plain;

    const ALICE: &str = "users:\n  alice:\n";

    fn parse(text: &str) -> Result<Users> {
        Users::parse(text, Path::new("/etc/kflip/users.yaml"))
    }

    #[test]
    fn entry_round_trips_through_the_file() {
        let pw = Secret::new("pencil");
        let text = format!(
            "users:\n{}{}",
            entry("alice", &pw, 4096).unwrap(),
            entry("we:ird, \"name\"", &pw, 8192).unwrap()
        );
        assert!(!text.contains("pencil"));
        let users = parse(&text).unwrap();
        assert_eq!(users.len(), 2);
        for mech in Mechanism::ALL {
            let c = users.lookup("alice", mech).unwrap();
            assert_eq!(c.iterations, 4096);
            assert!(plain::verify_password("pencil", c, mech));
            assert!(!plain::verify_password("crayon", c, mech));
            assert!(users.lookup("we:ird, \"name\"", mech).is_some());
        }
        assert!(users.lookup("bob", Mechanism::Sha256).is_none());
        assert_eq!(
            users.plain_credential("alice").unwrap().0,
            Mechanism::Sha512
        );
    }

    #[test]
    fn load_reads_the_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.yaml");
        let e = Users::load(&path).unwrap_err().to_string();
        assert!(e.contains("users.yaml"), "{e}");
        let text = format!(
            "users:\n{}",
            entry("alice", &Secret::new("pw"), 4096).unwrap()
        );
        std::fs::write(&path, text).unwrap();
        assert_eq!(Users::load(&path).unwrap().len(), 1);
        std::fs::write(&path, "users:\n").unwrap();
        assert!(Users::load(&path).unwrap().is_empty());
    }

    #[test]
    fn errors_name_user_and_field_never_values() {
        let key32 = B64.encode([7u8; 32]);
        let cred = |salt: &str, iterations: &str, stored: &str| {
            format!(
                "{ALICE}    scram-sha-256: {{ salt: {salt}, iterations: {iterations}, \
                 stored_key: {stored}, server_key: {key32} }}\n"
            )
        };
        let cases = [
            (
                cred("c2FsdA==", "8192", "SECRETKEY!"),
                "user alice: scram-sha-256.stored_key: not base64",
            ),
            (
                cred("c2FsdA==", "8192", "c2hvcnQ="),
                "user alice: scram-sha-256.stored_key: 5 bytes",
            ),
            (
                cred("c2FsdA==", "100", &key32),
                "user alice: scram-sha-256.iterations:",
            ),
            (
                cred("c2FsdA==", "lots", &key32),
                "user alice: scram-sha-256.iterations: missing",
            ),
            (cred("", "8192", &key32), "user alice: scram-sha-256.salt:"),
            (
                format!("{ALICE}    scram-sha-1: {{}}\n"),
                "unknown mechanism `scram-sha-1`",
            ),
            (
                format!("{ALICE}    scram-sha-256: {{ password: x }}\n"),
                "password: unknown field",
            ),
            ("users:\n  alice: { salt: [\n".to_string(), "not YAML (line"),
            (format!("{ALICE}    {{}}: 1\n"), "unknown mechanism"),
            (
                "users:\n  alice: {}\n".to_string(),
                "user alice: no credential",
            ),
            ("people: {}\n".to_string(), "unknown key `people`"),
            ("- a\n".to_string(), "expected a map"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("users file /etc/kflip/users.yaml: "), "{e}");
            assert!(e.contains(want), "{e} lacks {want}");
            assert!(!e.contains("SECRETKEY") && !e.contains(&key32), "{e}");
        }
    }

    #[test]
    fn entry_refuses_weak_iterations() {
        assert!(entry("alice", &Secret::new("pw"), 1000).is_err());
        assert!(entry("", &Secret::new("pw"), 4096).is_err());
    }
}
