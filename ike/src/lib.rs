//! IKEv2 with pre-shared keys (RFC 7296), sans-IO in the style of
//! quinn-proto: bytes and time in, bytes and events out. The agent's tokio
//! driver owns the sockets and timers; tests drive the engine directly.
//!
//! - [`alg`]: the algorithms and their IANA numbers;
//! - `wire`: typed, length-checked views over IKE messages, and encoding;
//! - `crypto`: prf, prf+, key derivation, Diffie-Hellman, SK payload
//!   protection, PSK authentication (aws-lc-rs; nothing home-made);
//! - `engine`: the IKE SA state machine.
// Everything here reads untrusted datagrams: no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod alg;
pub mod crypto;
pub mod engine;
pub mod wire;
