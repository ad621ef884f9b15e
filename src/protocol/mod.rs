//! What the proxy does with requests and responses: the API policy and
//! versions it advertises, ApiVersions answered locally, the rewrite of
//! responses that carry broker addresses or node ids ([`rewrite`], with
//! Fetch responses streamed by [`fetch`]), and the filter chain
//! ([`filters`]) that applies kflip's failover behaviour per API key.
//! Client bytes are read only through [`crate::codec`].

pub mod api_versions;
pub mod fetch;
pub mod filters;
pub mod rewrite;
pub mod versions;

#[cfg(test)]
mod rewrite_tests;
