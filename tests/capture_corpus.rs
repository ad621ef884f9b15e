//! Records the seed corpora of the fuzz targets from real client traffic.
//!
//! ```sh
//! cargo test --test capture_corpus -- --ignored --nocapture
//! ```
//!
//! Starts an Apache Kafka 4.4 broker and a recording relay in front of it,
//! drives real clients through the relay (librdkafka in-process: an
//! idempotent producer with every compression codec, a classic-group and a
//! KIP-848 consumer, a transactional producer with offsets in the
//! transaction; the Java client 4.4 round trip in both group protocols;
//! Kafka's own admin tools), and writes each frame into
//! `fuzz/corpus/<target>/` in the layout of `kflip::fuzzing`:
//! - `frame_header/`: whole request frames, length prefix included;
//! - `request/`: request payloads (header and body);
//! - `fetch_stream/`: Fetch version (i16) and response payload;
//! - `response_rewrite/`: API key (i16), version (i16), response payload,
//!   for the APIs `kflip::protocol::rewrite` handles.
//!
//! Files are named by a hash of their content, at most [`PER_KIND`] per API
//! key and version and [`MAX_FILE`] bytes each, so the corpora stay small.
//! The relay points clients at itself by rewriting the broker addresses of
//! Metadata, FindCoordinator and DescribeCluster responses (after recording
//! the broker's original). The clients run twice: once with the broker's
//! own API versions, once with its ApiVersions answer capped as kflip caps
//! it (`kflip::protocol::versions::policy`), so the corpora hold the
//! versions clients use through kflip too.

mod support;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FindCoordinatorResponse,
    MetadataResponse, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::Message;

use support::{clients, Broker};

/// At most this many files per target, API key and version.
const PER_KIND: usize = 12;
/// Larger frames are not kept.
const MAX_FILE: usize = 16 << 10;

