//! Real brokers for tests and benchmarks, on ephemeral 127.0.0.1 ports.
//!
//! Apache Kafka 4.4 (KRaft) is the default; `KFLIP_BROKER=tansu` selects
//! tansu 0.6, the second, Kafka-compatible broker that a named smaller set
//! of tests also runs on (DEVELOPERS.md lists them). Tests that need what
//! only Apache Kafka has call [`require_kafka`]. Secure single-node
//! clusters (SASL_SSL, SASL_PLAINTEXT, SSL, mTLS; SCRAM and PLAIN users;
//! ACLs) are [`Broker::start_secure`], in `support::secure`.
//!
//! Every broker runs under a small shell guard that holds a pipe from this
//! process: when the test process exits, however it exits, the pipe closes
//! and the guard kills its broker. So clusters kept in statics (shared by
//! the tests of one binary) never outlive the test run.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use super::secure::{Secured, Security};
use super::{free_port, wait_for};

/// Which broker implementation tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Apache Kafka 4.4.0, KRaft, from Maven Central (scripts/install-kafka.sh).
    Kafka,
    /// tansu 0.6.0 from crates.io (scripts/install-tansu.sh).
    Tansu,
}

/// The broker kind of this run: `$KFLIP_BROKER` (`kafka` or `tansu`),
/// default `kafka`.
pub fn kind() -> Kind {
    match std::env::var("KFLIP_BROKER").as_deref() {
        Ok("tansu") => Kind::Tansu,
        Ok("kafka") | Ok("") | Err(_) => Kind::Kafka,
        Ok(other) => panic!("KFLIP_BROKER={other}: expected kafka or tansu"),
    }
}

/// Whether this run uses Apache Kafka. A test that exercises what tansu
/// lacks returns early (and says so) when it does not.
pub fn require_kafka(test: &str) -> bool {
    if kind() == Kind::Kafka {
        return true;
    }
    eprintln!("{test}: skipped on KFLIP_BROKER=tansu (needs Apache Kafka)");
    false
}

fn cache() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(std::env::var("KFLIP_CACHE").unwrap_or_else(|_| format!("{home}/.cache/kflip")))
}

/// The tansu binary: `$KFLIP_TANSU`, or the cache that scripts/install-tansu.sh fills.
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("KFLIP_TANSU") {
        return PathBuf::from(p);
    }
    let p = cache().join("tansu-0.6.0/bin/tansu");
    assert!(
        p.exists(),
        "tansu is not installed at {}; run scripts/install-tansu.sh",
        p.display()
    );
    p
}

/// Apache Kafka's jar folder: `$KFLIP_KAFKA_LIB`, or the cache that
/// scripts/install-kafka.sh fills.
pub fn kafka_lib() -> PathBuf {
    if let Ok(p) = std::env::var("KFLIP_KAFKA_LIB") {
        return PathBuf::from(p);
    }
    let p = cache().join("kafka-4.4.0/lib");
    assert!(
        p.join("kafka_2.13-4.4.0.jar").exists(),
        "Apache Kafka is not installed at {}; run scripts/install-kafka.sh",
        p.display()
    );
    p
}

/// Storage engine for tansu brokers (Apache Kafka always uses its log).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Storage {
    /// sqlite: correct ListOffsets; use for anything that checks offsets.
    Sqlite,
    /// memory: fastest; used by throughput benchmarks.
    Memory,
}

/// JVM settings for test brokers: a small heap and a quick start. The
/// benchmarks set `KFLIP_BROKER_JVM` to give the broker its full JIT.
fn jvm_opts() -> Vec<String> {
    let opts = std::env::var("KFLIP_BROKER_JVM").unwrap_or_else(|_| {
        "-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData".into()
    });
    opts.split_whitespace().map(String::from).collect()
}

/// A base64url Kafka cluster id (16 random bytes), as `kafka-storage
/// random-uuid` prints.
fn kafka_cluster_id() -> String {
    // Like Kafka's own ids, never one that starts with '-' (a command line
    // would take it for an option).
    loop {
        let id = random_id();
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn random_id() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per instance: 16 random bytes.
    let mut b = [0u8; 16];
    for half in b.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .elapsed()
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    let mut out = String::new();
    let mut bits = 0u32;
    let mut n = 0;
    for &byte in &b {
        bits = (bits << 8) | u32::from(byte);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(A[((bits >> n) & 63) as usize] as char);
        }
    }
    out.push(A[((bits << (6 - n)) & 63) as usize] as char);
    out
}

