//! A minimal Kafka client for kflip's own requests to clusters: probing
//! ApiVersions and fetching Metadata, and consumer-group admin
//! ([`groups`]). It speaks one request at a time, or a pipelined batch of
//! one kind ([`KafkaConn::send_many`]).

pub mod acl;
pub mod acls;
pub mod groups;
pub mod leaders;
pub mod sasl;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use tokio::io::AsyncWriteExt;

use crate::cluster::Stream;
use crate::codec::frame::{read_frame, Frame};
use crate::config::{ClusterConfig, Credentials};

/// Supported version range per API key, as a broker's ApiVersions
/// response lists it.
pub type VersionTable = std::collections::BTreeMap<i16, VersionRange>;

/// Largest response kflip's own client accepts.
const MAX_RESPONSE: usize = 64 << 20;

/// Most requests [`KafkaConn::send_many`] keeps in flight on one
/// connection: enough to hide the round trip, few enough that the requests
/// written ahead fit the socket buffers while the broker answers.
pub const PIPELINE: usize = 64;

/// Why a request to a cluster failed. Messages name the address.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed or timed out.
    #[error(transparent)]
    Connect(#[from] crate::cluster::ConnectError),
    /// The exchange failed after connecting.
    #[error("request to {addr} failed: {message}")]
    Exchange {
        /// The broker.
        addr: String,
        /// Why.
        message: String,
    },
    /// The SASL login was refused or failed. Never carries a secret.
    #[error("SASL {mechanism} login to {addr} failed: {message}")]
    Login {
        /// The broker.
        addr: String,
        /// The mechanism.
        mechanism: crate::config::Mechanism,
        /// Why (the broker's error message, or kflip's).
        message: String,
    },
}

impl ClientError {
    /// Whether the cluster refused the login itself (wrong credentials):
    /// trying again with the same ones cannot help.
    pub fn is_refused_login(&self) -> bool {
        matches!(self, ClientError::Login { .. })
    }
}

/// One connection to one broker, logged in.
pub struct KafkaConn {
    stream: Stream,
    addr: String,
    next_correlation: i32,
    timeout: Duration,
    /// The session lifetime the broker gave the last SaslAuthenticate
    /// (KIP-368, `connections.max.reauth.ms`): the broker closes the
    /// connection on its first request after it. `None`: no SASL login, or
    /// the session does not expire.
    session_lifetime: Option<Duration>,
}

impl KafkaConn {
    /// Connects to `addr` (`host:port`) of `cluster` within `timeout`,
    /// with the cluster's TLS and SASL login.
    pub async fn connect(
        cluster: &ClusterConfig,
        addr: &str,
        timeout: Duration,
    ) -> Result<KafkaConn, ClientError> {
        KafkaConn::open(cluster, &[addr], timeout, cluster.sasl.as_ref()).await
    }

    /// Connects to the first reachable bootstrap address of `cluster`.
    pub async fn connect_any(
        cluster: &ClusterConfig,
        timeout: Duration,
    ) -> Result<KafkaConn, ClientError> {
        KafkaConn::open(cluster, &cluster.bootstrap, timeout, cluster.sasl.as_ref()).await
    }

    /// Connects to the first of `addrs` that answers, with `cluster`'s TLS,
    /// and logs in with `login` (a principal's own credentials for this
    /// cluster, or the cluster's; none for a cluster without SASL).
    pub async fn open<S: AsRef<str>>(
        cluster: &ClusterConfig,
        addrs: &[S],
        timeout: Duration,
        login: Option<&Credentials>,
    ) -> Result<KafkaConn, ClientError> {
        let (stream, addr) = crate::cluster::connect(cluster, addrs, timeout).await?;
        let mut conn = KafkaConn {
            stream,
            addr,
            next_correlation: 1,
            timeout,
            session_lifetime: None,
        };
        if let Some(login) = login {
            sasl::login(&mut conn, login).await?;
        }
        Ok(conn)
    }

    /// The logged-in stream, for the proxy to forward a client's requests
    /// on.
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// The logged-in stream and how long its SASL session lasts from the
    /// login (`None`: it does not expire), for the proxy to forward a
    /// client's requests on and log in again before the broker closes it.
    pub fn into_parts(self) -> (Stream, Option<Duration>) {
        (self.stream, self.session_lifetime)
    }

