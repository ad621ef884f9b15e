//! Secure Apache Kafka brokers: a single-node KRaft cluster whose client
//! listener speaks SASL_SSL, SASL_PLAINTEXT, SSL, or SSL with required
//! client certificates (mTLS), with SCRAM and PLAIN users, test
//! certificates made for it ([`super::certs`]) and, optionally, ACLs.
//!
//! A secure node has three listeners:
//! - `CLIENT` on [`Broker::port`], secured: what [`Broker::bootstrap`]
//!   returns, for tests and kflip;
//! - `INTERNAL`, PLAINTEXT: inter-broker traffic and the harness's
//!   readiness check;
//! - `CONTROLLER`, PLAINTEXT.
//!
//! The two plaintext listeners authenticate nobody; with the authorizer on,
//! their principal `User:ANONYMOUS` is a super user, as the broker must be
//! allowed to talk to its own controller. Tests use `CLIENT` only.

use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;

use super::broker::{kind, Broker, Kind};
use super::certs::Certs;
use super::clients;

/// The super user every secure broker has, with password
/// [`ADMIN_PASSWORD`] (SCRAM and PLAIN) and a client certificate.
pub const ADMIN: &str = "admin";
/// [`ADMIN`]'s password.
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// What the client listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// SASL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) over TLS.
    SaslSsl,
    /// SASL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) without TLS.
    SaslPlaintext,
    /// TLS; clients are anonymous (`User:ANONYMOUS`).
    Ssl,
    /// TLS with `ssl.client.auth=required`: the principal is the client
    /// certificate's CN (`User:alice`).
    Mtls,
}

impl Protocol {
    /// Kafka's name for it (`security.protocol`).
    pub fn security_protocol(self) -> &'static str {
        match self {
            Protocol::SaslSsl => "SASL_SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::Ssl | Protocol::Mtls => "SSL",
        }
    }

    /// Whether it runs over TLS.
    pub fn tls(self) -> bool {
        self != Protocol::SaslPlaintext
    }

    /// Whether clients log in with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslSsl | Protocol::SaslPlaintext)
    }
}

/// A SASL mechanism the client listener offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// SCRAM-SHA-256: credentials stored in the metadata log at format time.
    ScramSha256,
    /// SCRAM-SHA-512: likewise.
    ScramSha512,
    /// PLAIN: users listed in the listener's JAAS config.
    Plain,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::Plain,
    ];

    /// Kafka's name for it (`sasl.mechanism`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::Plain => "PLAIN",
        }
    }
}