/// One broker process (one node of a cluster).
struct Node {
    /// Its node id (Apache Kafka).
    id: i32,
    /// The client listener port.
    port: u16,
    /// The KRaft controller port (Apache Kafka).
    controller_port: u16,
    /// A secure broker's PLAINTEXT listener, for inter-broker traffic and
    /// the harness (`port` is then its secure client listener).
    internal_port: u16,
    /// The guard around the broker process; closing its stdin kills the
    /// broker.
    guard: Option<(Child, ChildStdin)>,
    /// Its data and log folder.
    dir: PathBuf,
}

/// A cluster of one or more broker nodes of one [`Kind`].
pub struct Broker {
    kind: Kind,
    nodes: Vec<Node>,
    /// The first node's client port (single-node clusters: its only port).
    pub port: u16,
    /// The real cluster id.
    pub cluster_id: String,
    /// A short name for messages (`dc1`).
    pub name: String,
    dir: tempfile::TempDir,
    storage: Storage,
    /// Extra `server.properties` lines (Apache Kafka).
    extra: String,
    /// A secure broker's listener, users and certificates
    /// ([`Broker::start_secure`]).
    pub(super) secure: Option<Secured>,
}

impl Broker {
    /// Starts a single-node cluster of this run's kind named `name`, and
    /// waits until it answers.
    pub fn start(name: &str) -> Broker {
        Broker::launch(kind(), name, 1, Storage::Sqlite, "", None)
    }

    /// A single-node cluster with `storage` (tansu; Apache Kafka ignores it).
    pub fn start_with(name: &str, storage: Storage) -> Broker {
        Broker::launch(kind(), name, 1, storage, "", None)
    }

    /// An Apache Kafka cluster of `nodes` combined broker-controller nodes
    /// (a KRaft quorum of all of them), with `extra` server properties.
    pub fn start_kafka(name: &str, nodes: usize, extra: &str) -> Broker {
        Broker::launch(Kind::Kafka, name, nodes, Storage::Sqlite, extra, None)
    }

    /// A single-node Apache Kafka cluster whose client listener is secured
    /// as `security` says (see [`super::secure`]).
    pub(super) fn launch_secure(name: &str, security: &Security) -> Broker {
        Broker::launch(Kind::Kafka, name, 1, Storage::Sqlite, "", Some(security))
    }

