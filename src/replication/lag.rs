//! The engine's periodic lag log line.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;

/// Logs lag of every flow every `every` until `stop`: info when caught up,
/// warn when records are waiting.
pub async fn log_lag(engine: Arc<Engine>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        for f in engine.lag() {
            let records: i64 = f.partitions.iter().map(|p| p.records).sum();
            let seconds = f.partitions.iter().map(|p| p.seconds).fold(0.0, f64::max);
            let sync = f
                .offset_sync_age
                .map(|s| format!("{s:.1}s ago"))
                .unwrap_or_else(|| "not yet".into());
            if records > 0 {
                tracing::warn!(flow = %f.flow, partitions = f.partitions.len(), lag_records = records, lag_seconds = seconds, offset_sync = %sync, "replication lag");
            } else {
                tracing::info!(flow = %f.flow, partitions = f.partitions.len(), offset_sync = %sync, "replication caught up");
            }
        }
    }
}
