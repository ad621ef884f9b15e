//! Just enough of a request to route it: the header, and a Produce's `acks`.
//!
//! This is parsed by hand and without allocation because it runs on every
//! request; bodies that need rewriting go through the generated codec.

use kafka_protocol::messages::ApiKey;

use super::varint::Reader;

/// Why a request could not be understood: names the field.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("request is malformed or truncated at {0}")]
pub struct HeaderError(pub &'static str);

/// The routing-relevant part of a request header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestHead {
    /// Raw API key; may be one kflip does not know.
    pub api_key: i16,
    /// API version the client used.
    pub api_version: i16,
    /// Correlation id the response must carry.
    pub correlation_id: i32,
    /// Offset of the request body within the payload, when the key is known.
    pub body_offset: Option<usize>,
}

/// Parses the request header at the start of `payload` (the frame without
/// its length prefix).
pub fn parse_request_head(payload: &[u8]) -> Result<RequestHead, HeaderError> {
    let mut r = Reader::new(payload, 0);
    let api_key = r.i16().map_err(|_| HeaderError("api_key"))?;
    let api_version = r.i16().map_err(|_| HeaderError("api_version"))?;
    let correlation_id = r.i32().map_err(|_| HeaderError("correlation_id"))?;
    let body_offset = match ApiKey::try_from(api_key) {
        Ok(key) => {
            let header_version = key.request_header_version(api_version);
            if header_version >= 1 {
                r.nullable_string().map_err(|_| HeaderError("client_id"))?;
            }
            if header_version >= 2 {
                r.skip_tagged()
                    .map_err(|_| HeaderError("header tagged fields"))?;
            }
            Some(r.pos())
        }
        Err(()) => None,
    };
    Ok(RequestHead {
        api_key,
        api_version,
        correlation_id,
        body_offset,
    })
}

/// The client id of a request (header v1 and later), if it has one.
pub fn client_id(payload: &[u8]) -> Option<String> {
    let len = i16::from_be_bytes([*payload.get(8)?, *payload.get(9)?]);
    let len = usize::try_from(len).ok()?;
    let raw = payload.get(10..10 + len)?;
    Some(String::from_utf8_lossy(raw).into_owned())
}

/// Reads `acks` from a Produce request body (versions 3 and later, the only
/// ones kflip advertises). acks=0 requests get no response.
pub fn produce_acks(body: &[u8], version: i16) -> Result<i16, HeaderError> {
    let mut r = Reader::new(body, 0);
    if version >= 9 {
        r.nullable_string_compact()
    } else {
        r.nullable_string()
    }
    .map_err(|_| HeaderError("transactional_id"))?;
    r.i16().map_err(|_| HeaderError("acks"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode_produce(version: i16, acks: i16, txn: Option<&str>) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("tester")));
        header
            .encode(&mut buf, ApiKey::Produce.request_header_version(version))
            .unwrap();
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_transactional_id(
                txn.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
            );
        req.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn parses_produce_acks_in_every_version() {
        for version in 3..=13 {
            for (acks, txn) in [(0, None), (1, Some("t-1")), (-1, None)] {
                let payload = encode_produce(version, acks, txn);
                let head = parse_request_head(&payload).unwrap();
                assert_eq!(head.api_key, 0);
                assert_eq!(head.api_version, version);
                assert_eq!(head.correlation_id, 42);
                let body = &payload[head.body_offset.unwrap()..];
                assert_eq!(produce_acks(body, version).unwrap(), acks, "v{version}");
            }
        }
    }

    #[test]
    fn unknown_keys_have_no_body_offset() {
        let payload = [0x27, 0x10, 0, 0, 0, 0, 0, 1];
        let head = parse_request_head(&payload).unwrap();
        assert_eq!(head.api_key, 10000);
        assert_eq!(head.body_offset, None);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let payload = encode_produce(9, 1, Some("txn"));
        for cut in 0..payload.len() {
            if let Ok(head) = parse_request_head(&payload[..cut]) {
                let body = &payload[head.body_offset.unwrap()..cut];
                let _ = produce_acks(body, 9);
            }
        }
        assert!(parse_request_head(&[0, 1, 0]).is_err());
    }
}
