//! Test certificates, made fresh for each secure broker: a CA, a server
//! certificate for 127.0.0.1 and localhost, one client certificate per
//! user (for mTLS), and for negative tests an untrusted CA (with a client
//! certificate of its own) and an expired client certificate.
//!
//! Everything is written as PEM, which both librdkafka and Apache Kafka
//! (`ssl.keystore.type=PEM`) read; keys are unencrypted PKCS#8.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate alone (librdkafka `ssl.certificate.location`).
    pub cert: PathBuf,
    /// The private key alone, PKCS#8 (librdkafka `ssl.key.location`).
    pub key: PathBuf,
    /// The key followed by the certificate: a Java PEM key store
    /// (`ssl.keystore.type=PEM`, `ssl.keystore.location`).
    pub keystore: PathBuf,
}

/// The PEM files of one secure broker's test PKI.
#[derive(Clone, Debug)]
pub struct Certs {
    /// The CA every good certificate chains to (`ssl.ca.location`,
    /// `ssl.truststore.location`).
    pub ca: PathBuf,
    /// The broker's certificate (SANs 127.0.0.1 and localhost).
    pub server: CertFiles,
    /// Another CA, trusted by nobody: as a client's `ssl.ca.location` the
    /// broker's certificate fails verification.
    pub untrusted_ca: PathBuf,
    /// A client certificate (CN=mallory) issued by the untrusted CA.
    pub untrusted_client: CertFiles,
    /// A client certificate (CN=expired) from the good CA that expired in
    /// 2001.
    pub expired_client: CertFiles,
    dir: PathBuf,
}

impl Certs {
    /// Makes the PKI in `dir`, with a client certificate (CN=`user`) for
    /// each of `users`.
    pub fn generate(dir: &Path, users: &[&str]) -> Certs {
        std::fs::create_dir_all(dir).expect("certificate dir");
        let ca = new_ca("kflip test CA");
        let untrusted = new_ca("kflip untrusted CA");
        write(&dir.join("ca.pem"), &ca.pem());
        write(&dir.join("untrusted-ca.pem"), &untrusted.pem());

        let server = leaf(
            "127.0.0.1",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let server = issue(dir, "server", server, &ca);
        for user in users {
            issue(dir, &format!("client-{user}"), client(user), &ca);
        }
        let untrusted_client = issue(dir, "untrusted-client", client("mallory"), &untrusted);
        let mut expired = client("expired");
        expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
        expired.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired_client = issue(dir, "expired-client", expired, &ca);
        Certs {
            ca: dir.join("ca.pem"),
            server,
            untrusted_ca: dir.join("untrusted-ca.pem"),
            untrusted_client,
            expired_client,
            dir: dir.to_path_buf(),
        }
    }

    /// The client certificate of `user` (one of the users it was made for).
    pub fn client(&self, user: &str) -> CertFiles {
        let f = files(&self.dir, &format!("client-{user}"));
        assert!(f.cert.exists(), "no client certificate for {user}");
        f
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    valid_now(&mut p);
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("CA key")).expect("CA certificate")
}

fn leaf(cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(sans).expect("subject alternative names");
    p.distinguished_name.push(DnType::CommonName, cn);
    // ECDSA keys sign; they never encipher.
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![usage];
    p.use_authority_key_identifier_extension = true;
    valid_now(&mut p);
    p
}

fn client(user: &str) -> CertificateParams {
    leaf(user, &[], ExtendedKeyUsagePurpose::ClientAuth)
}

/// rcgen's default validity ends in 4096; keep to dates every verifier
/// handles.
fn valid_now(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
}

fn issue(
    dir: &Path,
    name: &str,
    params: CertificateParams,
    ca: &CertifiedIssuer<'static, KeyPair>,
) -> CertFiles {
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign certificate");
    let f = files(dir, name);
    write(&f.cert, &cert.pem());
    write(&f.key, &key.serialize_pem());
    write(
        &f.keystore,
        &format!("{}{}", key.serialize_pem(), cert.pem()),
    );
    f
}

fn files(dir: &Path, name: &str) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
        keystore: dir.join(format!("{name}-keystore.pem")),
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
