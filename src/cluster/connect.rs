//! TCP connections to a cluster's brokers.

use std::time::Duration;

use tokio::net::TcpStream;

/// Why no connection to a cluster could be made. Names the last address
/// tried; never carries credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// No address to try.
    #[error("no broker address to connect to")]
    NoAddress,
    /// The address refused or failed.
    #[error("cannot connect to {addr}: {message}")]
    Failed {
        /// The address tried last.
        addr: String,
        /// Why.
        message: String,
    },
    /// The TLS settings could not be used.
    #[error("TLS for {addr}: {source}")]
    TlsConfig {
        /// The address.
        addr: String,
        /// Why.
        source: super::tls::TlsError,
    },
    /// The TLS handshake failed (an untrusted or expired certificate, a
    /// name that does not match, a server that does not speak TLS).
    #[error("TLS handshake with {addr} failed: {message}")]
    Handshake {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The address did not answer in time.
    #[error("cannot connect to {addr}: timed out after {timeout:?}")]
    TimedOut {
        /// The address tried last.
        addr: String,
        /// The bound.
        timeout: Duration,
    },
}

/// Connects to the first of `addrs` that accepts within `timeout` each,
/// with Nagle off (Kafka requests are small and latency-bound). Returns
/// the stream and the address it reached.
pub async fn connect_any<S: AsRef<str>>(
    addrs: &[S],
    timeout: Duration,
) -> Result<(TcpStream, String), ConnectError> {
    let mut last = ConnectError::NoAddress;
    for addr in addrs {
        let addr = addr.as_ref();
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                // Best effort: a socket that refuses the option still works.
                let _ = s.set_nodelay(true);
                return Ok((s, addr.to_string()));
            }
            Ok(Err(e)) => {
                last = ConnectError::Failed {
                    addr: addr.to_string(),
                    message: e.to_string(),
                }
            }
            Err(_) => {
                last = ConnectError::TimedOut {
                    addr: addr.to_string(),
                    timeout,
                }
            }
        }
    }
    Err(last)
}

/// Connects to the first of `addrs` that accepts, then, if the cluster
/// uses TLS, completes the handshake within `timeout` (verifying the
/// broker's certificate against `tls.server_name` or the host connected
/// to).
pub async fn connect<S: AsRef<str>>(
    cluster: &crate::config::ClusterConfig,
    addrs: &[S],
    timeout: Duration,
) -> Result<(super::Stream, String), ConnectError> {
    let (tcp, addr) = connect_any(addrs, timeout).await?;
    let Some(tls) = &cluster.tls else {
        return Ok((super::Stream::Plain(tcp), addr));
    };
    let config = super::tls::client_config(tls).map_err(|source| ConnectError::TlsConfig {
        addr: addr.clone(),
        source,
    })?;
    let host = match &tls.server_name {
        Some(name) => name.clone(),
        None => addr
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .unwrap_or_else(|| addr.clone()),
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
        ConnectError::Handshake {
            addr: addr.clone(),
            message: format!("{host:?} is not a valid TLS server name: {e}"),
        }
    })?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(s)) => Ok((super::Stream::Client(Box::new(s)), addr)),
        Ok(Err(e)) => Err(ConnectError::Handshake {
            addr,
            message: e.to_string(),
        }),
        Err(_) => Err(ConnectError::TimedOut { addr, timeout }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_address_that_answers_wins_and_failures_name_the_address() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = open.local_addr().unwrap().to_string();
        // A port that was just free: nothing listens there.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let t = Duration::from_secs(2);
        let (_, reached) = connect_any(&[closed.clone(), good.clone()], t)
            .await
            .unwrap();
        assert_eq!(reached, good);
        let err = connect_any(std::slice::from_ref(&closed), t)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&closed), "{err}");
        let none: [&str; 0] = [];
        assert!(matches!(
            connect_any(&none, t).await,
            Err(ConnectError::NoAddress)
        ));
    }
}
