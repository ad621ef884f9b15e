//! The CLI's side of the admin API: where it is, and one request to it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::ops::Exit;

/// A running kflip's admin API.
pub(super) struct AdminApi {
    base: String,
    agent: ureq::Agent,
}

impl AdminApi {
    /// The admin API `admin` points at (`host:port` or a URL), or the one
    /// the config file names. The file is read loosely: a file kflip
    /// rejected (the old config still runs) still says where the admin API
    /// is. A listener on all interfaces is asked on loopback.
    pub(super) fn locate(path: &Path, admin: Option<&str>) -> Result<Self, Exit> {
        let base = match admin {
            Some(a) if a.starts_with("http://") || a.starts_with("https://") => {
                a.trim_end_matches('/').to_string()
            }
            Some(a) => format!("http://{a}"),
            None => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Exit::usage(format!("cannot read {}: {e}", path.display())))?;
                let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
                let listen = yaml["admin"]["listen"].as_str().map(str::to_string).ok_or_else(|| {
                    Exit::usage(format!(
                        "{} has no admin: section, so there is no admin API to ask; add `admin: {{ listen: \"127.0.0.1:9644\" }}` or pass --admin HOST:PORT",
                        path.display()
                    ))
                })?;
                let (host, port) = listen.rsplit_once(':').unwrap_or((&listen, "9644"));
                let host = match host {
                    "0.0.0.0" | "" => "127.0.0.1",
                    "[::]" | "::" => "[::1]",
                    h => h,
                };
                format!("http://{host}:{port}")
            }
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Ok(AdminApi { base, agent })
    }

    /// Where it is.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> Exit {
        Exit::unreachable(format!(
            "cannot reach kflip's admin API at {}: {e}",
            self.base
        ))
    }

    /// `GET path`: the JSON body of a 2xx answer; an `error` field or the
    /// status otherwise.
    pub(super) fn get(&self, path: &str) -> Result<Value, Exit> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .map_err(|e| self.unreachable(e))?;
        self.json(r)
    }

    /// `POST path` with no body.
    pub(super) fn post(&self, path: &str) -> Result<Value, Exit> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .send_empty()
            .map_err(|e| self.unreachable(e))?;
        self.json(r)
    }

    fn json(&self, mut r: ureq::http::Response<ureq::Body>) -> Result<Value, Exit> {
        let status = r.status();
        let body = r
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let value: Value = serde_json::from_str(&body).map_err(|e| {
            Exit::failed(format!(
                "the admin API at {} answered HTTP {status} with something that is not JSON ({e})",
                self.base
            ))
        })?;
        if status.is_success() {
            Ok(value)
        } else {
            Err(Exit::failed(
                value["error"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}")),
            ))
        }
    }
}

/// Query-string encoding of one value.
pub(super) fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
