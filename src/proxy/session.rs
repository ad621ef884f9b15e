//! What both loops of one upstream session share.

use std::sync::Arc;

use super::Shared;
use crate::config::{ClusterName, ProxyConfig};
use crate::protocol::filters::ConnCtx;

/// Per-session context shared by both loops.
pub(super) struct Ctx {
    /// What the filter chain sees of this session.
    pub(super) filters: ConnCtx,
    pub(super) shared: Arc<Shared>,
    /// The cluster this session forwards to.
    pub(super) cluster: ClusterName,
    /// The switch epoch it was opened under.
    pub(super) epoch: u64,
    /// Proxy settings when it opened.
    pub(super) cfg: ProxyConfig,
    /// Whether this is the connection's first session (the handshake
    /// timeout applies to its first request).
    pub(super) first: bool,
    /// The principal the client authenticated as (`proxy.sasl`).
    pub(super) principal: Option<String>,
}
