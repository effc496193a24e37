//! Present so the agent can depend on this crate and be rebuilt when it
//! changes; the program itself is the `vpcgw-xdp` binary.
#![no_std]
