//! The XDP program as built by build.rs, and (to come) its loader.

/// The program's ELF object (see build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vpcgw-xdp"));