/// How a client proves who it is.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// SASL with this mechanism as this user, with the user's password.
    Sasl(Mechanism, &'a str),
    /// The client certificate of this user (mTLS).
    Cert(&'a str),
    /// Nothing beyond the listener's TLS (an [`Protocol::Ssl`] listener).
    Anonymous,
}

/// How to secure a broker: its client listener, its users and whether it
/// checks ACLs.
#[derive(Clone, Debug)]
pub struct Security {
    /// What the client listener speaks.
    pub protocol: Protocol,
    /// Users and passwords besides [`ADMIN`]. Each gets SCRAM-SHA-256 and
    /// SCRAM-SHA-512 credentials, a PLAIN entry and a client certificate.
    pub users: Vec<(String, String)>,
    /// The StandardAuthorizer with `allow.everyone.if.no.acl.found=false`:
    /// only [`ADMIN`] may do anything until ACLs allow it.
    pub authorizer: bool,
    /// Extra `server.properties` lines (`key=value`), after the rest.
    pub broker_properties: Vec<(String, String)>,
}

impl Security {
    /// A listener speaking `protocol`, with only [`ADMIN`] and no ACLs.
    pub fn new(protocol: Protocol) -> Security {
        Security {
            protocol,
            users: Vec::new(),
            authorizer: false,
            broker_properties: Vec::new(),
        }
    }

    /// Sets a broker property (`connections.max.reauth.ms`, say).
    pub fn broker_property(mut self, key: &str, value: &str) -> Security {
        self.broker_properties
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a user.
    pub fn user(mut self, name: &str, password: &str) -> Security {
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Turns the authorizer on.
    pub fn with_authorizer(mut self) -> Security {
        self.authorizer = true;
        self
    }

    /// Every user with its password, [`ADMIN`] first.
    fn all_users(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((ADMIN, ADMIN_PASSWORD))
            .chain(self.users.iter().map(|(u, p)| (u.as_str(), p.as_str())))
    }
}

/// A secure broker's settings and certificates, kept by its [`Broker`].
#[derive(Debug)]
pub struct Secured {
    /// What it was asked for.
    security: Security,
    /// Its PKI.
    certs: Certs,
    /// Where the certificates and client properties files live.
    dir: PathBuf,
}

impl Secured {
    /// Makes the certificates for `security` in `dir`.
    pub(super) fn new(security: &Security, dir: &Path) -> Secured {
        let users: Vec<&str> = security.all_users().map(|(u, _)| u).collect();
        Secured {
            security: security.clone(),
            certs: Certs::generate(dir, &users),
            dir: dir.to_path_buf(),
        }
    }

    /// The `server.properties` lines for the listeners and their security.
    pub(super) fn listener_properties(&self, port: u16, internal: u16, controller: u16) -> String {
        let s = &self.security;
        let mut p = format!(
            "listeners=CLIENT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=CLIENT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}\n\
             listener.security.protocol.map=CLIENT:{},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=INTERNAL\n",
            s.protocol.security_protocol()
        );
        if s.protocol.tls() {
            // PEM key and trust stores, inline: Java's properties format
            // reads "\n" in a value as a line break.
            let inline = |path: &Path| {
                let pem = std::fs::read_to_string(path).expect("read PEM");
                pem.trim_end().replace('\n', "\\n")
            };
            p += &format!(
                "listener.name.client.ssl.keystore.type=PEM\n\
                 listener.name.client.ssl.keystore.certificate.chain={}\n\
                 listener.name.client.ssl.keystore.key={}\n\
                 listener.name.client.ssl.truststore.type=PEM\n\
                 listener.name.client.ssl.truststore.certificates={}\n",
                inline(&self.certs.server.cert),
                inline(&self.certs.server.key),
                inline(&self.certs.ca),
            );
        }
        if s.protocol == Protocol::Mtls {
            p += "listener.name.client.ssl.client.auth=required\n\
                  ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT\n";
        }
        if s.protocol.sasl() {
            let scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
            let plain_users: String = s
                .all_users()
                .map(|(u, pw)| format!(" user_{u}=\"{pw}\""))
                .collect();
            p += &format!(
                "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN,OAUTHBEARER\n\
                 listener.name.client.oauthbearer.sasl.jaas.config=\
                 org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;\n\
                 listener.name.client.scram-sha-256.sasl.jaas.config={scram}\n\
                 listener.name.client.scram-sha-512.sasl.jaas.config={scram}\n\
                 listener.name.client.plain.sasl.jaas.config=\
                 org.apache.kafka.common.security.plain.PlainLoginModule required{plain_users};\n"
            );
        }
        if s.authorizer {
            p += &format!(
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
                 super.users=User:{ADMIN};User:ANONYMOUS\n\
                 allow.everyone.if.no.acl.found=false\n"
            );
        }
        for (k, v) in &s.broker_properties {
            p += &format!("{k}={v}\n");
        }
        p
    }

    /// Extra `kafka-storage format` arguments: the SCRAM credentials.
    pub(super) fn format_args(&self) -> Vec<String> {
        if !self.security.protocol.sasl() {
            return Vec::new();
        }
        let mut args = Vec::new();
        for (user, password) in self.security.all_users() {
            for m in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
                args.push("--add-scram".to_string());
                args.push(format!("{}=[name={user},password={password}]", m.name()));
            }
        }
        args
    }
}

impl Broker {
    /// Starts a single-node Apache Kafka cluster whose client listener is
    /// secured as `security` says, and waits until it answers. `None`, with
    /// a message, on `KFLIP_BROKER=tansu`: the test then returns.
    pub fn start_secure(name: &str, security: &Security) -> Option<Broker> {
        if kind() != Kind::Kafka {
            eprintln!("{name}: secure brokers skipped on KFLIP_BROKER=tansu (need Apache Kafka)");
            return None;
        }
        Some(Broker::launch_secure(name, security))
    }

    fn secured(&self) -> &Secured {
        self.secure
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not a secure broker", self.name))
    }

    /// What the client listener speaks.
    pub fn protocol(&self) -> Protocol {
        self.secured().security.protocol
    }

    /// The test certificates: CA, server, clients, untrusted, expired.
    pub fn certs(&self) -> &Certs {
        &self.secured().certs
    }

    /// The CA certificate (PEM) that the broker's certificate chains to.
    pub fn ca_pem(&self) -> &Path {
        &self.secured().certs.ca
    }

    /// The PLAINTEXT `INTERNAL` listener, `127.0.0.1:port`: benchmarks
    /// compare it with the secured client listener of the same broker, so
    /// both paths share one JVM, one log directory and one page cache.
    pub fn plaintext_addr(&self) -> String {
        self.secured();
        self.internal_addr()
    }

    /// The password of `user`.
    pub fn password(&self, user: &str) -> &str {
        self.secured()
            .security
            .all_users()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("{} has no user {user}", self.name))
    }

    /// A librdkafka config for the client listener, logging in with `auth`
    /// (on top of [`clients::config`]).
    pub fn client_config(&self, auth: Auth<'_>) -> ClientConfig {
        let protocol = self.protocol();
        let mut c = clients::config(&self.bootstrap());
        c.set("security.protocol", protocol.security_protocol());
        if protocol.tls() {
            c.set("ssl.ca.location", self.ca_pem().display().to_string());
        }
        match auth {
            Auth::Sasl(m, user) => {
                assert!(protocol.sasl(), "{protocol:?} has no SASL");
                c.set("sasl.mechanism", m.name())
                    .set("sasl.username", user)
                    .set("sasl.password", self.password(user));
            }
            Auth::Cert(user) => {
                assert!(protocol.tls(), "{protocol:?} has no TLS");
                let f = self.certs().client(user);
                c.set("ssl.certificate.location", f.cert.display().to_string())
                    .set("ssl.key.location", f.key.display().to_string());
            }
            Auth::Anonymous => {}
        }
        c
    }

    /// How `user` logs in on this listener: SCRAM-SHA-512 on SASL
    /// listeners, its certificate on mTLS, nothing on plain SSL.
    pub fn auth_of<'a>(&self, user: &'a str) -> Auth<'a> {
        match self.protocol() {
            Protocol::SaslSsl | Protocol::SaslPlaintext => Auth::Sasl(Mechanism::ScramSha512, user),
            Protocol::Mtls => Auth::Cert(user),
            Protocol::Ssl => Auth::Anonymous,
        }
    }

    /// A librdkafka config for [`ADMIN`], the super user.
    pub fn admin_config(&self) -> ClientConfig {
        self.client_config(self.auth_of(ADMIN))
    }

    /// A Java client properties file (for Kafka's tools' `--command-config`
    /// or the Java test client) logging `user` in as [`Broker::auth_of`].
    pub fn java_properties(&self, user: &str) -> PathBuf {
        let protocol = self.protocol();
        let mut p = format!("security.protocol={}\n", protocol.security_protocol());
        if protocol.tls() {
            p += &format!(
                "ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                self.ca_pem().display()
            );
        }
        match self.auth_of(user) {
            Auth::Sasl(m, user) => {
                p += &format!(
                    "sasl.mechanism={}\n\
                     sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
                     required username=\"{user}\" password=\"{}\";\n",
                    m.name(),
                    self.password(user)
                );
            }
            Auth::Cert(user) => {
                p += &format!(
                    "ssl.keystore.type=PEM\nssl.keystore.location={}\n",
                    self.certs().client(user).keystore.display()
                );
            }
            Auth::Anonymous => {}
        }
        let path = self.secured().dir.join(format!("{user}.properties"));
        std::fs::write(&path, p).expect("client properties");
        path
    }

    /// Runs Kafka's ACL tool (`kafka-acls.sh`) as [`ADMIN`] with `args`
    /// (`--add`, `--list`, ...); returns its output, or panics with it.
    pub fn acls(&self, args: &[&str]) -> String {
        let bootstrap = self.bootstrap();
        let props = self.java_properties(ADMIN).display().to_string();
        let mut all = vec!["--bootstrap-server", &bootstrap, "--command-config", &props];
        all.extend_from_slice(args);
        self.tool("org.apache.kafka.tools.AclCommand", &all)
    }

    /// Allows `User:user` the `operations` (`Read`, `Write`, `Describe`,
    /// ...) on `resource`, given as the ACL tool's options (`["--topic",
    /// "a"]`, `["--group", "g"]`).
    pub fn allow(&self, user: &str, operations: &[&str], resource: &[&str]) {
        let principal = format!("User:{user}");
        let mut args = vec!["--add", "--allow-principal", &principal];
        for op in operations {
            args.extend_from_slice(&["--operation", op]);
        }
        args.extend_from_slice(resource);
        self.acls(&args);
    }

    /// Creates `topic` with `partitions` as [`ADMIN`].
    pub fn create_secure_topic(&self, topic: &str, partitions: i32) {
        clients::create_topic_as(self.admin_config(), topic, partitions);
    }
}
