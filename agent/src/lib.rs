//! vpcgw agent library: configuration, policy compiler, data-plane loader.
pub mod config;
pub mod dataplane;
pub mod compile;
pub mod frame;
pub mod hostmaps;
pub mod xsk;
pub mod explain;
pub mod run;
pub mod stats;
