//! TLS configurations, built from the PEM files the config names and
//! rebuilt when a file changes: a renewed certificate is used by the next
//! handshake, and connections already open keep theirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::{ListenerTls, TlsConfig};

/// Why a TLS configuration could not be built. Names the file, never key
/// material.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// rustls refused the combination (e.g. a key that does not match).
    #[error("TLS settings refused: {0}")]
    Refused(String),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_err(path, format!("no usable PEM private key ({e})")))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for c in certs(path)? {
                store.add(c).map_err(|e| file_err(path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A system certificate rustls cannot parse is skipped, as
                // every TLS client does.
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err(TlsError::Refused(
                    "no system root certificates found; set tls.ca_file".into(),
                ));
            }
        }
    }
    Ok(store)
}

/// The files a configuration was built from, with their modification times.
type Stamp = Vec<(PathBuf, Option<SystemTime>)>;

fn stamp(paths: &[&Path]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let t = std::fs::metadata(p).and_then(|m| m.modified()).ok();
            (p.to_path_buf(), t)
        })
        .collect()
}

/// Builds once per set of files, again when one of them changes.
struct Cache<K, V> {
    built: Mutex<HashMap<K, (Stamp, V)>>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Cache<K, V> {
    fn new() -> Self {
        Cache {
            built: Mutex::new(HashMap::new()),
        }
    }

    fn get(
        &self,
        key: &K,
        files: &[&Path],
        build: impl FnOnce() -> Result<V, TlsError>,
    ) -> Result<V, TlsError> {
        let now = stamp(files);
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, v)) = built.get(key) {
            if *s == now {
                return Ok(v.clone());
            }
        }
        let v = build()?;
        if built.len() > 64 {
            built.clear();
        }
        built.insert(key.clone(), (now, v.clone()));
        Ok(v)
    }
}

/// The rustls client configuration for a cluster's `tls:` settings.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsError> {
    static CACHE: OnceLock<Cache<TlsConfig, Arc<ClientConfig>>> = OnceLock::new();
    let mut files: Vec<&Path> = Vec::new();
    files.extend(tls.ca_file.as_deref());
    if let Some((c, k)) = &tls.client_cert {
        files.push(c);
        files.push(k);
    }
    CACHE.get_or_init(Cache::new).get(tls, &files, || {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused(e.to_string()))?
            .with_root_certificates(roots(tls.ca_file.as_deref())?);
        let config = match &tls.client_cert {
            Some((cert, k)) => builder
                .with_client_auth_cert(certs(cert)?, key(k)?)
                .map_err(|e| file_err(k, format!("does not match {}: {e}", cert.display())))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    })
}

/// The rustls server configuration for `proxy.tls`.
pub fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, TlsError> {
    static CACHE: OnceLock<Cache<ListenerTls, Arc<ServerConfig>>> = OnceLock::new();
    let mut files: Vec<&Path> = vec![&tls.cert_file, &tls.key_file];
    files.extend(tls.client_ca_file.as_deref());
    CACHE.get_or_init(Cache::new).get(tls, &files, || {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused(e.to_string()))?;
        let builder = match &tls.client_ca_file {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(Some(ca))?),
                    provider(),
                )
                .build()
                .map_err(|e| file_err(ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs(&tls.cert_file)?, key(&tls.key_file)?)
            .map_err(|e| {
                file_err(
                    &tls.key_file,
                    format!("does not match {}: {e}", tls.cert_file.display()),
                )
            })?;
        Ok(Arc::new(config))
    })
}
