//! Where secrets are kept: a file or an environment variable named in the
//! config, read when used, never held in the config snapshot.

use std::path::PathBuf;

/// Where a secret is kept. Only the location is in the config; `Debug`
/// shows the location, never a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// A file (its trailing newline is not part of the secret).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

pub use crate::auth::secret::Secret;

/// Why a secret could not be read. Names where it was looked for, never a
/// value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read secret file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The variable is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The secret is empty.
    #[error("the secret in {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Reads the secret now (a file's trailing newline is dropped).
    pub fn read(&self) -> Result<Secret, SecretError> {
        let (value, from) = match self {
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| SecretError::File {
                    path: path.clone(),
                    message: e.kind().to_string(),
                })?;
                (text, path.display().to_string())
            }
            SecretRef::Env(name) => (
                std::env::var(name).map_err(|_| SecretError::Env(name.clone()))?,
                format!("${name}"),
            ),
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(SecretError::Empty(from));
        }
        Ok(Secret::new(value))
    }
}
