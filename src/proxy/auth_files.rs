//! The files client authentication reads (users, JWKS, principals),
//! re-read when they change with the last good version kept, and the login
//! each session uses upstream for its client's principal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Deserialize;

use super::Shared;
use crate::auth::oauth::JwtValidator;
use crate::auth::users::Users;
use crate::config::security::credentials;
use crate::config::{ClusterName, Credentials, SaslFile};
use crate::error::Fault;

/// Files kflip re-reads when they change, keeping the last good version.
#[derive(Default)]
pub(crate) struct AuthFiles {
    pub(super) users: Mutex<Option<Loaded<Users>>>,
    pub(super) jwks: Mutex<Option<Loaded<JwtValidator>>>,
    principals: Mutex<Option<Loaded<Principals>>>,
}

pub(super) struct Loaded<T> {
    path: PathBuf,
    stamp: Option<SystemTime>,
    value: std::sync::Arc<T>,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The file's current contents, re-read if it changed; on a failed re-read
/// the last good version, with a warning.
pub(super) fn current<T>(
    slot: &Mutex<Option<Loaded<T>>>,
    path: &Path,
    what: &str,
    load: impl FnOnce(&Path) -> Result<T, String>,
) -> Result<std::sync::Arc<T>, Fault> {
    let stamp = mtime(path);
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = slot.as_ref() {
        if l.path == path && l.stamp == stamp {
            return Ok(l.value.clone());
        }
    }
    match load(path) {
        Ok(v) => {
            let value = std::sync::Arc::new(v);
            if slot.is_some() {
                tracing::info!(file = %path.display(), "{what} reloaded");
            }
            *slot = Some(Loaded {
                path: path.to_path_buf(),
                stamp,
                value: value.clone(),
            });
            Ok(value)
        }
        Err(e) => match slot.as_mut() {
            Some(l) if l.path == path => {
                tracing::warn!(file = %path.display(), error = %e, "{what} no longer loads; keeping the last good one");
                l.stamp = stamp;
                Ok(l.value.clone())
            }
            _ => Err(Fault::internal(format!("{what}: {e}"))),
        },
    }
}

/// `principals:` principal -> cluster name -> login.
pub(crate) struct Principals(HashMap<String, HashMap<String, Credentials>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    principals: HashMap<String, HashMap<String, SaslFile>>,
}

fn load_principals(path: &Path) -> Result<Principals, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: PrincipalsFile = serde_yaml::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        format!("{} is not a principals file{at}", path.display())
    })?;
    let mut out = HashMap::new();
    for (principal, clusters) in file.principals {
        let mut logins = HashMap::new();
        for (cluster, login) in clusters {
            let key = format!("principals.{principal}.{cluster}");
            logins.insert(
                cluster,
                credentials(&key, login).map_err(|e| e.to_string())?,
            );
        }
        out.insert(principal, logins);
    }
    Ok(Principals(out))
}

impl Shared {
    /// How a session of `principal` logs in to `cluster`: its own login
    /// from the principals file, or the cluster's. `Err` names what is
    /// missing, for the client.
    pub(crate) fn login_for(
        &self,
        principal: Option<&str>,
        cluster: &ClusterName,
    ) -> Result<Option<Credentials>, String> {
        let default = self.board.cluster(cluster).sasl;
        let cfg = self.proxy_config();
        let (Some(principal), Some(path)) = (
            principal,
            cfg.sasl.as_ref().and_then(|s| s.principals_file.as_ref()),
        ) else {
            return Ok(default);
        };
        let principals = current(
            &self.auth.principals,
            path,
            "principals file",
            load_principals,
        )
        .map_err(|e| e.to_string())?;
        match principals.0.get(principal) {
            None => Ok(default),
            Some(logins) => match logins.get(cluster.as_str()) {
                Some(c) => Ok(Some(c.clone())),
                None => Err(format!(
                    "principal {principal} has no login for cluster {cluster} in the principals file"
                )),
            },
        }
    }
}
