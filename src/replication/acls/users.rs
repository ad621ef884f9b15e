//! SCRAM users on the target.
//!
//! DescribeUserScramCredentials answers a mechanism and an iteration count
//! per user, never the salt or the salted password, so a credential cannot
//! be copied from the source. What can be done honestly: a user named in
//! the flow's `users:` (with its password) gets each mechanism it has on
//! the source, with the source's iteration count and a fresh salt, through
//! AlterUserScramCredentials; any other user of the flow's ACLs that has a
//! mechanism on the source the target lacks is reported.
//!
//! A credential is set once per flow start, and again when the target lacks
//! it, its iterations differ, or the password changed. Passwords, salts and
//! salted passwords are never logged; only a keyed hash of the password is
//! kept, to notice a change.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use super::plan::Finding;
use super::{refusal, Pass, SyncError};
use crate::auth::scram::{self, Mechanism};
use crate::config::{FlowConfig, Secret};
use crate::kafka::acls::{code, AclAdmin, Upsert, UserCredentials};

/// What the sync remembers of the credentials it set.
pub(super) struct Users {
    /// Random per flow start: fingerprints mean nothing elsewhere.
    key: [u8; 32],
    /// (user, mechanism code) -> (iterations, password fingerprint) set.
    set: HashMap<(String, i8), (i32, [u8; 32])>,
}

fn mechanism(code: i8) -> Option<Mechanism> {
    match code {
        1 => Some(Mechanism::Sha256),
        2 => Some(Mechanism::Sha512),
        _ => None,
    }
}

fn mechanism_name(code: i8) -> String {
    mechanism(code)
        .map(|m| m.kafka_name().to_string())
        .unwrap_or_else(|| format!("mechanism {code}"))
}

fn user_finding(user: &str, reason: String) -> Finding {
    Finding {
        what: format!("user {user}"),
        reason,
    }
}

impl Users {
    /// Nothing set yet.
    pub(super) fn new() -> Result<Users, SyncError> {
        let mut key = [0u8; 32];
        scram::random(&mut key).map_err(SyncError::Random)?;
        Ok(Users {
            key,
            set: HashMap::new(),
        })
    }

