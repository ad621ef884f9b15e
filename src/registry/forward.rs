//! One exchange with a registry: the client's request re-sent on a fresh
//! connection, the answer handed back, failures as Confluent-style JSON.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpStream;

use crate::config::registry::RegistryUrl;

use super::MAX_BODY_BYTES;

/// Headers that belong to one connection, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Why an exchange with a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No TCP connection to the registry.
    #[error("schema registry {url} is unreachable: {source}")]
    Connect {
        /// The registry.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange broke off.
    #[error("schema registry {url} failed the request: {source}")]
    Http {
        /// The registry.
        url: String,
        /// Why.
        source: hyper::Error,
    },
    /// The request could not be built (a path or header hyper refuses).
    #[error("cannot forward the request to schema registry {url}: {source}")]
    Build {
        /// The registry.
        url: String,
        /// Why.
        source: hyper::http::Error,
    },
    /// The registry's answer exceeded [`MAX_BODY_BYTES`].
    #[error("schema registry {url} answered with a body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge {
        /// The registry.
        url: String,
    },
    /// No answer within `schema_registry.request_timeout`.
    #[error(
        "schema registry {url} did not answer within {after:?} (schema_registry.request_timeout)"
    )]
    Timeout {
        /// The registry.
        url: String,
        /// The bound.
        after: Duration,
    },
}

impl ForwardError {
    /// The answer to the client: 503 when the registry cannot be reached,
    /// 504 on timeout, 502 otherwise.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let (status, code) = match self {
            ForwardError::Connect { .. } => (StatusCode::SERVICE_UNAVAILABLE, 50301),
            ForwardError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, 50401),
            ForwardError::Build { .. } => (StatusCode::BAD_REQUEST, 40002),
            _ => (StatusCode::BAD_GATEWAY, 50201),
        };
        error_response(status, code, &self.to_string())
    }
}

/// A Confluent-style error: `{"error_code": N, "message": "..."}`.
pub fn error_response(status: StatusCode, code: u32, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error_code": code, "message": message });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    resp
}

/// Copies `from` without hop-by-hop headers, nor those the `Connection`
/// header names, nor `Host` and `Content-Length` (set by the caller).
fn end_to_end(from: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = from
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || n == "upgrade"
            || name == HOST
            || name == CONTENT_LENGTH
            || named.iter().any(|t| t == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Sends the client's request to `url` and returns the registry's answer.
pub async fn forward(
    url: &RegistryUrl,
    client: &Parts,
    body: Bytes,
    timeout: Duration,
) -> Result<Response<Full<Bytes>>, ForwardError> {
    let name = url.to_string();
    match tokio::time::timeout(timeout, exchange(url, &name, client, body)).await {
        Ok(r) => r,
        Err(_) => Err(ForwardError::Timeout {
            url: name,
            after: timeout,
        }),
    }
}

async fn exchange(
    url: &RegistryUrl,
    name: &str,
    client: &Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, ForwardError> {
    let path = client
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut req = Request::builder()
        .method(client.method.clone())
        .uri(format!("{}{path}", url.base_path))
        .body(Full::new(body.clone()))
        .map_err(|source| ForwardError::Build {
            url: name.to_string(),
            source,
        })?;
    *req.headers_mut() = end_to_end(&client.headers);
    let host = HeaderValue::from_str(&url.authority).map_err(|e| ForwardError::Build {
        url: name.to_string(),
        source: e.into(),
    })?;
    req.headers_mut().insert(HOST, host);
    req.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    req.headers_mut().insert(
        HeaderName::from_static("x-forwarded-by"),
        HeaderValue::from_static("kflip"),
    );
    let stream =
        TcpStream::connect(&url.authority)
            .await
            .map_err(|source| ForwardError::Connect {
                url: name.to_string(),
                source,
            })?;
    let _ = stream.set_nodelay(true);
    let http = |source| ForwardError::Http {
        url: name.to_string(),
        source,
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(http)?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(http)?;
    let (parts, incoming) = resp.into_parts();
    let body = match Limited::new(incoming, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            driver.abort();
            return Err(match e.downcast::<hyper::Error>() {
                Ok(source) => ForwardError::Http {
                    url: name.to_string(),
                    source: *source,
                },
                Err(_) => ForwardError::TooLarge {
                    url: name.to_string(),
                },
            });
        }
    };
    // One connection per request: dropping the sender lets it close.
    drop(sender);
    driver.abort();
    let mut out = Response::new(Full::new(body.clone()));
    *out.status_mut() = parts.status;
    *out.headers_mut() = end_to_end(&parts.headers);
    out.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("close, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("host", HeaderValue::from_static("kflip:8085"));
        h.insert("authorization", HeaderValue::from_static("Basic eDp5"));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
        );
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(out.contains_key("authorization") && out.contains_key("content-type"));
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_a_503_json_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = RegistryUrl {
            authority: format!("127.0.0.1:{port}"),
            base_path: String::new(),
        };
        let (parts, _) = Request::get("/subjects").body(()).unwrap().into_parts();
        let e = forward(&url, &parts, Bytes::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        let resp = e.response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error_code"], 50301);
        assert!(v["message"].as_str().unwrap().contains("unreachable"));
    }
}