/// Writes corpus files, counting them per kind.
struct Recorder {
    root: PathBuf,
    counts: Mutex<HashMap<(&'static str, i16, i16), usize>>,
}

impl Recorder {
    fn keep(&self, target: &'static str, api: i16, version: i16, data: &[u8]) {
        if data.len() > MAX_FILE {
            return;
        }
        let mut counts = self.counts.lock().unwrap();
        let n = counts.entry((target, api, version)).or_default();
        if *n >= PER_KIND {
            return;
        }
        let mut h = DefaultHasher::new();
        data.hash(&mut h);
        let name = format!("real-{api}-v{version}-{:016x}", h.finish());
        let path = self.root.join(target).join(name);
        if !path.exists() {
            std::fs::write(&path, data).expect("write a corpus file");
            *n += 1;
        }
    }
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let n = i32::from_be_bytes(len);
    let mut frame = vec![0u8; 4 + usize::try_from(n).ok()?];
    frame[..4].copy_from_slice(&len);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

fn be_i16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

/// A response payload with every broker address pointed at the relay.
fn redirect(api: ApiKey, version: i16, payload: &[u8], relay_port: u16) -> Option<Vec<u8>> {
    let hv = api.response_header_version(version);
    let mut buf = Bytes::copy_from_slice(payload);
    let header = ResponseHeader::decode(&mut buf, hv).ok()?;
    let host = StrBytes::from_static_str("127.0.0.1");
    let port = i32::from(relay_port);
    let mut out = BytesMut::new();
    header.encode(&mut out, hv).ok()?;
    match api {
        ApiKey::Metadata => {
            let mut m = MetadataResponse::decode(&mut buf, version).ok()?;
            for b in &mut m.brokers {
                (b.host, b.port) = (host.clone(), port);
            }
            m.encode(&mut out, version).ok()?;
        }
        ApiKey::FindCoordinator => {
            let mut m = FindCoordinatorResponse::decode(&mut buf, version).ok()?;
            if version < 4 && m.node_id.0 >= 0 {
                (m.host, m.port) = (host.clone(), port);
            }
            for c in &mut m.coordinators {
                if c.node_id.0 >= 0 {
                    (c.host, c.port) = (host.clone(), port);
                }
            }
            m.encode(&mut out, version).ok()?;
        }
        ApiKey::DescribeCluster => {
            let mut m = DescribeClusterResponse::decode(&mut buf, version).ok()?;
            for b in &mut m.brokers {
                (b.host, b.port) = (host.clone(), port);
            }
            m.encode(&mut out, version).ok()?;
        }
        _ => return None,
    }
    Some(out.to_vec())
}

/// An ApiVersions response payload with kflip's caps applied.
fn cap_versions(version: i16, payload: &[u8]) -> Option<Vec<u8>> {
    let hv = ApiKey::ApiVersions.response_header_version(version);
    let mut buf = Bytes::copy_from_slice(payload);
    let header = ResponseHeader::decode(&mut buf, hv).ok()?;
    let mut m = ApiVersionsResponse::decode(&mut buf, version).ok()?;
    m.api_keys.retain_mut(|k| {
        let Ok(key) = ApiKey::try_from(k.api_key) else {
            return false;
        };
        match kflip::protocol::versions::policy(key) {
            Some((_, cap)) => {
                k.max_version = k.max_version.min(cap);
                k.min_version <= k.max_version
            }
            None => false,
        }
    });
    let mut out = BytesMut::new();
    header.encode(&mut out, hv).ok()?;
    m.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// Relays one client connection to the broker, recording both directions.
fn relay(client: TcpStream, broker: u16, relay_port: u16, capped: bool, rec: Arc<Recorder>) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", broker)) else {
        return;
    };
    let inflight: Arc<Mutex<HashMap<i32, (i16, i16)>>> = Arc::default();
    let (mut c_in, mut c_out) = (client.try_clone().unwrap(), client);
    let (mut u_in, mut u_out) = (upstream.try_clone().unwrap(), upstream);
    let requests = {
        let (inflight, rec) = (inflight.clone(), rec.clone());
        std::thread::spawn(move || {
            while let Some(frame) = read_frame(&mut c_in) {
                let payload = &frame[4..];
                if payload.len() >= 8 {
                    let (api, version) = (be_i16(payload), be_i16(&payload[2..]));
                    let corr = i32::from_be_bytes(payload[4..8].try_into().unwrap());
                    inflight.lock().unwrap().insert(corr, (api, version));
                    rec.keep("frame_header", api, version, &frame);
                    rec.keep("request", api, version, payload);
                }
                if u_out.write_all(&frame).is_err() {
                    break;
                }
            }
            let _ = u_out.shutdown(std::net::Shutdown::Both);
        })
    };
    while let Some(frame) = read_frame(&mut u_in) {
        let payload = &frame[4..];
        let corr = i32::from_be_bytes(payload[..4].try_into().unwrap());
        let Some((key, version)) = inflight.lock().unwrap().remove(&corr) else {
            let _ = c_out.write_all(&frame);
            continue;
        };
        let mut out = frame.clone();
        if let Ok(api) = ApiKey::try_from(key) {
            if api == ApiKey::Fetch {
                let data = [&version.to_be_bytes()[..], payload].concat();
                rec.keep("fetch_stream", key, version, &data);
            }
            if kflip::fuzzing::REWRITTEN.contains(&api) {
                let data = [&key.to_be_bytes()[..], &version.to_be_bytes(), payload].concat();
                rec.keep("response_rewrite", key, version, &data);
            }
            let changed = if capped && api == ApiKey::ApiVersions {
                cap_versions(version, payload)
            } else {
                redirect(api, version, payload, relay_port)
            };
            if let Some(p) = changed {
                out = [&(p.len() as i32).to_be_bytes()[..], &p].concat();
            }
        }
        if c_out.write_all(&out).is_err() {
            break;
        }
    }
    let _ = c_out.shutdown(std::net::Shutdown::Both);
    let _ = requests.join();
}

/// Starts the relay; returns its port.
fn start_relay(broker: u16, capped: bool, rec: Arc<Recorder>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let rec = rec.clone();
            std::thread::spawn(move || relay(client, broker, port, capped, rec));
        }
    });
    port
}

fn produce(bootstrap: &str, topic: &str) {
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        // librdkafka may be built without a codec (zstd here): skip it.
        let producer: ThreadedProducer<_> = match clients::config(bootstrap)
            .set("enable.idempotence", "true")
            .set("compression.codec", codec)
            .set("linger.ms", "5")
            .create()
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("no {codec} producer: {e}");
                continue;
            }
        };
        for i in 0..30 {
            let value = format!("{codec}-{i}");
            let key = format!("k{}", i % 4);
            let record = BaseRecord::to(topic).key(&key).payload(&value).headers(
                rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                    key: "h",
                    value: Some("v"),
                }),
            );
            producer.send(record).expect("queue a record");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
}

fn consume(bootstrap: &str, topic: &str, group: &str, protocol: &str) {
    let mut cfg = clients::config(bootstrap);
    cfg.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    if protocol == "consumer" {
        cfg.set("group.protocol", "consumer");
    } else {
        cfg.set("session.timeout.ms", "6000")
            .set("isolation.level", "read_committed");
    }
    let consumer: BaseConsumer = cfg.create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while got < 150 && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                got += 1;
                let _ = m.payload();
                if got % 25 == 0 {
                    let _ = consumer.commit_message(&m, CommitMode::Sync);
                }
            }
            Some(Err(e)) => eprintln!("consumer {protocol}: {e}"),
            None => {}
        }
    }
    eprintln!("consumer {protocol}: {got} records");
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    consumer.unsubscribe();
}

