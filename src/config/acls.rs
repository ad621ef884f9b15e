//! A flow's `acls:` and `users:` keys: what it keeps on the standby besides
//! records (see `crate::replication::acls`).

use super::model::ScramUserFile;
use super::secrets::SecretRef;
use super::security::secret;
use super::values::invalid;
use super::ConfigError;

/// A SCRAM user whose credentials a flow sets on its target, with the
/// mechanisms and iteration counts the user has on the source. Only where
/// the password is kept is in the config, never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncUser {
    /// The user name (principal `User:<name>`).
    pub name: String,
    /// Where its password is.
    pub password: SecretRef,
}

/// Validates `users:` of the flow at `key`: a name and exactly one of
/// `password_file`, `password_env` each, no name twice.
pub(super) fn users(
    key: &str,
    list: Option<Vec<ScramUserFile>>,
) -> Result<Vec<SyncUser>, ConfigError> {
    let mut out: Vec<SyncUser> = Vec::new();
    for (i, u) in list.unwrap_or_default().into_iter().enumerate() {
        let k = format!("{key}.users[{i}]");
        if u.name.is_empty() || u.name.contains([',', '=']) || u.name.trim() != u.name {
            return Err(invalid(
                format!("{k}.name"),
                format!(
                    "{:?} is not a SCRAM user name (not empty, no ',' or '=', no outer spaces)",
                    u.name
                ),
            ));
        }
        if out.iter().any(|o| o.name == u.name) {
            return Err(invalid(k, format!("repeats the user {:?}", u.name)));
        }
        let password = secret(
            &k,
            "password_file",
            u.password_file,
            "password_env",
            u.password_env,
        )?
        .ok_or_else(|| invalid(&k, "needs password_file or password_env"))?;
        out.push(SyncUser {
            name: u.name,
            password,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, SecretRef};

    const BASE: &str = "clusters:\n  dc1: { bootstrap: \"h:1\" }\n  dc2: { bootstrap: \"h:2\" }\nreplication:\n  flows:\n    - ";

    #[test]
    fn acls_and_users_are_read() {
        let c = Config::parse(&format!(
            "{BASE}{{ source: dc1, target: dc2, topics: [t], acls: true, users: [{{ name: alice, password_env: ALICE_PW }}] }}\n"
        ))
        .expect("config");
        let f = &c.replication.expect("replication").flows[0];
        assert!(f.acls);
        assert_eq!(f.users.len(), 1);
        assert_eq!(f.users[0].name, "alice");
        assert_eq!(f.users[0].password, SecretRef::Env("ALICE_PW".into()));
        let plain = Config::parse(&format!(
            "{BASE}{{ source: dc1, target: dc2, topics: [t] }}\n"
        ))
        .expect("config");
        let f = &plain.replication.expect("replication").flows[0];
        assert!(!f.acls && f.users.is_empty(), "off unless asked for");
    }

    #[test]
    fn bad_users_name_their_key() {
        for (users, key) in [
            ("[{ name: alice }]", "replication.flows[0].users[0]"),
            (
                "[{ name: \"a,b\", password_env: X }]",
                "replication.flows[0].users[0].name",
            ),
            (
                "[{ name: a, password_env: X }, { name: a, password_env: Y }]",
                "replication.flows[0].users[1]",
            ),
            (
                "[{ name: a, password_env: X, password_file: /nonexistent }]",
                "replication.flows[0].users[0]",
            ),
            (
                "[{ name: a, password_file: /nonexistent/pw }]",
                "replication.flows[0].users[0].password_file",
            ),
            ("[{ name: a, password: x }]", "password"),
        ] {
            let e = Config::parse(&format!(
                "{BASE}{{ source: dc1, target: dc2, topics: [t], users: {users} }}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(key), "{users}: {e}");
            assert!(!e.contains("secret-value"), "{e}");
        }
    }
}
