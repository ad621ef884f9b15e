//! The engine's errors: which side of a flow failed (its source cluster,
//! its target cluster, the state topic on the target, or kflip itself) and
//! whether trying again can help.
//!
//! Messages name the operation, the side and the cluster by its config
//! name. They never carry a client config's values: librdkafka's config
//! errors echo the value they refuse, which for a SASL or TLS setting is a
//! secret, so [`Cause`] shows only the key.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Where an engine error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The cluster a flow reads.
    Source,
    /// The cluster a flow writes.
    Target,
    /// The state topic (checkpoints) on the target cluster.
    StateTopic,
    /// kflip itself: a bug, or a state it cannot handle.
    Internal,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source cluster",
            Side::Target => "target cluster",
            Side::StateTopic => "state topic's cluster",
            Side::Internal => "kflip",
        })
    }
}

/// Why a request to a cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// librdkafka's error (shown without config values, see the module docs).
    #[error("{}", rdkafka_message(.0))]
    Rdkafka(KafkaError),
    /// A broker's error code for one topic or partition of a request.
    #[error("{0}")]
    Broker(RDKafkaErrorCode),
    /// kflip's own client failed (connect or exchange).
    #[error("{0}")]
    Client(#[from] crate::kafka::ClientError),
    /// No answer within the bound.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// A login secret could not be read (it names where, never a value),
    /// or the login is one the engine's clients cannot use.
    #[error("{0}")]
    Login(#[from] crate::cluster::rdkafka::ConfigError),
    /// A shared flow's instance was fenced by another, or its transaction
    /// failed: it starts again from what was committed.
    #[error("this instance was fenced by another, or its transaction failed; starting again from what was committed")]
    Fenced,
    /// The batch writer stopped; the flow starts again from its checkpoint.
    #[error("{0}")]
    Writer(String),
}

impl From<KafkaError> for Cause {
    fn from(e: KafkaError) -> Cause {
        Cause::Rdkafka(e)
    }
}

/// librdkafka's message, less the refused value of a config error.
fn rdkafka_message(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => {
            format!("client config error: {desc} (key {key})")
        }
        e => e.to_string(),
    }
}

impl Cause {
    /// Whether the same request can succeed later with nothing changed by
    /// an operator (a broker coming back, a leader moving, a timeout).
    pub fn retriable(&self) -> bool {
        match self {
            // A mounted secret file may appear; the operator is told meanwhile.
            Cause::TimedOut(_) | Cause::Client(_) | Cause::Fenced | Cause::Writer(_) => true,
            Cause::Login(e) => matches!(e, crate::cluster::rdkafka::ConfigError::Secret(_)),
            Cause::Broker(code) => code_retriable(*code),
            Cause::Rdkafka(KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)) => false,
            Cause::Rdkafka(e) => e.rdkafka_error_code().is_none_or(code_retriable),
        }
    }
}

/// Codes only an operator can fix: permissions, logins, a request the
/// cluster refuses as such.
fn code_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    !matches!(
        code,
        C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidConfig
            | C::InvalidPartitions
            | C::InvalidReplicationFactor
            | C::InvalidReplicaAssignment
            | C::InvalidRequest
            | C::PolicyViolation
            | C::UnsupportedVersion
            | C::UnsupportedFeature
            | C::InvalidArgument
            | C::Fatal
    )
}

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to one of a flow's clusters failed.
    #[error("{op} on {side} {cluster}: {cause}")]
    Cluster {
        /// Which cluster of the flow, or its state topic.
        side: Side,
        /// The cluster's name in the config.
        cluster: String,
        /// What was asked, e.g. `create topic orders`.
        op: String,
        /// The failure (boxed: errors travel in every `Result` of the
        /// engine, and most of them are `Ok`).
        #[source]
        cause: Box<Cause>,
    },
    /// Creating a target topic would weaken durability: the target has
    /// fewer brokers than the replication factor.
    #[error(
        "replication factor {rf} needs {rf} brokers but the target has {brokers}; \
         not creating a weaker topic (set replication_factor on the flow to choose one explicitly)"
    )]
    TooFewBrokers {
        /// The replication factor wanted.
        rf: i16,
        /// The target's brokers.
        brokers: usize,
    },
    /// kflip itself failed.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A failure of `op` on the `side` cluster called `cluster`.
    pub fn cluster(
        side: Side,
        cluster: impl Into<String>,
        op: impl Into<String>,
        cause: impl Into<Cause>,
    ) -> Error {
        Error::Cluster {
            side,
            cluster: cluster.into(),
            op: op.into(),
            cause: Box::new(cause.into()),
        }
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Error::Cluster { side, .. } => *side,
            Error::TooFewBrokers { .. } => Side::Target,
            Error::Internal(_) => Side::Internal,
        }
    }

    /// Whether trying again, with nothing changed by an operator, can help.
    pub fn retriable(&self) -> bool {
        match self {
            Error::Cluster { cause, .. } => cause.retriable(),
            Error::TooFewBrokers { .. } | Error::Internal(_) => false,
        }
    }

    /// The same failure, counted against the state topic: `self` was a
    /// request to the target made for it.
    pub fn on_state_topic(self) -> Error {
        match self {
            Error::Cluster {
                side: Side::Target,
                cluster,
                op,
                cause,
            } => Error::Cluster {
                side: Side::StateTopic,
                cluster,
                op,
                cause,
            },
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaConfRes;

    #[test]
    fn messages_name_the_side_and_never_a_config_value() {
        let e = Error::cluster(
            Side::Target,
            "dc2",
            "create topic t",
            Cause::Broker(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("create topic t on target cluster dc2: "),
            "{text}"
        );
        assert!(!e.retriable());
        assert_eq!(e.on_state_topic().side(), Side::StateTopic);
        let secret = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let e = Error::cluster(Side::Source, "dc1", "create the source consumer", secret);
        let text = e.to_string();
        assert!(
            text.contains("sasl.password") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(!e.retriable(), "a bad config stays bad");
    }

    #[test]
    fn transient_failures_are_retriable() {
        let e = Error::cluster(
            Side::Source,
            "dc1",
            "metadata",
            KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert!(e.retriable());
        assert!(Error::cluster(
            Side::Target,
            "dc2",
            "read",
            Cause::TimedOut(Duration::from_secs(1))
        )
        .retriable());
        assert!(!Error::TooFewBrokers { rf: 3, brokers: 1 }.retriable());
        assert_eq!(Error::Internal("x".into()).side(), Side::Internal);
    }
}