    fn fingerprint(&self, password: &Secret) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(password.expose().as_bytes());
        h.finalize().into()
    }

    /// One pass: the flow's configured users and the users of `principals`
    /// (`User:<name>`).
    pub(super) async fn sync(
        &mut self,
        cfg: &FlowConfig,
        principals: &BTreeSet<String>,
        src: &mut AclAdmin,
        tgt: &mut AclAdmin,
        pass: &mut Pass,
    ) -> Result<(), SyncError> {
        let mut names: BTreeSet<String> = cfg.users.iter().map(|u| u.name.clone()).collect();
        names.extend(
            principals
                .iter()
                .filter_map(|p| p.strip_prefix("User:"))
                .filter(|n| *n != "*")
                .map(str::to_string),
        );
        if names.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = names.into_iter().collect();
        let need = "DESCRIBE on the cluster";
        let Some(on_source) = describe(src, &names, pass, "source", cfg, need).await? else {
            return Ok(());
        };
        let Some(on_target) = describe(tgt, &names, pass, "target", cfg, need).await? else {
            return Ok(());
        };
        let mut upserts: Vec<(Upsert, [u8; 32])> = Vec::new();
        for name in &names {
            let configured = cfg.users.iter().find(|u| &u.name == name);
            let had = match on_source.get(name) {
                Some(Ok(creds)) => creds.clone(),
                Some(Err(r)) if r.code == code::RESOURCE_NOT_FOUND => {
                    if configured.is_some() {
                        pass.unfixable.push(user_finding(
                            name,
                            "not a SCRAM user on the source: not created on the target".into(),
                        ));
                    }
                    continue;
                }
                Some(Err(r)) => {
                    pass.unfixable
                        .push(user_finding(name, format!("source: {r}")));
                    continue;
                }
                None => continue,
            };
            let has: Vec<(i8, i32)> = match on_target.get(name) {
                Some(Ok(creds)) => creds.clone(),
                _ => Vec::new(),
            };
            let password = match configured.map(|u| u.password.read()) {
                Some(Ok(p)) => Some(p),
                Some(Err(e)) => {
                    pass.unfixable
                        .push(user_finding(name, format!("its password: {e}")));
                    continue;
                }
                None => None,
            };
            for (mech_code, iterations) in had {
                let Some(password) = &password else {
                    if !has.iter().any(|(m, _)| *m == mech_code) {
                        pass.unfixable.push(user_finding(name, format!(
                            "has {} on the source but not on the target, and the flow's users: has no password for it (the API never returns salted passwords)",
                            mechanism_name(mech_code)
                        )));
                    }
                    continue;
                };
                let fp = self.fingerprint(password);
                let current = has.contains(&(mech_code, iterations))
                    && self.set.get(&(name.clone(), mech_code)) == Some(&(iterations, fp));
                if current {
                    pass.users_synced += 1;
                    continue;
                }
                match upsert(name, mech_code, iterations, password) {
                    Ok(u) => upserts.push((u, fp)),
                    Err(reason) => pass.unfixable.push(user_finding(name, reason)),
                }
            }
        }
        if upserts.is_empty() {
            return Ok(());
        }
        // Apache Kafka refuses a request that names a user twice
        // (DUPLICATE_RESOURCE, "cannot be altered twice in the same
        // request"), so each round sets one mechanism per user.
        let mut rounds: Vec<Vec<(Upsert, [u8; 32])>> = Vec::new();
        for (u, fp) in upserts {
            match rounds
                .iter_mut()
                .find(|r| !r.iter().any(|(o, _)| o.name == u.name))
            {
                Some(r) => r.push((u, fp)),
                None => rounds.push(vec![(u, fp)]),
            }
        }
        for round in rounds {
            self.alter(cfg, tgt, round, pass).await?;
        }
        Ok(())
    }

    /// Sets one round of credentials (no user twice).
    async fn alter(
        &mut self,
        cfg: &FlowConfig,
        tgt: &mut AclAdmin,
        upserts: Vec<(Upsert, [u8; 32])>,
        pass: &mut Pass,
    ) -> Result<(), SyncError> {
        let list: Vec<Upsert> = upserts.iter().map(|(u, _)| u.clone()).collect();
        let results: BTreeMap<String, _> = tgt
            .alter_scram(&list)
            .await
            .map_err(|e| SyncError::on("target", &cfg.target, e))?
            .into_iter()
            .collect();
        for (u, fp) in upserts {
            match results.get(&u.name) {
                Some(Ok(())) => {
                    tracing::info!(flow = %cfg.id, user = %u.name, mechanism = %mechanism_name(u.mechanism), iterations = u.iterations, "SCRAM credential set on the target");
                    pass.users_upserted += 1;
                    self.set.insert((u.name, u.mechanism), (u.iterations, fp));
                }
                Some(Err(r)) if r.code == code::CLUSTER_AUTHORIZATION_FAILED => {
                    pass.unfixable.push(Finding {
                        what: format!("SCRAM users on {}", cfg.target),
                        reason: format!("AlterUserScramCredentials refused: CLUSTER_AUTHORIZATION_FAILED (the engine's principal needs ALTER on the cluster): {r}"),
                    });
                }
                Some(Err(r)) => pass.unfixable.push(user_finding(
                    &u.name,
                    format!("AlterUserScramCredentials: {r}"),
                )),
                None => pass.unfixable.push(user_finding(
                    &u.name,
                    "AlterUserScramCredentials gave no answer for it".into(),
                )),
            }
        }
        Ok(())
    }
}

/// Describes `names` on one side; `None` (with a finding) when the
/// engine's principal may not.
async fn describe(
    admin: &mut AclAdmin,
    names: &[String],
    pass: &mut Pass,
    side: &'static str,
    cfg: &FlowConfig,
    need: &str,
) -> Result<Option<BTreeMap<String, UserCredentials>>, SyncError> {
    let cluster = if side == "source" {
        &cfg.source
    } else {
        &cfg.target
    };
    match admin.describe_scram(names).await {
        Ok(list) => Ok(Some(list.into_iter().collect())),
        Err(e) => {
            let f = refusal(side, cluster, "SCRAM users", need, e)?;
            pass.unfixable.push(f);
            Ok(None)
        }
    }
}

/// A credential for `password` with a fresh salt.
fn upsert(name: &str, mech_code: i8, iterations: i32, password: &Secret) -> Result<Upsert, String> {
    let mech = mechanism(mech_code)
        .ok_or_else(|| format!("{} is not a SCRAM mechanism kflip knows", mech_code))?;
    let iters = mech
        .check_iterations(u64::try_from(iterations).unwrap_or(0))
        .map_err(|e| format!("the source's iteration count: {e}"))?;
    let mut salt = vec![0u8; scram::SALT_LEN];
    scram::random(&mut salt).map_err(|e| e.to_string())?;
    let salted_password = mech.salted_password(password.expose().as_bytes(), &salt, iters);
    Ok(Upsert {
        name: name.to_string(),
        mechanism: mech_code,
        iterations,
        salt,
        salted_password,
    })
}
