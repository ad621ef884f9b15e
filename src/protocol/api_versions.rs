//! kflip answers ApiVersions itself, with the versions it advertises.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use super::versions::VersionTable;
use crate::codec::frame::Frame;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// Builds the ApiVersions response frame for a request of `version`.
///
/// A client asking with a version kflip does not know gets a v0 response
/// with UNSUPPORTED_VERSION and the supported list, as KIP-511 describes,
/// so it can retry with a version both sides speak.
pub fn answer(version: i16, correlation_id: i32, table: &VersionTable) -> Frame {
    let ours = table
        .get(&(ApiKey::ApiVersions as i16))
        .copied()
        .unwrap_or(ApiKey::ApiVersions.valid_versions());
    let (version, error_code) = if version > ours.max || version < 0 {
        (0, UNSUPPORTED_VERSION)
    } else {
        (version, 0)
    };
    let api_keys = table
        .iter()
        .map(|(&key, r)| {
            ApiVersion::default()
                .with_api_key(key)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect();
    let body = ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys);
    let mut buf = BytesMut::with_capacity(1024);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(
            &mut buf,
            ApiKey::ApiVersions.response_header_version(version),
        )
        .expect("response header encodes");
    body.encode(&mut buf, version)
        .expect("ApiVersions response with default fields encodes at every version");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Frame(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::protocol::Decodable;

    fn decode(frame: &Frame, version: i16) -> (i32, ApiVersionsResponse) {
        let mut b = Bytes::copy_from_slice(frame.payload());
        let h = ResponseHeader::decode(&mut b, 0).unwrap();
        (
            h.correlation_id,
            ApiVersionsResponse::decode(&mut b, version).unwrap(),
        )
    }

    #[test]
    fn answers_every_version_and_refuses_unknown_ones() {
        let table = crate::protocol::versions::advertised(&[]);
        for v in 0..=4 {
            let (corr, r) = decode(&answer(v, 7, &table), v);
            assert_eq!(corr, 7);
            assert_eq!(r.error_code, 0);
            assert!(r
                .api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::Metadata as i16));
        }
        let (_, r) = decode(&answer(99, 8, &table), 0);
        assert_eq!(r.error_code, UNSUPPORTED_VERSION);
        assert!(!r.api_keys.is_empty());
    }
}