    fn launch(
        kind: Kind,
        name: &str,
        nodes: usize,
        storage: Storage,
        extra: &str,
        security: Option<&Security>,
    ) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kflip-{name}-"))
            .tempdir()
            .expect("tempdir");
        let cluster_id = match kind {
            Kind::Kafka => kafka_cluster_id(),
            Kind::Tansu => name.to_string(),
        };
        let nodes: Vec<Node> = (0..nodes)
            .map(|i| Node {
                id: i as i32 + 1,
                port: free_port(),
                controller_port: free_port(),
                internal_port: free_port(),
                guard: None,
                dir: dir.path().join(format!("node{}", i + 1)),
            })
            .collect();
        let secure = security.map(|s| Secured::new(s, &dir.path().join("tls")));
        let mut b = Broker {
            kind,
            port: nodes[0].port,
            nodes,
            cluster_id,
            name: name.to_string(),
            dir,
            storage,
            extra: extra.to_string(),
            secure,
        };
        b.first_start();
        b
    }

    /// Formats (Apache Kafka) and starts every node. A port taken by
    /// someone else between [`free_port`] and the broker's bind makes that
    /// start fail; the whole cluster then starts again on new ports.
    fn first_start(&mut self) {
        for _attempt in 0..4 {
            for i in 0..self.nodes.len() {
                std::fs::create_dir_all(&self.nodes[i].dir).expect("node dir");
                if self.kind == Kind::Kafka {
                    self.write_properties(i);
                    self.format(i);
                }
                self.spawn(i);
            }
            if (0..self.nodes.len()).all(|i| self.wait_up(i)) {
                self.port = self.nodes[0].port;
                if self.kind == Kind::Kafka {
                    self.wait_ready();
                }
                return;
            }
            eprintln!(
                "{} did not start; trying again on new ports. Its log:\n{}",
                self.name,
                self.log()
            );
            for i in 0..self.nodes.len() {
                self.kill_node(i);
                let n = &mut self.nodes[i];
                let _ = std::fs::remove_dir_all(&n.dir);
                n.port = free_port();
                n.controller_port = free_port();
                n.internal_port = free_port();
            }
        }
        panic!("{} did not start; log:\n{}", self.name, self.log());
    }

    fn write_properties(&self, i: usize) {
        let n = &self.nodes[i];
        let voters: Vec<String> = self
            .nodes
            .iter()
            .map(|v| format!("{}@127.0.0.1:{}", v.id, v.controller_port))
            .collect();
        let rf = self.nodes.len().min(3);
        let listeners = match &self.secure {
            Some(s) => s.listener_properties(n.port, n.internal_port, n.controller_port),
            None => format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                 inter.broker.listener.name=PLAINTEXT\n",
                port = n.port,
                cport = n.controller_port,
            ),
        };
        let props = format!(
            "process.roles=broker,controller\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             controller.listener.names=CONTROLLER\n\
             {listeners}\
             log.dirs={data}\n\
             auto.create.topics.enable=false\n\
             num.partitions=1\n\
             default.replication.factor={rf}\n\
             offsets.topic.replication.factor={rf}\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor={rf}\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             share.coordinator.state.topic.replication.factor={rf}\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             group.consumer.min.heartbeat.interval.ms=500\n\
             group.consumer.heartbeat.interval.ms=1000\n\
             group.consumer.min.session.timeout.ms=6000\n\
             group.consumer.session.timeout.ms=10000\n\
             num.network.threads=2\n\
             num.io.threads=4\n\
             log.segment.bytes=67108864\n\
             log.cleaner.dedupe.buffer.size=8388608\n\
             log.cleaner.backoff.ms=1000\n\
             {extra}\n",
            id = n.id,
            voters = voters.join(","),
            data = n.dir.join("data").display(),
            extra = self.extra,
        );
        std::fs::write(n.dir.join("server.properties"), props).expect("server.properties");
        std::fs::write(
            n.dir.join("log4j2.properties"),
            "status = error\n\
             appender.out.type = Console\n\
             appender.out.name = out\n\
             appender.out.layout.type = PatternLayout\n\
             appender.out.layout.pattern = [%d] %p %m (%c)%n\n\
             rootLogger.level = warn\n\
             rootLogger.appenderRef.out.ref = out\n",
        )
        .expect("log4j2.properties");
    }

    fn format(&self, i: usize) {
        let n = &self.nodes[i];
        let out = Command::new("java")
            .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
            .arg(format!("{}/*", kafka_lib().display()))
            .args([
                "kafka.tools.StorageTool",
                "format",
                "-t",
                &self.cluster_id,
                "-c",
            ])
            .arg(n.dir.join("server.properties"))
            .args(self.secure.iter().flat_map(Secured::format_args))
            .output()
            .expect("run kafka-storage format");
        assert!(
            out.status.success(),
            "kafka-storage format for {}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn spawn(&mut self, i: usize) {
        let n = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(n.dir.join("broker.log"))
            .expect("broker log");
        let mut cmd: Vec<String> = match self.kind {
            Kind::Kafka => {
                let mut c = vec!["java".to_string()];
                c.extend(jvm_opts());
                c.push(format!(
                    "-Dlog4j2.configurationFile={}",
                    n.dir.join("log4j2.properties").display()
                ));
                c.push("-cp".into());
                c.push(format!("{}/*", kafka_lib().display()));
                c.push("kafka.Kafka".into());
                c.push(n.dir.join("server.properties").display().to_string());
                c
            }
            Kind::Tansu => {
                let url = format!("tcp://127.0.0.1:{}", n.port);
                let engine = match self.storage {
                    Storage::Sqlite => "sqlite://broker.db".to_string(),
                    Storage::Memory => format!("memory://{}/", self.cluster_id),
                };
                vec![
                    tansu_bin().display().to_string(),
                    "broker".into(),
                    "--cluster-id".into(),
                    self.cluster_id.clone(),
                    "--listener-url".into(),
                    url.clone(),
                    "--advertised-listener-url".into(),
                    url,
                    "--storage-engine".into(),
                    engine,
                ]
            }
        };
        // The guard: starts the broker, and kills it with SIGKILL once stdin
        // closes. "keep" first means this process killed it and keeps its
        // data (a restart may follow); a bare close means this process is
        // gone, and the guard removes the cluster's folder too. It exits
        // when the broker does, so a broker that could not bind is seen.
        // (fd 3: bash gives background jobs /dev/null as stdin.)
        let script = "exec 3<&0; \"$@\" <&- 3<&- & b=$!; echo $b > broker.pid; \
            (read -r how <&3; kill -9 $b 2>/dev/null; \
             while kill -0 $b 2>/dev/null; do sleep 0.05; done; \
             [ \"$how\" = keep ] || rm -rf \"$KFLIP_BROKER_DIR\") & \
            wait $b";
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("broker-guard")
            .args(cmd.drain(..))
            .current_dir(&n.dir)
            .env("RUST_LOG", "warn")
            .env("KFLIP_BROKER_DIR", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start broker");
        let stdin = child.stdin.take().expect("guard stdin");
        self.nodes[i].guard = Some((child, stdin));
    }

    /// Waits until node `i` accepts connections; false if it exited first.
    fn wait_up(&mut self, i: usize) -> bool {
        let addr = format!("127.0.0.1:{}", self.nodes[i].port);
        let what = format!("{} node {} on {addr}", self.name, self.nodes[i].id);
        let node = &mut self.nodes[i];
        wait_for(&what, Duration::from_secs(60), || {
            if let Some((c, _)) = node.guard.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return Some(false);
                }
            }
            TcpStream::connect(&addr).ok().map(|_| true)
        })
    }

    /// Waits until every node is registered and a topic can be created:
    /// a KRaft broker accepts connections before it has caught up with the
    /// metadata log.
    fn wait_ready(&self) {
        let n = self.nodes.len();
        // A secure broker is asked on its PLAINTEXT listener.
        let addr = match self.secure {
            Some(_) => self.internal_addr(),
            None => self.addr(),
        };
        wait_for(
            &format!("{} to register {n} brokers", self.name),
            Duration::from_secs(60),
            || {
                let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &addr)
                    .set("broker.address.family", "v4")
                    .create()
                    .ok()?;
                let md =
                    rdkafka::consumer::Consumer::fetch_metadata(&c, None, Duration::from_secs(5))
                        .ok()?;
                (md.brokers().len() == n).then_some(())
            },
        );
    }

    /// `127.0.0.1:port` of the first node.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A secure broker's PLAINTEXT listener, `127.0.0.1:port` (its
    /// principal, `User:ANONYMOUS`, is a super user).
    pub(super) fn internal_addr(&self) -> String {
        format!("127.0.0.1:{}", self.nodes[0].internal_port)
    }

    /// Every node's `127.0.0.1:port`, comma-separated (a bootstrap list).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first node's broker process id, while it runs (for CPU and
    /// memory readings in benchmarks).
    pub fn pid(&self) -> Option<String> {
        self.nodes[0].guard.as_ref()?;
        let pid = std::fs::read_to_string(self.nodes[0].dir.join("broker.pid")).ok()?;
        Some(pid.trim().to_string())
    }

    /// The broker kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The node ids and client ports.
    pub fn nodes(&self) -> Vec<(i32, u16)> {
        self.nodes.iter().map(|n| (n.id, n.port)).collect()
    }

    fn kill_node(&mut self, i: usize) {
        if let Some((mut child, mut stdin)) = self.nodes[i].guard.take() {
            let _ = std::io::Write::write_all(&mut stdin, b"keep\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Kills every node with SIGKILL (a disaster).
    pub fn kill(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }

    /// Kills one node (by id) with SIGKILL.
    pub fn kill_one(&mut self, id: i32) {
        let i = self.index(id);
        self.kill_node(i);
    }

    /// Starts a killed node again on the same port and data.
    pub fn restart_one(&mut self, id: i32) {
        let i = self.index(id);
        self.kill_node(i);
        self.spawn(i);
        assert!(self.wait_up(i), "{} node {id} did not restart", self.name);
    }

    fn index(&self, id: i32) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("{} has no node {id}", self.name))
    }

    /// Restarts every node of a killed cluster on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        for i in 0..self.nodes.len() {
            self.spawn(i);
        }
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            assert!(self.wait_up(i), "{} node {id} did not restart", self.name);
        }
        if self.kind == Kind::Kafka {
            self.wait_ready();
        }
    }

    /// The cluster's logs, for failure messages.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let text = std::fs::read_to_string(n.dir.join("broker.log")).unwrap_or_default();
            if self.nodes.len() > 1 {
                let _ = writeln!(out, "--- node {} ---", n.id);
            }
            out.push_str(&text);
        }
        out
    }

    /// The cluster's temp folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs one of Apache Kafka's command-line tools (`class` in the
    /// broker's jars, such as `org.apache.kafka.tools.LeaderElectionCommand`)
    /// against this cluster; returns its output, or panics with it.
    pub fn tool(&self, class: &str, args: &[&str]) -> String {
        assert_eq!(
            self.kind,
            Kind::Kafka,
            "Apache Kafka tools need Apache Kafka"
        );
        let (ok, text) = kafka_tool(class, args);
        assert!(ok, "{class} {args:?}: {text}");
        text
    }
}

/// Runs one of Apache Kafka's command-line tools; returns whether it
/// succeeded and what it printed.
pub fn kafka_tool(class: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("java")
        .args(["-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{}/*", kafka_lib().display()))
        .arg(class)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run a Kafka tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
