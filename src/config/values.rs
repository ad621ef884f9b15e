//! Small value parsers shared by the validation of every section: each
//! error names the key it came from. The leaf of the config module: it
//! depends on nothing but the error type, so `validate` (the file) and
//! `replication` (its section) both use it without depending on each other
//! both ways.

use std::time::Duration;

use super::ConfigError;

/// The error for `key` holding a value kflip cannot use.
pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Splits `host:port`, accepting `[v6]:port`.
pub(super) fn split_host_port(key: &str, addr: &str) -> Result<(String, u16), ConfigError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("{addr:?} is not host:port")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid(key, format!("{addr:?} has no host")));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, format!("{addr:?} has no valid port (0-65535)")))?;
    Ok((host.to_string(), port))
}

/// A duration like `500ms`, `10s` or `5m`; `default` when the key is absent.
pub(super) fn duration(
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text.trim()).map_err(|e| {
            invalid(
                key,
                format!("{text:?} is not a duration like 500ms, 10s or 5m: {e}"),
            )
        }),
    }
}