fn transactions(bootstrap: &str, topic: &str, group: &str) {
    let producer: ThreadedProducer<_> = clients::config(bootstrap)
        .set("transactional.id", format!("{topic}-txn"))
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    let consumer: BaseConsumer = clients::config(bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer for the group metadata");
    for (n, commit) in [(0, true), (1, false), (2, true)] {
        producer.begin_transaction().expect("begin");
        for i in 0..10 {
            let value = format!("txn-{n}-{i}");
            producer
                .send(BaseRecord::to(topic).key("t").payload(&value))
                .expect("queue");
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, 0, rdkafka::Offset::Offset(n))
            .unwrap();
        let meta = consumer.group_metadata().expect("group metadata");
        producer
            .send_offsets_to_transaction(&offsets, &meta, Duration::from_secs(30))
            .expect("send offsets");
        if commit {
            producer
                .commit_transaction(Duration::from_secs(30))
                .expect("commit");
        } else {
            producer
                .abort_transaction(Duration::from_secs(30))
                .expect("abort");
        }
    }
}

fn java(bootstrap: &str, topic: &str, group: &str, protocol: &str) {
    let mut cmd = clients::java_client();
    cmd.args(["roundtrip", bootstrap, topic, group, "20"]);
    cmd.args(["--group-protocol", protocol]);
    let run = clients::run(cmd);
    eprintln!(
        "java {protocol}: ok={} {}",
        run.ok,
        run.stderr.lines().last().unwrap_or("")
    );
}

fn tools(bootstrap: &str, topic: &str, group: &str) {
    use support::broker::kafka_tool;
    let runs: [(&str, Vec<&str>); 4] = [
        (
            "org.apache.kafka.tools.TopicCommand",
            vec![
                "--bootstrap-server",
                bootstrap,
                "--describe",
                "--topic",
                topic,
            ],
        ),
        (
            "org.apache.kafka.tools.ClusterTool",
            vec!["cluster-id", "--bootstrap-server", bootstrap],
        ),
        (
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            vec![
                "--bootstrap-server",
                bootstrap,
                "--describe",
                "--group",
                group,
            ],
        ),
        (
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            vec![
                "--bootstrap-server",
                bootstrap,
                "--describe",
                "--all-groups",
                "--members",
                "--verbose",
            ],
        ),
    ];
    for (class, args) in runs {
        let (ok, out) = kafka_tool(class, &args);
        eprintln!("{class}: ok={ok} {}", out.lines().next().unwrap_or(""));
    }
}

/// Every client, on topics and groups named after `name`.
fn scenario(bootstrap: &str, name: &str) {
    let (classic, kip848, java_topic) = (
        format!("{name}-classic"),
        format!("{name}-848"),
        format!("{name}-java"),
    );
    clients::create_topic(bootstrap, name, 3);
    produce(bootstrap, name);
    consume(bootstrap, name, &classic, "classic");
    consume(bootstrap, name, &kip848, "consumer");
    transactions(bootstrap, name, &classic);
    clients::create_topic(bootstrap, &java_topic, 2);
    java(
        bootstrap,
        &java_topic,
        &format!("{java_topic}-classic"),
        "classic",
    );
    java(
        bootstrap,
        &java_topic,
        &format!("{java_topic}-848"),
        "consumer",
    );
    tools(bootstrap, name, &classic);
}

#[test]
#[ignore = "writes fuzz/corpus/; run by hand: cargo test --test capture_corpus -- --ignored"]
fn capture_corpus() {
    if !support::require_kafka("capture_corpus") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for t in [
        "frame_header",
        "request",
        "fetch_stream",
        "response_rewrite",
    ] {
        std::fs::create_dir_all(root.join(t)).unwrap();
    }
    let broker = Broker::start_kafka("capture", 1, "");
    let rec = Arc::new(Recorder {
        root,
        counts: Mutex::default(),
    });
    for (capped, name) in [(false, "capture"), (true, "capture-kflip")] {
        let port = start_relay(broker.port, capped, rec.clone());
        scenario(&format!("127.0.0.1:{port}"), name);
    }
    let counts = rec.counts.lock().unwrap();
    let mut kinds: Vec<_> = counts.iter().collect();
    kinds.sort();
    for ((target, api, version), n) in kinds {
        eprintln!("{target} api {api} v{version}: {n}");
    }
}
