//! Shared between the XDP program (`vpcgw-ebpf`, built for `bpfel-unknown-none`)
//! and the agent: the map ABI, packet parsing, conntrack rules and the
//! security-group/VPN decision logic. `no_std`, no allocation, no panics:
//! the same code must pass the BPF verifier and run in host tests.
#![no_std]
// Everything here reads untrusted packets: no indexing that could panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod abi;
pub mod addr;
pub mod conntrack;
pub mod maps;
pub mod pipeline;
pub mod policy;
pub mod stats;
pub mod wire;

pub use addr::Addr;
