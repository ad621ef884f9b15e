//! Hot reload: watch the config file's directory, debounce, validate, publish.
//!
//! The directory is watched rather than the file because Kubernetes updates a
//! mounted ConfigMap by swapping a `..data` symlink inside it, which a watch on
//! the file itself never sees. A new snapshot is published on a
//! [`tokio::sync::watch`] channel only when it validates and differs from the
//! running one; an invalid file leaves the running snapshot in place and its
//! error in [`ReloadStatus`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{load, Config};

/// How long the directory must be quiet before a reload; editors and
/// Kubernetes write in several steps.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// A directory that never goes quiet still gets reloaded this often.
const MAX_DEBOUNCE: Duration = Duration::from_millis(1000);

/// How often the file is re-read even without a change event, in case an
/// event was lost (network filesystems, overflowing inotify queues).
const POLL: Duration = Duration::from_secs(10);

/// The outcome of the latest reload attempt, for status reporting.
#[derive(Debug, Default)]
pub struct ReloadStatus {
    /// Why the newest file on disk was rejected, if it was.
    pub last_error: Mutex<Option<String>>,
    /// How many snapshots were published after the first.
    pub reloads: std::sync::atomic::AtomicU64,
    /// How many rejections happened (a file rejected for the same reason
    /// again, as the periodic re-read finds it, counts once).
    pub rejected: std::sync::atomic::AtomicU64,
}

/// Watches `path` and publishes every new valid config on `tx` until `stop`.
pub async fn watch_config(
    path: PathBuf,
    tx: watch::Sender<Arc<Config>>,
    status: Arc<ReloadStatus>,
    stop: CancellationToken,
) -> Result<(), notify::Error> {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<()>();
    let name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| concerns_config(p, name.as_deref())) {
                let _ = ev_tx.send(());
            }
        }
    })?;
    let dir = watch_dir(&path);
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::debug!(dir = %dir.display(), "watching config directory");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            ev = ev_rx.recv() => {
                if ev.is_none() {
                    return Ok(());
                }
                // Debounce: wait until no event arrived for DEBOUNCE, but
                // never longer than MAX_DEBOUNCE in all.
                let until = tokio::time::Instant::now() + MAX_DEBOUNCE;
                while tokio::time::Instant::now() < until {
                    match tokio::time::timeout(DEBOUNCE, ev_rx.recv()).await {
                        Ok(Some(())) => continue,
                        _ => break,
                    }
                }
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        reload_once(&path, &tx, &status);
    }
}

/// Whether an event on `p` may change the config: the file itself, or the
/// `..data`-style entries through which Kubernetes swaps a ConfigMap.
/// Other files in the directory (logs, say) are ignored.
fn concerns_config(p: &Path, name: Option<&std::ffi::OsStr>) -> bool {
    match p.file_name() {
        Some(f) => Some(f) == name || f.to_string_lossy().starts_with(".."),
        None => true,
    }
}

/// The directory to watch for `path`.
fn watch_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Loads the file once; publishes it if valid and changed. Returns whether a
/// new snapshot was published.
pub fn reload_once(path: &Path, tx: &watch::Sender<Arc<Config>>, status: &ReloadStatus) -> bool {
    match load(path) {
        Ok(cfg) => {
            *status.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            if **tx.borrow() == cfg {
                return false;
            }
            status
                .reloads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(path = %path.display(), "config reloaded");
            tx.send_replace(Arc::new(cfg));
            true
        }
        Err(e) => {
            let msg = e.to_string();
            let mut last = status.last_error.lock().unwrap_or_else(|e| e.into_inner());
            if last.as_deref() != Some(msg.as_str()) {
                status
                    .rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    path = %path.display(),
                    error = %msg,
                    "config reload rejected; keeping the running config"
                );
            }
            *last = Some(msg);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "clusters:\n  dc1: { bootstrap: \"h:1\" }\n  dc2: { bootstrap: \"h:2\" }\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\n";

    #[test]
    fn invalid_file_keeps_old_snapshot_and_records_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kflip.yaml");
        std::fs::write(&path, A).unwrap();
        let (tx, rx) = watch::channel(Arc::new(load(&path).unwrap()));
        let status = ReloadStatus::default();

        std::fs::write(&path, A.replace("active: dc1", "active: nope")).unwrap();
        assert!(!reload_once(&path, &tx, &status));
        assert_eq!(rx.borrow().proxy.as_ref().unwrap().active.as_str(), "dc1");
        let err = status.last_error.lock().unwrap().clone().unwrap();
        assert!(err.contains("proxy.active"), "{err}");

        std::fs::write(&path, A.replace("active: dc1", "active: dc2")).unwrap();
        assert!(reload_once(&path, &tx, &status));
        assert_eq!(rx.borrow().proxy.as_ref().unwrap().active.as_str(), "dc2");
        assert!(status.last_error.lock().unwrap().is_none());
        // Same content again: nothing new is published.
        assert!(!reload_once(&path, &tx, &status));
    }
}
