//! The proxy's error type: which side failed, whether a retry helps, and
//! the Kafka error code that says so to a client.
//!
//! anyhow stays at the edges (the CLI); everything a connection, a filter
//! or kflip's own requests to a cluster can fail with is a [`Fault`].

use crate::config::ClusterName;

/// Kafka's INVALID_REQUEST: the request is malformed; retrying it as is
/// cannot help.
pub const INVALID_REQUEST: i16 = 42;
/// Kafka's NETWORK_EXCEPTION: the broker connection failed; clients
/// reconnect and retry.
pub const NETWORK_EXCEPTION: i16 = 13;
/// Kafka's UNKNOWN_SERVER_ERROR.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;

/// Which side a failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something kflip cannot serve.
    Client,
    /// The cluster (a broker) failed or answered something unusable.
    Upstream,
    /// kflip itself.
    Internal,
}

/// Why a connection or a request failed. Messages name the field, the
/// address or the cluster, and never carry secrets or record data.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    /// The client's bytes: a bad frame, header or body, an API or version
    /// kflip does not serve, a timeout waiting for the client.
    #[error("{0}")]
    Client(String),
    /// The cluster: connect, write, read, or a response kflip could not use.
    #[error("upstream {cluster}: {message}")]
    Upstream {
        /// The cluster.
        cluster: ClusterName,
        /// What failed.
        message: String,
    },
    /// kflip itself (an answer it could not encode, a task that ended).
    #[error("{0}")]
    Internal(String),
}

impl Fault {
    /// A fault of the client's request.
    pub fn client(message: impl Into<String>) -> Fault {
        Fault::Client(message.into())
    }

    /// A fault of `cluster`.
    pub fn upstream(cluster: &ClusterName, message: impl std::fmt::Display) -> Fault {
        Fault::Upstream {
            cluster: cluster.clone(),
            message: message.to_string(),
        }
    }

    /// A fault of kflip's own.
    pub fn internal(message: impl std::fmt::Display) -> Fault {
        Fault::Internal(message.to_string())
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Fault::Client(_) => Side::Client,
            Fault::Upstream { .. } => Side::Upstream,
            Fault::Internal(_) => Side::Internal,
        }
    }

    /// Whether the client retrying (on a new connection) can help: an
    /// upstream fault may pass; a malformed request stays malformed.
    pub fn retriable(&self) -> bool {
        matches!(self, Fault::Upstream { .. })
    }

    /// The Kafka error code a response would carry for this fault.
    pub fn kafka_code(&self) -> i16 {
        match self {
            Fault::Client(_) => INVALID_REQUEST,
            Fault::Upstream { .. } => NETWORK_EXCEPTION,
            Fault::Internal(_) => UNKNOWN_SERVER_ERROR,
        }
    }
}

/// Logs why a connection is being closed. Faults of the cluster or of
/// kflip are always warnings. Faults of a client's bytes are warnings too,
/// but at most [`CLIENT_WARNINGS_PER_SECOND`] a second over the whole
/// process: past that, they are counted, and the count is logged with the
/// next warning, so a hostile client cannot decide how much kflip logs.
/// Returns whether it logged a warning.
pub fn log_closing(fault: &Fault, what: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SECOND: AtomicU64 = AtomicU64::new(0);
    static IN_SECOND: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    if fault.side() != Side::Client {
        tracing::warn!(error = %fault, "{what}");
        return true;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if SECOND.swap(now, Ordering::Relaxed) != now {
        IN_SECOND.store(0, Ordering::Relaxed);
    }
    if IN_SECOND.fetch_add(1, Ordering::Relaxed) < CLIENT_WARNINGS_PER_SECOND {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        if suppressed > 0 {
            tracing::warn!(error = %fault, suppressed, "{what} (and {suppressed} more client connections closed for the same kind of reason since the last warning)");
        } else {
            tracing::warn!(error = %fault, "{what}");
        }
        true
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %fault, "{what}");
        false
    }
}

/// Client-fault warnings logged per second at most (see [`log_closing`]).
pub const CLIENT_WARNINGS_PER_SECOND: u64 = 10;

impl From<crate::codec::AnswerError> for Fault {
    fn from(e: crate::codec::AnswerError) -> Fault {
        match e {
            crate::codec::AnswerError::Request(p) => Fault::Client(format!("bad request: {p}")),
            other => Fault::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_faults_are_logged_at_a_bounded_rate() {
        let warned = (0..1000)
            .filter(|_| log_closing(&Fault::client("bad frame"), "closing client connection"))
            .count() as u64;
        // A burst may straddle a second boundary: two seconds' worth at most.
        assert!(
            (1..=2 * CLIENT_WARNINGS_PER_SECOND).contains(&warned),
            "{warned}"
        );
        assert!(log_closing(&Fault::internal("x"), "closing"));
        assert!(log_closing(
            &Fault::upstream(&ClusterName("dc1".into()), "x"),
            "closing"
        ));
    }

    #[test]
    fn each_side_says_whether_a_retry_helps_and_what_to_answer() {
        let c = Fault::client("bad frame");
        assert_eq!(
            (c.side(), c.retriable(), c.kafka_code()),
            (Side::Client, false, 42)
        );
        let u = Fault::upstream(&ClusterName("dc1".into()), "closed");
        assert_eq!(
            (u.side(), u.retriable(), u.kafka_code()),
            (Side::Upstream, true, 13)
        );
        assert_eq!(u.to_string(), "upstream dc1: closed");
        let i = Fault::internal("encode");
        assert_eq!((i.side(), i.retriable()), (Side::Internal, false));
    }
}
