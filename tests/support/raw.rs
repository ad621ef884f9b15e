//! A raw Kafka connection for tests that must see exact bytes: requests
//! encoded with the generated codec, responses returned as raw payloads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};

/// A blocking connection.
pub struct Raw {
    s: TcpStream,
    corr: i32,
}

impl Raw {
    /// Connects to `addr`.
    pub fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Raw { s, corr: 0 }
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b)
    }

    /// Encodes and sends a request; returns its correlation id.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> i32 {
        self.corr += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).unwrap();
        req.encode(&mut buf, version).unwrap();
        let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
        framed.extend_from_slice(&buf);
        self.send_bytes(&framed).expect("send request");
        self.corr
    }

    /// Reads one response payload; `None` if the peer closed.
    pub fn recv(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut payload = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut payload).ok()?;
        Some(payload)
    }

    /// Sends a request and decodes its response; also returns the raw bytes.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> (R::Response, Vec<u8>) {
        let corr = self.send(req, version);
        let raw = self.recv().expect("response");
        let mut b = Bytes::from(raw.clone());
        let h = ResponseHeader::decode(&mut b, R::Response::header_version(version)).unwrap();
        assert_eq!(h.correlation_id, corr);
        (R::Response::decode(&mut b, version).unwrap(), raw)
    }

    /// True if the peer closes the connection (read returns EOF or reset).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }

    /// The advertised versions, by API key.
    pub fn versions(&mut self) -> Vec<(ApiKey, VersionRange)> {
        // Apache Kafka refuses v3+ with an empty client software name
        // (INVALID_REQUEST): KIP-511 requires one.
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kflip-test"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let (r, _): (ApiVersionsResponse, _) = self.call(&req, 3);
        assert_eq!(r.error_code, 0);
        r.api_keys
            .iter()
            .filter_map(|k| {
                Some((
                    ApiKey::try_from(k.api_key).ok()?,
                    VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                ))
            })
            .collect()
    }
}

/// A record batch (v2, uncompressed) holding one plain record with this key
/// and value, as a Produce request carries it.
pub fn one_record_batch(key: Option<Bytes>, value: Option<Bytes>) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key,
        value,
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&rec],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a record batch");
    buf.freeze()
}
