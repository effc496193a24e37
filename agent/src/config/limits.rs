//! Bounds on a configuration's size. They keep validation (and the maps the
//! data plane sizes from the configuration) bounded whatever the input; a
//! file over any of them is refused before anything else is checked.

/// Largest configuration file read, in bytes (4 MiB).
pub const MAX_FILE_BYTES: usize = 4 << 20;
pub const MAX_LAN_INTERFACES: usize = 16;
pub const MAX_VPC_SUBNETS: usize = 4096;
pub const MAX_SECURITY_GROUPS: usize = 4096;
/// Rules in all security groups together.
pub const MAX_RULES: usize = 65536;
pub const MAX_PORTS: usize = 16384;
pub const MAX_PORT_ADDRESSES: usize = 16;
pub const MAX_PORT_GROUPS: usize = 16;
pub const MAX_IKE_POLICIES: usize = 256;
pub const MAX_IPSEC_POLICIES: usize = 256;
pub const MAX_CONNECTIONS: usize = 256;
/// Local subnets, and separately remote subnets, of one connection.
pub const MAX_CONNECTION_SUBNETS: usize = 64;
/// Names of objects, IKE identities.
pub const MAX_NAME_BYTES: usize = 255;
/// Linux IFNAMSIZ minus the terminating NUL.
pub const MAX_IFNAME_BYTES: usize = 15;
/// `sun_path` minus the terminating NUL.
pub const MAX_SOCKET_PATH_BYTES: usize = 107;
/// Problems of each severity reported; the rest are counted in one last line.
pub const MAX_PROBLEMS: usize = 1000;
