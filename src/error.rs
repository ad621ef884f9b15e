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
