//! ACL and SCRAM credential admin on one cluster with kflip's own client:
//! DescribeAcls, CreateAcls, DeleteAcls, DescribeUserScramCredentials and
//! AlterUserScramCredentials. Any broker answers them (a KRaft broker
//! forwards changes to the controller).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, CreateAclsRequest, DeleteAclsRequest,
    DescribeAclsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

pub use super::acl::{code, resource_type_name, Acl};
use super::{ClientError, KafkaConn, VersionTable};
use crate::config::ClusterConfig;

/// A broker's refusal of one item of a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error code {code}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
pub struct Refusal {
    /// The Kafka error code.
    pub code: i16,
    /// The broker's message, if it gave one.
    pub message: Option<String>,
}

impl Refusal {
    fn check(code: i16, message: Option<&StrBytes>) -> Result<(), Refusal> {
        if code == 0 {
            return Ok(());
        }
        Err(Refusal {
            code,
            message: message.map(|m| m.as_str().to_string()),
        })
    }
}

/// Why an ACL or credential request failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No answer: connection, login or exchange.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The broker refused the whole request.
    #[error("{request} refused by {addr}: {refusal}")]
    Refused {
        /// The request.
        request: &'static str,
        /// The broker.
        addr: String,
        /// Its answer.
        refusal: Refusal,
    },
}

impl AdminError {
    /// The Kafka error code of a refusal, if it was one.
    pub fn code(&self) -> Option<i16> {
        match self {
            AdminError::Refused { refusal, .. } => Some(refusal.code),
            AdminError::Client(_) => None,
        }
    }
}

/// One SCRAM credential to set: the salt and salted password are derived
/// by the caller; `Debug` never shows them.
#[derive(Clone)]
pub struct Upsert {
    /// The user.
    pub name: String,
    /// Mechanism code (1 SCRAM-SHA-256, 2 SCRAM-SHA-512).
    pub mechanism: i8,
    /// PBKDF2 iterations.
    pub iterations: i32,
    /// The salt.
    pub salt: Vec<u8>,
    /// `Hi(password, salt, iterations)`.
    pub salted_password: zeroize::Zeroizing<Vec<u8>>,
}

/// A user's SCRAM credentials as the cluster describes them: mechanism
/// code and iterations, never a salt or key; or why it has none.
pub type UserCredentials = Result<Vec<(i8, i32)>, Refusal>;

/// ACL and credential admin on one broker of a cluster.
pub struct AclAdmin {
    conn: KafkaConn,
    versions: VersionTable,
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

impl AclAdmin {
    /// Connects to the first bootstrap broker of `cluster` that answers.
    pub async fn connect(cluster: &ClusterConfig, timeout: Duration) -> Result<Self, ClientError> {
        let mut conn = KafkaConn::connect_any(cluster, timeout).await?;
        let versions = conn.api_versions().await?;
        Ok(AclAdmin { conn, versions })
    }

    fn version(&self, key: ApiKey, cap: i16) -> i16 {
        self.versions
            .get(&(key as i16))
            .map(|r| r.max.min(cap).max(r.min))
            .unwrap_or(cap)
    }

    fn refused(&self, request: &'static str, refusal: Refusal) -> AdminError {
        AdminError::Refused {
            request,
            addr: self.conn.addr().to_string(),
            refusal,
        }
    }

    /// Every ACL of the cluster.
    pub async fn describe_acls(&mut self) -> Result<Vec<Acl>, AdminError> {
        // The crate's defaults are empty strings, which match nothing:
        // null is "any".
        let req = DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(code::ANY)
            .with_pattern_type_filter(code::ANY)
            .with_operation(code::ANY)
            .with_permission_type(code::ANY);
        let v = self.version(ApiKey::DescribeAcls, 3).max(1);
        let r = self.conn.send(&req, v).await?;
        Refusal::check(r.error_code, r.error_message.as_ref())
            .map_err(|e| self.refused("DescribeAcls", e))?;
        let mut out = Vec::new();
        for res in r.resources {
            for a in res.acls {
                out.push(Acl {
                    resource_type: res.resource_type,
                    name: res.resource_name.as_str().to_string(),
                    pattern: res.pattern_type,
                    principal: a.principal.as_str().to_string(),
                    host: a.host.as_str().to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                });
            }
        }
        Ok(out)
    }

