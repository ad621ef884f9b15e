//! The provenance header every copied record carries, and the loop check.
//!
//! Header `kflip-origin`, value `CLUSTER/TOPIC/PARTITION/OFFSET/FIRST_COPY_MS`:
//! the cluster id and topic the record was first written to, its partition
//! and offset there, and when it was first copied (ms since the epoch). A
//! record copied onwards keeps its original header, so the origin and the
//! first-copy time survive any number of hops. Topic names cannot contain
//! `/`, and the three numbers are parsed from the right, so a cluster id
//! containing `/` still parses.

/// The header's name.
pub const HEADER: &str = "kflip-origin";

/// Where a record was first written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The origin cluster's id.
    pub cluster: String,
    /// The origin topic.
    pub topic: String,
    /// The origin partition.
    pub partition: i32,
    /// The record's offset in the origin partition.
    pub offset: i64,
    /// When it was first copied, ms since the epoch.
    pub first_copy_ms: i64,
}

impl Origin {
    /// The header value.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the header value to `out`.
    pub fn encode_into(&self, out: &mut String) {
        write_origin(
            out,
            (&self.cluster, &self.topic, self.partition, self.offset),
            self.first_copy_ms,
        );
    }

    /// Parses a header value; `None` if it is not one of ours.
    pub fn parse(value: &[u8]) -> Option<Origin> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.rsplitn(5, '/');
        let first_copy_ms = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let topic = parts.next()?.to_string();
        let cluster = parts.next()?.to_string();
        if topic.is_empty() || cluster.is_empty() {
            return None;
        }
        Some(Origin {
            cluster,
            topic,
            partition,
            offset,
            first_copy_ms,
        })
    }

    /// Whether copying a record of this origin to `cluster`/`topic` would
    /// write it back where it was born, which is how loops start.
    pub fn is_home(&self, cluster: &str, topic: &str) -> bool {
        self.cluster == cluster && self.topic == topic
    }
}

/// What to do with one source record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Copy it with this header (replacing any `kflip-origin` header it
    /// had that was not a flow's).
    CopyNew(Origin),
    /// Copy it, keeping the header it has.
    CopyKeep,
    /// Skip it: it came from the target cluster and topic.
    Skip,
}

/// Appends the header value of a record first written to `source`
/// (cluster, topic, partition, offset) and first copied at
/// `first_copy_ms`: what [`Origin::encode_into`] writes, without an
/// `Origin` or the formatting machinery (the copy loop writes one per
/// record).
pub fn write_origin(out: &mut String, source: (&str, &str, i32, i64), first_copy_ms: i64) {
    out.push_str(source.0);
    out.push('/');
    out.push_str(source.1);
    for n in [i64::from(source.2), source.3, first_copy_ms] {
        out.push('/');
        push_int(out, n);
    }
}

/// The header values of the records of one source partition copied at one
/// time: what [`write_origin`] writes, with the parts they share (cluster,
/// topic, partition, first copy time) formatted once, so that each record
/// costs only its offset's digits.
pub struct OriginTemplate {
    /// `cluster/topic/partition/`.
    prefix: String,
    /// `/first_copy_ms`.
    suffix: String,
}

impl OriginTemplate {
    /// The template for records of `source` (cluster, topic, partition)
    /// first copied at `first_copy_ms`.
    pub fn new(source: (&str, &str, i32), first_copy_ms: i64) -> Self {
        let mut prefix = String::with_capacity(source.0.len() + source.1.len() + 14);
        prefix.push_str(source.0);
        prefix.push('/');
        prefix.push_str(source.1);
        prefix.push('/');
        push_int(&mut prefix, i64::from(source.2));
        prefix.push('/');
        let mut suffix = String::with_capacity(21);
        suffix.push('/');
        push_int(&mut suffix, first_copy_ms);
        OriginTemplate { prefix, suffix }
    }

    /// Replaces `out` with the value for the record at `offset`.
    pub fn write(&self, out: &mut String, offset: i64) {
        out.clear();
        out.push_str(&self.prefix);
        push_int(out, offset);
        out.push_str(&self.suffix);
    }
}

/// Appends `n` in decimal.
fn push_int(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// What to do with one source record, before any header is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Copy it with a new origin header (see [`Decision::CopyNew`]).
    New,
    /// Copy it, keeping the header it has.
    Keep,
    /// Skip it: it came from the target cluster and topic.
    Skip,
}

