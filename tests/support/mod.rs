//! Test harness: real brokers (Apache Kafka 4.4 by default, tansu with
//! `KFLIP_BROKER=tansu`) and a real kflip process on ephemeral 127.0.0.1
//! ports, plus helpers to poll with a deadline.
//!
//! Every integration test file does `mod support;` and uses what it needs.
#![allow(dead_code)]

pub mod broker;
pub mod certs;
pub mod clients;
pub mod raw;
pub mod secure;
pub mod secure_clients;

#[allow(unused_imports)]
pub use broker::{kind, require_kafka, Broker, Kind, Storage};

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `f` every 25 ms until it returns `Some`, or panics after `limit`
/// naming `what`. Tests synchronise with this, never with fixed sleeps.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Two clusters, dc1 and dc2, each one broker.
pub struct TwoClusters {
    /// dc1.
    pub dc1: Broker,
    /// dc2.
    pub dc2: Broker,
}

/// Two clusters shared by the tests of one test binary that neither kill
/// nor restart brokers, and that keep to topics and groups of their own.
/// Started on first use; stopped when the test process exits.
pub fn shared_clusters() -> &'static TwoClusters {
    static SHARED: std::sync::OnceLock<TwoClusters> = std::sync::OnceLock::new();
    SHARED.get_or_init(TwoClusters::start)
}

/// One cluster shared like [`shared_clusters`].
pub fn shared_broker() -> &'static Broker {
    static SHARED: std::sync::OnceLock<Broker> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| Broker::start("dc1"))
}

impl TwoClusters {
    /// Starts both.
    pub fn start() -> TwoClusters {
        TwoClusters {
            dc1: Broker::start("dc1"),
            dc2: Broker::start("dc2"),
        }
    }

    /// A kflip config for these clusters with `extra` lines under `proxy:`;
    /// the proxy listens on a free port.
    pub fn config(&self, active: &str, extra: &str) -> String {
        format!(
            "clusters:\n  dc1: {{ bootstrap: \"{}\" }}\n  dc2: {{ bootstrap: \"{}\" }}\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: {active}\n{extra}",
            self.dc1.bootstrap(),
            self.dc2.bootstrap()
        )
    }
}

/// A kflip process running `kflip proxy` on a config file it owns.
pub struct Kflip {
    child: Option<Child>,
    /// The bootstrap listener port (0 for `replicate`).
    pub port: u16,
    dir: tempfile::TempDir,
    command: String,
    level: String,
    /// A config file owned by another kflip (a fleet on one file).
    shared_config: Option<PathBuf>,
}

impl Kflip {
    /// Writes `yaml` and starts kflip logging at debug, so tests can wait
    /// for log lines. Use port 0 in `proxy.listen`: the bound port is read
    /// from kflip's log, so parallel tests never race for ports.
    pub fn start(yaml: &str) -> Kflip {
        Kflip::start_with_log(yaml, "kflip=debug,info")
    }

    /// Like [`Kflip::start`] with `level` as the `KFLIP_LOG` filter;
    /// benchmarks use `"warn"` so logging does not distort their numbers
    /// (the listening line is always kept).
    pub fn start_with_log(yaml: &str, level: &str) -> Kflip {
        Kflip::start_command("proxy", yaml, level)
    }

    /// Starts `kflip COMMAND` (`proxy` or `run`) and waits for its proxy
    /// to listen.
    pub fn start_command(command: &str, yaml: &str, level: &str) -> Kflip {
        let mut k = Kflip::spawn(command, yaml, level);
        k.wait_listening();
        k
    }

    /// Waits for the proxy to listen and learns its port from the log.
    fn wait_listening(&mut self) {
        self.port = wait_for("kflip to listen", Duration::from_secs(20), || {
            let log = self.log();
            let at = log.find("proxy listening listen=")? + "proxy listening listen=".len();
            let addr = log[at..].split_whitespace().next()?;
            addr.rsplit_once(':')?.1.parse::<u16>().ok()
        });
    }

    /// Starts `kflip COMMAND` on the config file of `other`, as a second
    /// member of a fleet, and waits for its proxy to listen.
    #[allow(dead_code)]
    pub fn start_sharing(command: &str, other: &Kflip, level: &str) -> Kflip {
        let mut k = Kflip {
            child: None,
            port: 0,
            dir: tempfile::tempdir().expect("tempdir"),
            command: command.to_string(),
            level: level.to_string(),
            shared_config: Some(other.config_path()),
        };
        k.launch();
        k.wait_listening();
        k
    }

    /// Starts `kflip replicate` on `yaml` (no proxy, so no port).
    pub fn replicate(yaml: &str) -> Kflip {
        Kflip::spawn("replicate", yaml, "kflip=debug,info")
    }

    /// Writes the config and starts `kflip COMMAND --config FILE`.
    pub fn spawn(command: &str, yaml: &str, level: &str) -> Kflip {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut k = Kflip {
            child: None,
            port: 0,
            dir,
            command: command.to_string(),
            level: level.to_string(),
            shared_config: None,
        };
        k.write_config(yaml);
        k.launch();
        k
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kflip.log"))
            .expect("log");
        // KFLIP_TEST_WRAP runs kflip under a tool, e.g. "valgrind
        // --tool=callgrind" (`scripts/hot-code.sh`) or "perf record -g".
        let wrap = std::env::var("KFLIP_TEST_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(wrap).arg(env!("CARGO_BIN_EXE_kflip"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_kflip")),
        };
        let child = cmd
            .args([self.command.as_str(), "--config"])
            .arg(self.config_path())
            .env(
                "KFLIP_LOG",
                // KFLIP_TEST_LOG overrides every test's level, to debug one.
                std::env::var("KFLIP_TEST_LOG")
                    .unwrap_or_else(|_| format!("{},kflip::proxy=info", self.level)),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kflip");
        self.child = Some(child);
    }

    /// `kill -9`: no drain, no final checkpoint.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same command again on the same config (after [`Kflip::kill9`]).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// The config file's path.
    pub fn config_path(&self) -> PathBuf {
        self.shared_config
            .clone()
            .unwrap_or_else(|| self.dir.path().join("kflip.yaml"))
    }

    /// Replaces the config file atomically (write + rename), as an editor or
    /// Kubernetes would.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".kflip.yaml.tmp");
        let mut f = std::fs::File::create(&tmp).expect("write config");
        f.write_all(yaml.as_bytes()).expect("write config");
        f.sync_all().ok();
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    /// `127.0.0.1:port` of the bootstrap listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Everything kflip logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kflip.log")).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        wait_for(&format!("kflip log line {needle:?}"), limit, || {
            self.log().contains(needle).then_some(())
        });
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits for exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let status = wait_for("kflip to exit", Duration::from_secs(20), || {
            c.try_wait().ok().flatten()
        });
        status.code()
    }

    /// A path inside kflip's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Kflip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- kflip log ---\n{}", self.log());
        }
        // KFLIP_TEST_KEEP_LOGS=DIR keeps every kflip log there, to debug.
        if let Ok(dir) = std::env::var("KFLIP_TEST_KEEP_LOGS") {
            let tmp = self.dir.path().file_name().unwrap_or_default();
            let name = format!("kflip-{}.log", tmp.to_string_lossy());
            let _ = std::fs::copy(
                self.dir.path().join("kflip.log"),
                Path::new(&dir).join(name),
            );
        }
    }
}

/// `GET http://{addr}{path}`: (status, body); status 0 if it cannot be
/// reached.
#[allow(dead_code)]
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    match agent.get(format!("http://{addr}{path}")).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
