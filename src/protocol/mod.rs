//! The Kafka wire protocol as the proxy needs it: framing, request headers,
//! the API policy and versions, and the response rewrite filters.

pub mod api_versions;
pub mod consumer_group;
pub mod epochs;
pub mod failover;
pub mod fetch;
pub mod frame;
pub mod header;
pub mod rewrite;
pub mod txn;
pub mod varint;
pub mod versions;

#[cfg(test)]
mod rewrite_tests;