/// [`decide`] without building the new origin: for a record in
/// `partition` of the source to be copied to `target` (cluster, topic).
pub fn verdict(existing: Option<&[u8]>, partition: i32, target: (&str, &str)) -> Verdict {
    // A copy always sits in its origin's partition. A header that names
    // another one was not written by a flow: an application forwarded it
    // with a record it derived (Kafka Streams forwards headers), or made it
    // up. Trusted, it would skip a record that was never copied (a loss),
    // or keep a record bouncing between clusters; the record is new.
    match existing
        .and_then(Origin::parse)
        .filter(|o| o.partition == partition)
    {
        Some(o) if o.is_home(target.0, target.1) => Verdict::Skip,
        Some(_) => Verdict::Keep,
        None => Verdict::New,
    }
}

/// Decides for a record read from `source_cluster`/`source_topic` at
/// `partition`/`offset` that is to be copied to `target_cluster`/`target_topic`.
/// `existing` is the value of its `kflip-origin` header, if any.
pub fn decide(
    existing: Option<&[u8]>,
    source: (&str, &str, i32, i64),
    target: (&str, &str),
    now_ms: i64,
) -> Decision {
    match verdict(existing, source.2, target) {
        Verdict::Skip => Decision::Skip,
        Verdict::Keep => Decision::CopyKeep,
        Verdict::New => Decision::CopyNew(Origin {
            cluster: source.0.to_string(),
            topic: source.1.to_string(),
            partition: source.2,
            offset: source.3,
            first_copy_ms: now_ms,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_parses_from_the_right() {
        let o = Origin {
            cluster: "a/b".into(),
            topic: "orders.eu".into(),
            partition: 3,
            offset: 0,
            first_copy_ms: 1_700_000_000_000,
        };
        assert_eq!(Origin::parse(o.encode().as_bytes()), Some(o));
        for bad in [
            &b""[..],
            b"x",
            b"c/t/1/2",
            b"c/t/x/2/3",
            b"/t/1/2/3",
            b"\xff/t/1/2/3",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_fast_writer_writes_what_the_formatter_would() {
        for (p, o, t) in [
            (0, 0, 0),
            (7, 1_234_567, 1_700_000_000_000),
            (i32::MAX, i64::MAX, i64::MIN),
            (-1, -10, 9),
        ] {
            let mut out = String::from("x");
            write_origin(&mut out, ("c/id", "orders", p, o), t);
            assert_eq!(out, format!("xc/id/orders/{p}/{o}/{t}"));
            let mut each = String::from("left over");
            OriginTemplate::new(("c/id", "orders", p), t).write(&mut each, o);
            assert_eq!(each, format!("c/id/orders/{p}/{o}/{t}"));
        }
    }

    #[test]
    fn loops_are_cut_and_origins_kept() {
        // dc1 -> dc2, record born on dc1: gets a header.
        let d = decide(None, ("dc1", "t", 0, 7), ("dc2", "t"), 5);
        let Decision::CopyNew(o) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (o.cluster.as_str(), o.offset, o.first_copy_ms),
            ("dc1", 7, 5)
        );
        // dc2 -> dc1, the copy of that record: it was born on dc1/t, skip.
        let h = o.encode();
        assert_eq!(
            decide(Some(h.as_bytes()), ("dc2", "t", 0, 0), ("dc1", "t"), 9),
            Decision::Skip
        );
        // Renamed target: dc1/t copied to dc2/t.replica flows on to dc3.
        assert_eq!(
            decide(
                Some(h.as_bytes()),
                ("dc2", "t.replica", 0, 0),
                ("dc3", "t"),
                9
            ),
            Decision::CopyKeep
        );
        // A foreign header that is not ours: treated as no header.
        assert!(matches!(
            decide(Some(b"junk"), ("dc1", "t", 0, 1), ("dc2", "t"), 1),
            Decision::CopyNew(_)
        ));
        // A header of dc1/t partition 0 on a record in partition 1 of dc2/t
        // (an application forwarded it): not a copy, so it is copied, as a
        // record born on dc2.
        let d = decide(Some(h.as_bytes()), ("dc2", "t", 1, 4), ("dc1", "t"), 9);
        let Decision::CopyNew(o) = d else {
            panic!("{d:?}")
        };
        assert_eq!((o.cluster.as_str(), o.partition, o.offset), ("dc2", 1, 4));
    }
}
