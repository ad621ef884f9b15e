//! A blocking Kafka connection over TCP or TLS (rustls) for requests
//! whose timing or bytes a bench controls: one Produce in flight for
//! latency, hand-made frames for hostile clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Anything a connection can run on.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One blocking connection, plain or TLS.
pub struct Conn {
    /// The TCP stream, or rustls over it.
    s: Box<dyn Stream>,
}

/// A rustls client config trusting the CA in `ca_pem`.
pub fn tls_config(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_pem).expect("read CA");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("CA PEM")).expect("CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

impl Conn {
    /// Connects to `addr` (`127.0.0.1:port`), with TLS when `tls` is set;
    /// the TLS handshake completes with the first request.
    pub fn connect(addr: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Conn {
        let tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let s: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
                let name = ServerName::try_from(host).expect("server name");
                let c = rustls::ClientConnection::new(cfg.clone(), name).expect("TLS client");
                Box::new(rustls::StreamOwned::new(c, tcp))
            }
        };
        Conn { s }
    }

    /// Writes a whole frame.
    pub fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.s.write_all(frame)?;
        self.s.flush()
    }

    /// Reads one response payload; `None` if the peer closed.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut payload = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.s.read_exact(&mut payload).ok()?;
        Some(payload)
    }

    /// The highest Produce version both this client's codec (up to 12,
    /// which still names topics) and the peer speak.
    pub fn produce_version(&mut self) -> i16 {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kflip-bench"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        self.send(&frame(&req, 3, 1)).expect("send ApiVersions");
        let mut b = Bytes::from(self.recv().expect("ApiVersions response"));
        ResponseHeader::decode(&mut b, ApiVersionsResponse::header_version(3)).unwrap();
        let r = ApiVersionsResponse::decode(&mut b, 3).unwrap();
        r.api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .map(|k| k.max_version.min(12))
            .expect("Produce advertised")
    }
}

/// A whole request frame, length prefix included.
pub fn frame<R: Request>(req: &R, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("kflip-bench")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    framed
}

/// A Produce frame (acks=1) carrying one record of `value` to partition 0
/// of `topic`; the correlation id sits at bytes 8..12.
pub fn produce_frame(topic: &str, version: i16, value: Vec<u8>) -> Vec<u8> {
    let batch = crate::support::raw::one_record_batch(None, Some(Bytes::from(value)));
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    frame(&req, version, 0)
}
