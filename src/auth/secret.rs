//! [`Secret`]: a password, token or client secret that never prints, and
//! [`SecretSource`]: where the config says to find one. A source is read
//! each time [`SecretSource::load`] is called, so a rotated file is picked
//! up on the next login without a reload.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroize;

use super::{AuthError, Result};

/// A secret string. `Debug` and `Display` print `***`; there is no
/// `Serialize`; the memory is wiped on drop. Read it with [`Secret::expose`]
/// only where it is put on the wire or into a key derivation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret is kept, as the config names it:
/// `{ file: /run/secrets/kafka-password }` or `{ env: KAFKA_PASSWORD }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSource")]
pub enum SecretSource {
    /// A file whose whole content is the secret (trailing newlines trimmed).
    File(PathBuf),
    /// An environment variable of kflip's process.
    Env(String),
}

/// The config's shape of a [`SecretSource`]: a map with one key (a plain
/// struct, as serde_yaml reads enums only from YAML tags).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    file: Option<PathBuf>,
    env: Option<String>,
}

impl TryFrom<RawSource> for SecretSource {
    type Error = &'static str;

    fn try_from(raw: RawSource) -> std::result::Result<Self, Self::Error> {
        match (raw.file, raw.env) {
            (Some(path), None) => Ok(SecretSource::File(path)),
            (None, Some(name)) => Ok(SecretSource::Env(name)),
            _ => Err("a secret is either `file: PATH` or `env: NAME`"),
        }
    }
}

impl SecretSource {
    /// Reads the secret now. Errors name the file or variable, never the value.
    pub fn load(&self) -> Result<Secret> {
        match self {
            SecretSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| AuthError::SecretFile {
                    path: path.clone(),
                    source,
                })?;
                from_bytes(bytes, self)
            }
            SecretSource::Env(name) => from_env_value(name, std::env::var_os(name), self),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// The secret of an environment variable's value (split out so tests need
/// not change the process environment).
fn from_env_value(name: &str, value: Option<OsString>, source: &SecretSource) -> Result<Secret> {
    let value = value.ok_or_else(|| AuthError::SecretEnvUnset {
        name: name.to_string(),
    })?;
    from_bytes(value.into_encoded_bytes(), source)
}

fn from_bytes(bytes: Vec<u8>, source: &SecretSource) -> Result<Secret> {
    let invalid = |reason| AuthError::SecretInvalid {
        origin: source.to_string(),
        reason,
    };
    let mut text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            e.into_bytes().zeroize();
            return Err(invalid("not UTF-8"));
        }
    };
    // Editors and `echo` add a newline; no password ends with one.
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    let secret = Secret(text);
    if secret.0.is_empty() {
        return Err(invalid("empty"));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_is_trimmed_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\r\n\n").unwrap();
        let source = SecretSource::File(path.clone());
        assert_eq!(source.load().unwrap().expose(), "s3cret");
        std::fs::write(&path, "rotated \n").unwrap();
        assert_eq!(source.load().unwrap().expose(), "rotated ");
    }

    #[test]
    fn errors_name_the_source_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SecretSource::File(dir.path().join("nope"));
        let e = missing.load().unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");

        let path = dir.path().join("empty");
        std::fs::write(&path, "\n").unwrap();
        let e = SecretSource::File(path).load().unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");

        let path = dir.path().join("binary");
        std::fs::write(&path, b"pw\xff\xfe").unwrap();
        let e = SecretSource::File(path).load().unwrap_err().to_string();
        assert!(e.contains("binary") && e.contains("UTF-8"), "{e}");

        let name = "KFLIP_AUTH_TEST_SURELY_UNSET_VARIABLE";
        let e = SecretSource::Env(name.into())
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains(name), "{e}");
    }

    #[test]
    fn env_value() {
        let source = SecretSource::Env("PW".into());
        let s = from_env_value("PW", Some("from-env\n".into()), &source).unwrap();
        assert_eq!(s.expose(), "from-env");
        let e = from_env_value("PW", Some("".into()), &source).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the secret in environment variable PW is empty"
        );
    }

    #[test]
    fn config_shape() {
        let f: SecretSource = serde_yaml::from_str("file: /run/pw").unwrap();
        assert_eq!(f, SecretSource::File("/run/pw".into()));
        let e: SecretSource = serde_yaml::from_str("env: PW").unwrap();
        assert_eq!(e, SecretSource::Env("PW".into()));
        assert!(serde_yaml::from_str::<SecretSource>("{ file: a, env: B }").is_err());
        assert!(serde_yaml::from_str::<SecretSource>("{ value: x }").is_err());
    }
}
