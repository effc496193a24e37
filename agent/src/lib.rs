//! vpcgw agent library: configuration, policy compiler, data-plane loader.
pub mod compile;
pub mod config;
pub mod dataplane;
pub mod explain;
pub mod frame;
pub mod hostmaps;
pub mod ike;
pub mod run;
pub mod stats;
pub mod xsk;
