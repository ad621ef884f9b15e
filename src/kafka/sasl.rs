//! kflip's SASL login to a broker: SaslHandshake v1, then SaslAuthenticate
//! round trips of the mechanism (KIP-152). The same login serves kflip's
//! own requests and every proxied session, with the cluster's credentials
//! or a principal's own. Secrets are read when the login runs, and no
//! error carries one.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

use super::{ClientError, KafkaConn};
use crate::config::{Credentials, Mechanism};

fn refused(conn: &KafkaConn, mechanism: Mechanism, message: impl Into<String>) -> ClientError {
    ClientError::Login {
        addr: conn.addr.clone(),
        mechanism,
        message: message.into(),
    }
}

/// Logs in on `conn` with `creds`.
pub async fn login(conn: &mut KafkaConn, creds: &Credentials) -> Result<(), ClientError> {
    let mech = creds.mechanism;
    let hs = conn
        .send(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech.name())),
            1,
        )
        .await?;
    if hs.error_code != 0 {
        let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(refused(
            conn,
            mech,
            format!(
                "the broker does not offer it (error {}; it offers {})",
                hs.error_code,
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            ),
        ));
    }
    match mech {
        Mechanism::Plain => {
            let (user, password) = creds
                .user
                .as_ref()
                .ok_or_else(|| refused(conn, mech, "no user name configured"))?;
            let password = password
                .read()
                .map_err(|e| refused(conn, mech, e.to_string()))?;
            let mut msg = Vec::with_capacity(user.len() + password.expose().len() + 2);
            msg.push(0);
            msg.extend_from_slice(user.as_bytes());
            msg.push(0);
            msg.extend_from_slice(password.expose().as_bytes());
            authenticate(conn, mech, msg).await?;
            Ok(())
        }
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => scram(conn, creds).await,
        Mechanism::OAuthBearer => oauthbearer(conn, creds).await,
    }
}

/// One SaslAuthenticate round trip: the server's reply bytes, or the
/// broker's refusal. Records the session lifetime the broker sets (v1+;
/// 0 means the session does not expire).
pub(super) async fn authenticate(
    conn: &mut KafkaConn,
    mech: Mechanism,
    bytes: Vec<u8>,
) -> Result<Bytes, ClientError> {
    let resp = conn
        .send(
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
            1,
        )
        .await?;
    if resp.error_code != 0 {
        let message = resp
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| format!("error {}", resp.error_code));
        return Err(refused(conn, mech, message));
    }
    conn.session_lifetime = u64::try_from(resp.session_lifetime_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    Ok(resp.auth_bytes)
}

async fn scram(conn: &mut KafkaConn, creds: &Credentials) -> Result<(), ClientError> {
    use crate::auth::scram::{Mechanism as Scram, ScramClient};
    let mech = creds.mechanism;
    let scram = if mech == Mechanism::ScramSha256 {
        Scram::Sha256
    } else {
        Scram::Sha512
    };
    let (user, password) = creds
        .user
        .as_ref()
        .ok_or_else(|| refused(conn, mech, "no user name configured"))?;
    let password = password
        .read()
        .map_err(|e| refused(conn, mech, e.to_string()))?;
    let mut client =
        ScramClient::new(user, password, scram).map_err(|e| refused(conn, mech, e.to_string()))?;
    let first = client.client_first();
    let server_first = authenticate(conn, mech, first).await?;
    let last = client
        .client_final(&server_first)
        .map_err(|e| refused(conn, mech, e.to_string()))?;
    let server_final = authenticate(conn, mech, last).await?;
    client.verify(&server_final).map_err(|e| {
        refused(
            conn,
            mech,
            format!("the broker's proof does not verify: {e}"),
        )
    })
}

async fn oauthbearer(conn: &mut KafkaConn, creds: &Credentials) -> Result<(), ClientError> {
    use crate::auth::oauth::client_response;
    let mech = creds.mechanism;
    let provider = creds
        .token
        .as_ref()
        .ok_or_else(|| "no token source configured".to_string())
        .and_then(crate::cluster::oauth::provider)
        .map_err(|e| refused(conn, mech, e))?;
    // The token endpoint is a blocking HTTP call (cached until shortly
    // before the token expires); keep it off the async workers.
    let token = tokio::task::spawn_blocking(move || provider.token())
        .await
        .map_err(|_| refused(conn, mech, "the token task ended"))?
        .map_err(|e| refused(conn, mech, e.to_string()))?;
    let first =
        client_response(&token.token, &[]).map_err(|e| refused(conn, mech, e.to_string()))?;
    authenticate(conn, mech, first).await?;
    Ok(())
}
