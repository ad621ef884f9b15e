//! InitProducerId requests: whether one names a transactional id, the
//! producer id it bumps, and that id turned into a request for a fresh one.

/// Whether an InitProducerId request names a transactional id.
pub fn transactional(body: &[u8], version: i16) -> bool {
    let mut r = super::varint::Reader::new(body, 0);
    if version >= 2 {
        !matches!(r.uvarint(), Ok(0))
    } else {
        !matches!(r.i16(), Ok(-1))
    }
}

/// Where the producer id of an InitProducerId v3+ request starts: after
/// the transactional id and the transaction timeout.
pub fn init_producer_id_at(body: &[u8], version: i16) -> Option<usize> {
    if version < 3 {
        return None;
    }
    let mut r = super::varint::Reader::new(body, 0);
    // v3+ is flexible: a compact nullable string (length + 1, 0 for null).
    let len = r.uvarint().ok()? as usize;
    r.take(len.saturating_sub(1)).ok()?;
    r.i32().ok()?;
    Some(r.pos())
}

/// The producer id an InitProducerId v3+ request bumps (-1 for none).
pub fn init_producer_id_of(body: &[u8], version: i16) -> Option<i64> {
    let at = init_producer_id_at(body, version)?;
    let b = body.get(at..at + 8)?;
    Some(i64::from_be_bytes(b.try_into().ok()?))
}

/// Turns an epoch bump (InitProducerId v3+ with the current producer id
/// and epoch, KIP-360) of a producer id from before the switch into a
/// request for a fresh id: the new cluster never issued the old one and
/// would refuse to bump it. To the client both reset its sequences.
pub fn fresh_producer_id(body: &mut [u8], version: i16) {
    let Some(at) = init_producer_id_at(body, version) else {
        return;
    };
    if let Some(fields) = body.get_mut(at..at + 10) {
        fields[..8].copy_from_slice(&(-1i64).to_be_bytes());
        fields[8..].copy_from_slice(&(-1i16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{InitProducerIdRequest, ProducerId, TransactionalId};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    fn encode(req: &InitProducerIdRequest, version: i16) -> BytesMut {
        let mut b = BytesMut::new();
        req.encode(&mut b, version).unwrap();
        b
    }

    #[test]
    fn epoch_bumps_become_fresh_id_requests() {
        for version in 3..=5 {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(42))
                .with_producer_epoch(3);
            let mut body = encode(&req, version);
            fresh_producer_id(&mut body, version);
            let got = InitProducerIdRequest::decode(&mut body.freeze(), version).unwrap();
            assert_eq!(
                (got.producer_id.0, got.producer_epoch),
                (-1, -1),
                "v{version}"
            );
            assert_eq!(got.transaction_timeout_ms, 60_000);

            let txn =
                req.with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-7"))));
            let mut body = encode(&txn, version);
            assert_eq!(init_producer_id_of(&body, version), Some(42));
            fresh_producer_id(&mut body, version);
            let got = InitProducerIdRequest::decode(&mut body.freeze(), version).unwrap();
            assert_eq!(
                (got.producer_id.0, got.producer_epoch),
                (-1, -1),
                "transactional v{version}"
            );
            assert_eq!(got.transactional_id.unwrap().0.as_str(), "tx-7");
        }
        let mut short = vec![0u8, 0, 0];
        fresh_producer_id(&mut short, 4);
    }
}