    /// Creates `acls`; the outcome of each, in order.
    pub async fn create_acls(
        &mut self,
        acls: &[Acl],
    ) -> Result<Vec<Result<(), Refusal>>, AdminError> {
        let creations = acls
            .iter()
            .map(|a| {
                AclCreation::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(s(&a.name))
                    .with_resource_pattern_type(a.pattern)
                    .with_principal(s(&a.principal))
                    .with_host(s(&a.host))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let v = self.version(ApiKey::CreateAcls, 3).max(1);
        let r = self
            .conn
            .send(&CreateAclsRequest::default().with_creations(creations), v)
            .await?;
        Ok(r.results
            .iter()
            .map(|x| Refusal::check(x.error_code, x.error_message.as_ref()))
            .collect())
    }

    /// Deletes exactly `acls` (each filter matches one binding); how many
    /// bindings each deleted, or why it failed, in order.
    pub async fn delete_acls(
        &mut self,
        acls: &[Acl],
    ) -> Result<Vec<Result<usize, Refusal>>, AdminError> {
        let filters = acls
            .iter()
            .map(|a| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(a.resource_type)
                    .with_resource_name_filter(Some(s(&a.name)))
                    .with_pattern_type_filter(a.pattern)
                    .with_principal_filter(Some(s(&a.principal)))
                    .with_host_filter(Some(s(&a.host)))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let v = self.version(ApiKey::DeleteAcls, 3).max(1);
        let r = self
            .conn
            .send(&DeleteAclsRequest::default().with_filters(filters), v)
            .await?;
        Ok(r.filter_results
            .iter()
            .map(|x| {
                Refusal::check(x.error_code, x.error_message.as_ref())
                    .map(|()| x.matching_acls.len())
            })
            .collect())
    }

    /// The SCRAM credentials of `users` (mechanism and iterations only:
    /// the API never returns a salt or a salted password).
    pub async fn describe_scram(
        &mut self,
        users: &[String],
    ) -> Result<Vec<(String, UserCredentials)>, AdminError> {
        let req = DescribeUserScramCredentialsRequest::default().with_users(Some(
            users
                .iter()
                .map(|u| UserName::default().with_name(s(u)))
                .collect(),
        ));
        let r = self.conn.send(&req, 0).await?;
        Refusal::check(r.error_code, r.error_message.as_ref())
            .map_err(|e| self.refused("DescribeUserScramCredentials", e))?;
        Ok(r.results
            .into_iter()
            .map(|u| {
                let creds = Refusal::check(u.error_code, u.error_message.as_ref()).map(|()| {
                    u.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations))
                        .collect()
                });
                (u.user.as_str().to_string(), creds)
            })
            .collect())
    }

    /// Sets `upserts`; the outcome per user, in the broker's order.
    pub async fn alter_scram(
        &mut self,
        upserts: &[Upsert],
    ) -> Result<Vec<(String, Result<(), Refusal>)>, AdminError> {
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(
            upserts
                .iter()
                .map(|u| {
                    ScramCredentialUpsertion::default()
                        .with_name(s(&u.name))
                        .with_mechanism(u.mechanism)
                        .with_iterations(u.iterations)
                        .with_salt(Bytes::copy_from_slice(&u.salt))
                        .with_salted_password(Bytes::copy_from_slice(&u.salted_password))
                })
                .collect(),
        );
        let r = self.conn.send(&req, 0).await?;
        Ok(r.results
            .iter()
            .map(|x| {
                (
                    x.user.as_str().to_string(),
                    Refusal::check(x.error_code, x.error_message.as_ref()),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_with_the_brokers_message() {
        let r = Refusal::check(31, Some(&s("no"))).expect_err("refused");
        assert_eq!(r.to_string(), "error code 31 (no)");
        assert!(Refusal::check(0, None).is_ok());
    }
}
