//! SaslHandshake and SaslAuthenticate requests from clients: the mechanism
//! named and the bytes carried, borrowed from the frame.

use super::walk::{unsupported, ParseError, Walk};
use kafka_protocol::messages::ApiKey;

/// The mechanism a SaslHandshake (v0-1) names.
pub fn handshake_mechanism(body: &[u8], version: i16) -> Result<&str, ParseError> {
    if !(0..=1).contains(&version) {
        return Err(unsupported(ApiKey::SaslHandshake, version));
    }
    let mut w = Walk::new(body, false);
    let n = w
        .len(false, "mechanism")?
        .ok_or(ParseError::Malformed("mechanism"))?;
    let raw = w.take(n, "mechanism")?;
    std::str::from_utf8(raw).map_err(|_| ParseError::Malformed("mechanism"))
}

/// The bytes a SaslAuthenticate (v0-2) carries.
pub fn authenticate_bytes(body: &[u8], version: i16) -> Result<&[u8], ParseError> {
    if !(0..=2).contains(&version) {
        return Err(unsupported(ApiKey::SaslAuthenticate, version));
    }
    let mut w = Walk::new(body, version >= 2);
    let range = w
        .bytes("auth_bytes")?
        .ok_or(ParseError::Malformed("auth_bytes"))?;
    Ok(&body[range])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn mechanisms_and_bytes_are_read_at_every_version() {
        for v in 0..=1 {
            let mut b = BytesMut::new();
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"))
                .encode(&mut b, v)
                .unwrap();
            assert_eq!(handshake_mechanism(&b, v).unwrap(), "SCRAM-SHA-512");
            for cut in 0..b.len() {
                assert!(handshake_mechanism(&b[..cut], v).is_err());
            }
        }
        for v in 0..=2 {
            let mut b = BytesMut::new();
            SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0alice\0pw"))
                .encode(&mut b, v)
                .unwrap();
            assert_eq!(authenticate_bytes(&b, v).unwrap(), b"\0alice\0pw");
            for cut in 0..b.len() {
                let _ = authenticate_bytes(&b[..cut], v);
            }
        }
    }
}