    /// The broker address this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request at `version` and waits for its response.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let mut out = self.send_many(std::slice::from_ref(req), version).await?;
        out.pop()
            .ok_or_else(|| self.exchange_err("no response".into()))
    }

    /// Sends `reqs` at `version` pipelined, at most [`PIPELINE`] in flight,
    /// and returns their responses in order. A broker answers the requests
    /// of one connection in the order they came, so this saves a round trip
    /// per request over [`KafkaConn::send`] without giving up ordering. Any
    /// failure fails the whole call: the responses still in flight are lost
    /// with the connection, so the caller drops it.
    pub async fn send_many<R: Request>(
        &mut self,
        reqs: &[R],
        version: i16,
    ) -> Result<Vec<R::Response>, ClientError> {
        let mut out = Vec::with_capacity(reqs.len());
        for window in reqs.chunks(PIPELINE) {
            let first = self.next_correlation;
            let mut buf = BytesMut::new();
            for req in window {
                self.encode(&mut buf, req, version)?;
            }
            let n = window.len();
            let exchange = async {
                self.stream
                    .write_all(&buf)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut frames = Vec::with_capacity(n);
                for _ in 0..n {
                    frames.push(
                        read_frame(&mut self.stream, MAX_RESPONSE)
                            .await
                            .map_err(|e| e.to_string())?
                            .ok_or_else(|| "connection closed before the response".to_string())?,
                    );
                }
                Ok::<_, String>(frames)
            };
            let frames = tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| self.exchange_err(format!("no response within {:?}", self.timeout)))?
                .map_err(|m| self.exchange_err(m))?;
            for (i, frame) in frames.iter().enumerate() {
                let expected = first.wrapping_add(i as i32);
                out.push(self.decode::<R>(frame, version, expected)?);
            }
        }
        Ok(out)
    }

    fn exchange_err(&self, message: String) -> ClientError {
        ClientError::Exchange {
            addr: self.addr.clone(),
            message,
        }
    }

    /// Appends `req` as a length-prefixed frame with the next correlation id.
    fn encode<R: Request>(
        &mut self,
        buf: &mut BytesMut,
        req: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("kflip")));
        let start = buf.len();
        buf.put_i32(0);
        header
            .encode(buf, R::header_version(version))
            .map_err(|e| self.exchange_err(e.to_string()))?;
        req.encode(buf, version)
            .map_err(|e| self.exchange_err(e.to_string()))?;
        let len = (buf.len() - start - 4) as i32;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// The response in `frame` to the request with `correlation_id`.
    fn decode<R: Request>(
        &self,
        frame: &Frame,
        version: i16,
        correlation_id: i32,
    ) -> Result<R::Response, ClientError> {
        let mut payload = Bytes::copy_from_slice(frame.payload());
        let rh = ResponseHeader::decode(&mut payload, R::Response::header_version(version))
            .map_err(|e| self.exchange_err(e.to_string()))?;
        if rh.correlation_id != correlation_id {
            return Err(self.exchange_err(format!(
                "correlation id {} does not match request {correlation_id}",
                rh.correlation_id
            )));
        }
        R::Response::decode(&mut payload, version).map_err(|e| self.exchange_err(e.to_string()))
    }

    /// Asks which API versions the broker supports.
    pub async fn api_versions(&mut self) -> Result<VersionTable, ClientError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kflip"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp = self.send(&req, 3).await?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: an old broker; v0 is always understood.
            resp = self.send(&req, 0).await?;
        }
        if resp.error_code != 0 {
            return Err(ClientError::Exchange {
                addr: self.addr.clone(),
                message: format!("ApiVersions error code {}", resp.error_code),
            });
        }
        Ok(resp
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect())
    }

    /// Fetches the cluster's brokers (Metadata for no topics).
    pub async fn brokers(
        &mut self,
        versions: &VersionTable,
    ) -> Result<MetadataResponse, ClientError> {
        let range = versions
            .get(&(ApiKey::Metadata as i16))
            .copied()
            .unwrap_or(VersionRange { min: 1, max: 1 });
        // v1+: an empty topic list means "no topics" (v0 would mean all).
        let version = range.max.min(12).max(range.min).max(1);
        let req = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        self.send(&req, version).await
    }
}

impl KafkaConn {
    /// Every topic's name and id (Metadata v10+ for all topics; v12 at
    /// most, as kflip's codec and every broker kflip serves speak it).
    pub async fn topic_ids(&mut self) -> Result<Vec<(String, uuid::Uuid)>, ClientError> {
        let versions = self.api_versions().await?;
        let range = versions
            .get(&(ApiKey::Metadata as i16))
            .copied()
            .unwrap_or(VersionRange { min: 0, max: 0 });
        if range.max < 10 {
            return Ok(Vec::new());
        }
        let req = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let resp = self.send(&req, range.max.min(12)).await?;
        Ok(resp
            .topics
            .into_iter()
            .filter_map(|t| Some((t.name?.0.to_string(), t.topic_id)))
            .collect())
    }
}

/// A request with `R::KEY` as an [`ApiKey`], for log messages.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(()) => format!("unknown({key})"),
    }
}

/// An error code with its name, for log messages.
pub fn code_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error code {code}"),
    }
}
