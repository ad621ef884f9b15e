//! The trust boundary for client bytes: framing, request headers and the
//! hand-written request walkers.
//!
//! Every byte a client sends is read here, and only here, with the
//! bounds-checked [`varint::Reader`]: any input, however corrupt, is an
//! error and never a panic; no allocation is sized by a count read from the
//! input, and the views returned borrow ranges of the frame or share one
//! copy of each name, so a request's memory and work stay a small multiple
//! of its size. The generated kafka-protocol decoder never sees client
//! bytes; it encodes the responses kflip builds ([`answers`]) and decodes
//! broker responses, which are trusted.
//!
//! - [`frame`], [`header`], [`varint`]: length-prefixed frames, request
//!   headers, and the primitive reader.
//! - [`walk`]: the field walker the request parsers share.
//! - [`group`], [`fetch_request`], [`produce`], [`producer_id`], [`txn`],
//!   [`epochs`], [`consumer_group`]: one parser per API family;
//! - [`records`]: the records inside a batch (a header looked for).
//! - [`answers`]: responses kflip answers with instead of forwarding.

pub mod answers;
pub mod batches;
pub mod clients;
pub mod consumer_group;
pub mod epochs;
pub mod fetch_request;
pub mod frame;
pub mod group;
pub mod header;
pub mod produce;
pub mod producer_id;
pub mod records;
pub mod sasl;
pub mod txn;
pub mod varint;
pub mod walk;

pub use answers::*;
pub use fetch_request::*;
pub use group::*;
pub use produce::*;
pub use walk::ParseError;

#[cfg(test)]
mod tests;
