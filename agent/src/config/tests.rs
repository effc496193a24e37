//! Configuration tests: a good base file, one test per kind of mistake (each
//! asserting its message), the examples, round trips and garbage input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vpcgw_common::conntrack::DEFAULT_TIMEOUTS;

use super::*;

/// A valid configuration: one VPC, one group, one port, one connection.
const BASE: &str = r#"
[gateway]
name = "gw-test"
public_ip = "198.51.100.1"
wan_interface = "wan0"
lan_interfaces = ["lan0", "lan1"]

[vpc]
name = "vpc-test"

[[vpc.subnets]]
name = "subnet-a"
cidr = "192.168.1.0/24"

[[vpc.subnets]]
name = "subnet-b"
cidr = "192.168.2.0/24"

[[security_groups]]
name = "sg-web"

[[security_groups.rules]]
direction = "ingress"
protocol = "tcp"
port_range_min = 22
remote_ip_prefix = "192.168.3.0/24"

[[security_groups.rules]]
direction = "egress"

[[ports]]
name = "ecs-a1"
addresses = ["192.168.1.10"]
mac = "02:00:00:00:01:0a"
security_groups = ["sg-web"]

[[ike_policies]]
name = "ike-1"
encryption = "aes-128-gcm-16"
dh_group = 14

[[ipsec_policies]]
name = "ipsec-1"
encryption = "aes-128-gcm-16"

[[connections]]
name = "dc1"
peer_address = "198.51.100.2"
local_subnets = ["192.168.1.0/24"]
remote_subnets = ["192.168.3.0/24"]
ike_policy = "ike-1"
ipsec_policy = "ipsec-1"
psk_file = "psk/dc1.psk"
"#;

/// A second connection to append to `BASE`.
const DC2: &str = r#"
[[connections]]
name = "dc2"
peer_address = "198.51.100.3"
local_subnets = ["192.168.2.0/24"]
remote_subnets = ["192.168.4.0/24"]
ike_policy = "ike-1"
ipsec_policy = "ipsec-1"
psk_file = "psk/dc1.psk"
"#;

const TEST_KEY: &str = "not-a-real-key-0123456789abcdef";

/// `BASE` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    edit_in(BASE, from, to)
}

fn edit_in(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} is not in the text");
    text.replacen(from, to, 1)
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// The rule lines of sg-web's first rule replaced by `rule`.
fn rule(rule: &str) -> String {
    edit(
        "direction = \"ingress\"\nprotocol = \"tcp\"\nport_range_min = 22\nremote_ip_prefix = \"192.168.3.0/24\"\n",
        rule,
    )
}

/// A temporary directory holding `psk/dc1.psk` (mode 0600).
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = Env { dir };
        fs::create_dir(env.path("psk")).unwrap();
        env.psk("psk/dc1.psk", TEST_KEY.as_bytes(), 0o600);
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn psk(&self, rel: &str, contents: &[u8], mode: u32) {
        let p = self.path(rel);
        fs::write(&p, contents).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn config_path(&self) -> PathBuf {
        self.path("vpcgw.toml")
    }

    fn load(&self, text: &str) -> Result<Checked, ConfigError> {
        fs::write(self.config_path(), text).unwrap();
        load(&self.config_path())
    }

    fn ok(&self, text: &str) -> Checked {
        match self.load(text) {
            Ok(c) => c,
            Err(ConfigError::Invalid(ps)) => panic!("refused:\n{}", lines(&ps)),
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn problems(&self, text: &str) -> Vec<Problem> {
        match self.load(text) {
            Ok(_) => panic!("accepted a bad configuration"),
            Err(ConfigError::Invalid(ps)) => ps,
            Err(e) => panic!("expected problems, got: {e}"),
        }
    }
}

fn lines(ps: &[Problem]) -> String {
    ps.iter().map(|p| format!("  {p}\n")).collect()
}

/// `text` is refused with an error whose message contains `needle`.
fn expect_error(text: &str, needle: &str) {
    expect_error_in(&Env::new(), text, needle);
}

fn expect_error_in(env: &Env, text: &str, needle: &str) {
    let ps = env.problems(text);
    assert!(
        ps.iter()
            .any(|p| p.severity == Severity::Error && p.to_string().contains(needle)),
        "no error containing {needle:?}; got:\n{}",
        lines(&ps)
    );
}

fn expect_syntax(text: &str, needle: &str) {
    match Env::new().load(text) {
        Err(ConfigError::Syntax(m)) => {
            assert!(m.contains(needle), "{m:?} does not contain {needle:?}");
            assert!(!m.contains('\n'), "{m:?} is not one line");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

macro_rules! bad {
    ($($name:ident: $text:expr => $needle:expr;)+) => {
        $(
            #[test]
            fn $name() {
                expect_error(&$text, $needle);
            }
        )+
    };
}

// ---------- subnets: overlaps, containment, host bits, parsing ----------

bad! {
    local_and_remote_overlap:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["192.168.1.128/25"]"#)
        => "connection 'dc1': remote_subnets[0]: 192.168.1.128/25 overlaps local_subnets[0] (192.168.1.0/24); local and remote subnets must be disjoint";
    remote_overlaps_vpc:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["192.168.2.0/25"]"#)
        => "remote_subnets[0]: 192.168.2.0/25 overlaps VPC subnet 'subnet-b' (192.168.2.0/24); remote subnets must lie outside the VPC";
    remote_overlaps_other_connections_remote:
        with(&DC2.replace(r#"remote_subnets = ["192.168.4.0/24"]"#, r#"remote_subnets = ["192.168.3.128/25"]"#))
        => "connection 'dc2': remote_subnets[0]: 192.168.3.128/25 overlaps connection 'dc1' remote_subnets[0] (192.168.3.0/24); two connections cannot both lead to the same addresses";
    local_subnets_overlap_each_other:
        edit(r#"local_subnets = ["192.168.1.0/24"]"#, r#"local_subnets = ["192.168.1.0/24", "192.168.1.64/26"]"#)
        => "connection 'dc1': local_subnets[1]: 192.168.1.64/26 overlaps local_subnets[0] (192.168.1.0/24)";
    remote_subnets_overlap_each_other:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["192.168.3.0/24", "192.168.3.0/24"]"#)
        => "remote_subnets[1]: 192.168.3.0/24 overlaps remote_subnets[0] (192.168.3.0/24)";
    vpc_subnets_overlap:
        edit(r#"cidr = "192.168.2.0/24""#, r#"cidr = "192.168.1.128/25""#)
        => "vpc subnet 'subnet-b': cidr: 192.168.1.128/25 overlaps subnet 'subnet-a' (192.168.1.0/24); VPC subnets must be disjoint";
    local_subnet_outside_vpc:
        edit(r#"local_subnets = ["192.168.1.0/24"]"#, r#"local_subnets = ["10.0.0.0/24"]"#)
        => "connection 'dc1': local_subnets[0]: 10.0.0.0/24 is outside the VPC: no VPC subnet contains it";
    local_subnet_spanning_vpc_subnets:
        edit(r#"local_subnets = ["192.168.1.0/24"]"#, r#"local_subnets = ["192.168.0.0/22"]"#)
        => "192.168.0.0/22 is outside the VPC: no single VPC subnet contains it (it overlaps VPC subnet 'subnet-a' (192.168.1.0/24) and VPC subnet 'subnet-b' (192.168.2.0/24))";
    host_bits_in_local_subnet:
        edit(r#"local_subnets = ["192.168.1.0/24"]"#, r#"local_subnets = ["192.168.1.5/24"]"#)
        => "connection 'dc1': local_subnets[0]: 192.168.1.5/24 has host bits set; use 192.168.1.0/24";
    host_bits_in_remote_subnet:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["192.168.3.9/16"]"#)
        => "connection 'dc1': remote_subnets[0]: 192.168.3.9/16 has host bits set; use 192.168.0.0/16";
    host_bits_in_vpc_subnet:
        edit(r#"cidr = "192.168.1.0/24""#, r#"cidr = "192.168.1.1/24""#)
        => "vpc subnet 'subnet-a': cidr: 192.168.1.1/24 has host bits set; use 192.168.1.0/24";
    host_bits_in_remote_ip_prefix:
        edit(r#"remote_ip_prefix = "192.168.3.0/24""#, r#"remote_ip_prefix = "192.168.3.7/24""#)
        => "security group 'sg-web' rule 1: remote_ip_prefix: 192.168.3.7/24 has host bits set; use 192.168.3.0/24";
    prefix_length_too_long:
        edit(r#"cidr = "192.168.1.0/24""#, r#"cidr = "192.168.1.0/33""#)
        => "vpc subnet 'subnet-a': cidr: '192.168.1.0/33': prefix length /33 is too long for IPv4 (at most /32)";
    cidr_not_an_address:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["dc1-lan/24"]"#)
        => "remote_subnets[0]: 'dc1-lan/24' is not a CIDR prefix: 'dc1-lan' is not an IPv4 or IPv6 address";
    cidr_without_length:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["192.168.3.7"]"#)
        => "'192.168.3.7' has no prefix length; write 192.168.3.7/32 for a single address";
    public_ip_unparsable:
        edit(r#"public_ip = "198.51.100.1""#, r#"public_ip = "198.51.100""#)
        => "gateway: public_ip: '198.51.100' is not an IPv4 or IPv6 address";
    public_ip_not_unicast:
        edit(r#"public_ip = "198.51.100.1""#, r#"public_ip = "0.0.0.0""#)
        => "gateway: public_ip: 0.0.0.0 is not a unicast address";
    mixed_versions_local_and_remote:
        edit(r#"remote_subnets = ["192.168.3.0/24"]"#, r#"remote_subnets = ["2001:db8:3::/64"]"#)
        => "connection 'dc1': remote_subnets[0]: 2001:db8:3::/64 is IPv6 but local_subnets[0] (192.168.1.0/24) is IPv4; a connection carries one IP version";
    mixed_versions_within_local:
        edit_in(
            &edit(r#"local_subnets = ["192.168.1.0/24"]"#, r#"local_subnets = ["192.168.1.0/24", "fd00:1::/64"]"#),
            "[[security_groups]]",
            "[[vpc.subnets]]\nname = \"subnet-v6\"\ncidr = \"fd00:1::/64\"\n\n[[security_groups]]",
        )
        => "connection 'dc1': local_subnets[1]: fd00:1::/64 is IPv6 but local_subnets[0] (192.168.1.0/24) is IPv4";
}

// ---------- references and duplicates ----------

bad! {
    unknown_ike_policy:
        edit(r#"ike_policy = "ike-1""#, r#"ike_policy = "ike-9""#)
        => "connection 'dc1': ike_policy: no IKE policy is named 'ike-9'";
    unknown_ipsec_policy:
        edit(r#"ipsec_policy = "ipsec-1""#, r#"ipsec_policy = "ipsec-9""#)
        => "connection 'dc1': ipsec_policy: no IPsec policy is named 'ipsec-9'";
    unknown_port_group:
        edit(r#"security_groups = ["sg-web"]"#, r#"security_groups = ["sg-nope"]"#)
        => "port 'ecs-a1': security_groups[0]: no security group is named 'sg-nope'";
    unknown_remote_group:
        edit(r#"remote_ip_prefix = "192.168.3.0/24""#, r#"remote_group = "sg-gone""#)
        => "security group 'sg-web' rule 1: remote_group: no security group is named 'sg-gone'";
    port_group_twice:
        edit(r#"security_groups = ["sg-web"]"#, r#"security_groups = ["sg-web", "sg-web"]"#)
        => "port 'ecs-a1': security_groups[1]: 'sg-web' is listed twice";
    duplicate_subnet_names:
        edit(r#"name = "subnet-b""#, r#"name = "subnet-a""#)
        => "vpc subnet 'subnet-a': name: vpc.subnets[0] and vpc.subnets[1] are both named 'subnet-a'; names must be unique";
    duplicate_group_names:
        with("[[security_groups]]\nname = \"sg-web\"\n")
        => "security_groups[0] and security_groups[1] are both named 'sg-web'";
    duplicate_port_names:
        with("[[ports]]\nname = \"ecs-a1\"\naddresses = [\"192.168.1.11\"]\nsecurity_groups = [\"sg-web\"]\n")
        => "port 'ecs-a1': name: ports[0] and ports[1] are both named 'ecs-a1'";
    duplicate_ike_policy_names:
        with("[[ike_policies]]\nname = \"ike-1\"\nencryption = \"aes-256-gcm-16\"\ndh_group = 19\n")
        => "ike_policies[0] and ike_policies[1] are both named 'ike-1'";
    duplicate_ipsec_policy_names:
        with("[[ipsec_policies]]\nname = \"ipsec-1\"\nencryption = \"aes-256-gcm-16\"\n")
        => "ipsec_policies[0] and ipsec_policies[1] are both named 'ipsec-1'";
    duplicate_connection_names:
        with(&DC2.replace("name = \"dc2\"", "name = \"dc1\""))
        => "connection 'dc1': name: connections[0] and connections[1] are both named 'dc1'";
    duplicate_port_address:
        with("[[ports]]\nname = \"ecs-a2\"\naddresses = [\"192.168.1.10\"]\nsecurity_groups = [\"sg-web\"]\n")
        => "port 'ecs-a2': addresses[0]: 192.168.1.10 is also an address of port 'ecs-a1'";
    duplicate_port_mac:
        with("[[ports]]\nname = \"ecs-a2\"\naddresses = [\"192.168.1.11\"]\nmac = \"02:00:00:00:01:0A\"\nsecurity_groups = [\"sg-web\"]\n")
        => "port 'ecs-a2': mac: 02:00:00:00:01:0A is also the MAC of port 'ecs-a1'";
    duplicate_peer_address:
        with(&DC2.replace("198.51.100.3", "198.51.100.2"))
        => "connection 'dc2': peer_address: 198.51.100.2 is also the peer of connection 'dc1'";
}

// ---------- ports ----------

bad! {
    port_address_outside_vpc:
        edit(r#"addresses = ["192.168.1.10"]"#, r#"addresses = ["10.9.9.9"]"#)
        => "port 'ecs-a1': addresses[0]: 10.9.9.9 is not inside any VPC subnet (VPC subnets: 192.168.1.0/24, 192.168.2.0/24)";
    port_address_unparsable:
        edit(r#"addresses = ["192.168.1.10"]"#, r#"addresses = ["192.168.1.300"]"#)
        => "port 'ecs-a1': addresses[0]: '192.168.1.300' is not an IPv4 or IPv6 address";
    port_without_groups:
        edit(r#"security_groups = ["sg-web"]"#, r#"security_groups = []"#)
        => "port 'ecs-a1': security_groups: list at least one security group";
    port_without_addresses:
        edit(r#"addresses = ["192.168.1.10"]"#, r#"addresses = []"#)
        => "port 'ecs-a1': addresses: list at least one address";
    port_bad_mac:
        edit(r#"mac = "02:00:00:00:01:0a""#, r#"mac = "02:00:00:00:01""#)
        => "port 'ecs-a1': mac: '02:00:00:00:01' is not a MAC address";
    port_multicast_mac:
        edit(r#"mac = "02:00:00:00:01:0a""#, r#"mac = "01:00:5e:00:00:01""#)
        => "mac: 01:00:5e:00:00:01 is not a unicast MAC address";
}

// ---------- ranges ----------

bad! {
    ike_lifetime_too_short:
        edit("dh_group = 14\n", "dh_group = 14\nlifetime = 59\n")
        => "ike policy 'ike-1': lifetime: 59 is out of range (60 to 604800 seconds)";
    ipsec_lifetime_too_long:
        edit("name = \"ipsec-1\"\n", "name = \"ipsec-1\"\nlifetime = 604801\n")
        => "ipsec policy 'ipsec-1': lifetime: 604801 is out of range (30 to 604800 seconds)";
    mtu_too_small_for_ipv4:
        edit("psk_file = \"psk/dc1.psk\"\n", "psk_file = \"psk/dc1.psk\"\nmtu = 67\n")
        => "connection 'dc1': mtu: 67 is out of range for an IPv4 connection (68 to 9000 bytes)";
    mtu_too_big:
        edit("psk_file = \"psk/dc1.psk\"\n", "psk_file = \"psk/dc1.psk\"\nmtu = 9001\n")
        => "mtu: 9001 is out of range for an IPv4 connection (68 to 9000 bytes)";
    mtu_too_small_for_ipv6:
        edit_in(
            &edit_in(
                &edit(r#"local_subnets = ["192.168.1.0/24"]"#, r#"local_subnets = ["fd00:1::/64"]"#),
                r#"remote_subnets = ["192.168.3.0/24"]"#,
                "remote_subnets = [\"fd00:3::/64\"]\nmtu = 1279",
            ),
            "[[security_groups]]",
            "[[vpc.subnets]]\nname = \"subnet-v6\"\ncidr = \"fd00:1::/64\"\n\n[[security_groups]]",
        )
        => "connection 'dc1': mtu: 1279 is out of range for an IPv6 connection (1280 to 9000 bytes)";
    tcp_port_zero:
        rule("direction = \"ingress\"\nprotocol = \"tcp\"\nport_range_min = 0\n")
        => "security group 'sg-web' rule 1: port_range_min: 0 is not a valid port (1 to 65535)";
    tcp_port_too_big:
        rule("direction = \"ingress\"\nprotocol = \"udp\"\nport_range_min = 1000\nport_range_max = 70000\n")
        => "port_range_max: 70000 is not a valid port (1 to 65535)";
    port_max_below_min:
        rule("direction = \"ingress\"\nprotocol = \"tcp\"\nport_range_min = 80\nport_range_max = 22\n")
        => "security group 'sg-web' rule 1: port_range_max: 22 is below port_range_min (80)";
    icmp_type_too_big:
        rule("direction = \"ingress\"\nprotocol = \"icmp\"\nport_range_min = 256\n")
        => "port_range_min: 256 is not a valid ICMP type (0 to 255)";
    icmp_code_too_big:
        rule("direction = \"ingress\"\nprotocol = \"icmp\"\nport_range_min = 3\nport_range_max = 300\n")
        => "port_range_max: 300 is not a valid ICMP code (0 to 255)";
    conntrack_max_entries_too_small:
        with("[conntrack]\nmax_entries = 100\n")
        => "conntrack: max_entries: 100 is out of range (1024 to 16777216 entries)";
    conntrack_timeout_zero:
        with("[conntrack]\ntcp_established = 0\n")
        => "conntrack: tcp_established: 0 is out of range (1 to 2592000 seconds)";
    conntrack_sweep_too_slow:
        with("[conntrack]\nsweep_interval = 3601\n")
        => "conntrack: sweep_interval: 3601 is out of range (1 to 3600 seconds)";
    dpd_interval_zero:
        with("[connections.dpd]\ninterval = 0\n")
        => "connection 'dc1': dpd.interval: 0 is out of range (1 to 3600 seconds)";
    dpd_timeout_too_long:
        with("[connections.dpd]\ntimeout = 86401\n")
        => "dpd.timeout: 86401 is out of range (2 to 86400 seconds)";
    dpd_timeout_not_above_interval:
        with("[connections.dpd]\ninterval = 30\ntimeout = 30\n")
        => "connection 'dc1': dpd.timeout: 30 must be greater than dpd.interval (30)";
    dpd_unknown_action:
        with("[connections.dpd]\naction = \"sometimes\"\n")
        => "dpd.action: 'sometimes' is not one of hold, clear, restart or disabled";
}

// ---------- interfaces ----------

bad! {
    lan_listed_twice:
        edit(r#"lan_interfaces = ["lan0", "lan1"]"#, r#"lan_interfaces = ["lan0", "lan0"]"#)
        => "gateway: lan_interfaces[1]: 'lan0' is listed twice";
    lan_is_wan:
        edit(r#"lan_interfaces = ["lan0", "lan1"]"#, r#"lan_interfaces = ["wan0", "lan1"]"#)
        => "gateway: lan_interfaces[0]: 'wan0' is also the wan_interface";
    empty_interface_name:
        edit(r#"wan_interface = "wan0""#, r#"wan_interface = """#)
        => "gateway: wan_interface: an interface name must not be empty";
    interface_name_too_long:
        edit(r#"lan_interfaces = ["lan0", "lan1"]"#, r#"lan_interfaces = ["lan0", "abcdefghijklmnop"]"#)
        => "lan_interfaces[1]: 'abcdefghijklmnop' is 16 bytes long; Linux interface names have at most 15 (IFNAMSIZ)";
    interface_name_with_slash:
        edit(r#"wan_interface = "wan0""#, r#"wan_interface = "wan/0""#)
        => "'wan/0' is not a valid interface name";
    no_lan_interfaces:
        edit(r#"lan_interfaces = ["lan0", "lan1"]"#, r#"lan_interfaces = []"#)
        => "gateway: lan_interfaces: list at least one LAN interface";
}

// ---------- algorithms ----------

bad! {
    ike_3des_refused:
        edit("encryption = \"aes-128-gcm-16\"\ndh_group", "encryption = \"3des\"\nintegrity = \"hmac-sha2-256\"\ndh_group")
        => "ike policy 'ike-1': encryption: 3DES is refused: its 64-bit block";
    ipsec_des_refused:
        edit("name = \"ipsec-1\"\nencryption = \"aes-128-gcm-16\"", "name = \"ipsec-1\"\nencryption = \"des\"\nintegrity = \"hmac-sha2-256\"")
        => "ipsec policy 'ipsec-1': encryption: DES is refused: its 56-bit key";
    integrity_md5_refused:
        edit("encryption = \"aes-128-gcm-16\"\ndh_group", "encryption = \"aes-128\"\nintegrity = \"md5\"\ndh_group")
        => "ike policy 'ike-1': integrity: integrity HMAC-MD5 is refused: MD5 is broken";
    integrity_sha1_refused:
        edit("name = \"ipsec-1\"\nencryption = \"aes-128-gcm-16\"", "name = \"ipsec-1\"\nencryption = \"aes-256\"\nintegrity = \"hmac-sha1\"")
        => "ipsec policy 'ipsec-1': integrity: integrity HMAC-SHA1 is refused: SHA-1 is broken";
    prf_sha1_refused:
        edit("dh_group = 14", "dh_group = 14\nprf = \"sha1\"")
        => "ike policy 'ike-1': prf: prf HMAC-SHA1 is refused";
    prf_md5_refused:
        edit("dh_group = 14", "dh_group = 14\nprf = \"hmac-md5\"")
        => "prf: prf HMAC-MD5 is refused";
    dh_group_2_refused:
        edit("dh_group = 14", "dh_group = 2")
        => "ike policy 'ike-1': dh_group: DH group 2 (MODP 1024-bit) is refused: MODP groups under 2048 bits are within reach of precomputation attacks (Logjam)";
    dh_group_modp1536_refused:
        edit("dh_group = 14", "dh_group = \"modp1536\"")
        => "DH group 5 (MODP 1536-bit) is refused";
    dh_group_unsupported:
        edit("dh_group = 14", "dh_group = 15")
        => "dh_group: DH group 15 is not supported; use 14 (modp2048), 19 (ecp256), 20 (ecp384) or 31 (curve25519)";
    dh_group_missing:
        edit("dh_group = 14\n", "")
        => "ike policy 'ike-1': dh_group: is required";
    pfs_group_1_refused:
        edit("name = \"ipsec-1\"\n", "name = \"ipsec-1\"\npfs = 1\n")
        => "ipsec policy 'ipsec-1': pfs: DH group 1 (MODP 768-bit) is refused";
    integrity_with_gcm:
        edit("name = \"ipsec-1\"\n", "name = \"ipsec-1\"\nintegrity = \"hmac-sha2-256\"\n")
        => "ipsec policy 'ipsec-1': integrity: must be left out with aes-128-gcm-16: GCM is an AEAD cipher";
    cbc_without_integrity:
        edit("encryption = \"aes-128-gcm-16\"\ndh_group", "encryption = \"aes-256\"\ndh_group")
        => "ike policy 'ike-1': integrity: is required with aes-256";
    encryption_unknown:
        edit("encryption = \"aes-128-gcm-16\"\ndh_group", "encryption = \"aes-192\"\ndh_group")
        => "encryption: unsupported encryption 'aes-192'; use aes-128, aes-256, aes-128-gcm-16 or aes-256-gcm-16";
    gcm_short_icv:
        edit("encryption = \"aes-128-gcm-16\"\ndh_group", "encryption = \"aes-128-gcm-8\"\ndh_group")
        => "'aes-128-gcm-8' is not supported: only GCM with a 16-octet ICV is";
    ikev1_refused:
        edit("dh_group = 14", "dh_group = 14\nike_version = \"v1\"")
        => "ike policy 'ike-1': ike_version: IKEv1 is not supported: vpcgw speaks IKEv2 only (RFC 7296), and RFC 9395 deprecates IKEv1";
    ah_refused:
        edit("name = \"ipsec-1\"\n", "name = \"ipsec-1\"\ntransform_protocol = \"ah\"\n")
        => "ipsec policy 'ipsec-1': transform_protocol: AH is not supported";
    ah_esp_refused:
        edit("name = \"ipsec-1\"\n", "name = \"ipsec-1\"\ntransform_protocol = \"ah-esp\"\n")
        => "transform_protocol: AH is not supported: it authenticates the outer IP header, so it cannot cross NAT";
    transport_mode_refused:
        edit("name = \"ipsec-1\"\n", "name = \"ipsec-1\"\nencapsulation_mode = \"transport\"\n")
        => "ipsec policy 'ipsec-1': encapsulation_mode: transport mode is not supported";
}

// ---------- rules ----------

bad! {
    protocol_255_reserved:
        rule("direction = \"ingress\"\nprotocol = 255\n")
        => "security group 'sg-web' rule 1: protocol: protocol number 255 is reserved";
    protocol_out_of_range:
        rule("direction = \"ingress\"\nprotocol = 300\n")
        => "protocol: 300 is not an IP protocol number (0 to 254)";
    protocol_unknown_name:
        rule("direction = \"ingress\"\nprotocol = \"sctp\"\n")
        => "protocol: 'sctp' is not one of any, tcp, udp, icmp, icmpv6 or an IP protocol number 0 to 254";
    icmp_with_ipv6:
        rule("direction = \"ingress\"\nethertype = \"IPv6\"\nprotocol = \"icmp\"\n")
        => "security group 'sg-web' rule 1: protocol: icmp is IPv4's ICMP; with ethertype IPv6 use protocol icmpv6";
    icmpv6_with_ipv4:
        rule("direction = \"ingress\"\nprotocol = \"icmpv6\"\n")
        => "protocol: icmpv6 belongs to IPv6; with ethertype IPv4 use protocol icmp";
    protocol_58_is_icmpv6:
        rule("direction = \"ingress\"\nprotocol = 58\n")
        => "protocol: icmpv6 belongs to IPv6";
    ports_with_protocol_any:
        rule("direction = \"ingress\"\nport_range_min = 22\n")
        => "security group 'sg-web' rule 1: port_range_min: port ranges only apply to protocols tcp, udp, icmp and icmpv6, not any";
    ports_with_protocol_number:
        rule("direction = \"ingress\"\nprotocol = 47\nport_range_max = 5\n")
        => "port_range_max: port ranges only apply to protocols tcp, udp, icmp and icmpv6, not 47";
    port_max_alone:
        rule("direction = \"ingress\"\nprotocol = \"tcp\"\nport_range_max = 22\n")
        => "port_range_max: port_range_max needs port_range_min";
    icmp_code_alone:
        rule("direction = \"ingress\"\nprotocol = \"icmp\"\nport_range_max = 0\n")
        => "port_range_max: port_range_max (the ICMP code) needs port_range_min (the ICMP type)";
    remote_prefix_and_group:
        rule("direction = \"ingress\"\nremote_ip_prefix = \"192.168.3.0/24\"\nremote_group = \"sg-web\"\n")
        => "remote_group: give at most one of remote_ip_prefix and remote_group";
    remote_prefix_wrong_family:
        rule("direction = \"ingress\"\nremote_ip_prefix = \"2001:db8::/32\"\n")
        => "remote_ip_prefix: 2001:db8::/32 is IPv6 but the rule's ethertype is IPv4";
    direction_missing:
        rule("protocol = \"tcp\"\n")
        => "security group 'sg-web' rule 1: direction: is required";
    direction_unknown:
        rule("direction = \"inbound\"\n")
        => "direction: 'inbound' is not one of ingress or egress";
    ethertype_unknown:
        rule("direction = \"ingress\"\nethertype = \"IPX\"\n")
        => "ethertype: 'IPX' is not one of IPv4 or IPv6";
}

// ---------- connections, gateway, structure ----------

bad! {
    peer_is_own_public_ip:
        edit(r#"peer_address = "198.51.100.2""#, r#"peer_address = "198.51.100.1""#)
        => "connection 'dc1': peer_address: 198.51.100.1 is the gateway's own public_ip";
    peer_family_differs_from_public_ip:
        edit(r#"peer_address = "198.51.100.2""#, r#"peer_address = "2001:db8::2""#)
        => "peer_address: 2001:db8::2 is IPv6 but the gateway's public_ip 198.51.100.1 is IPv4";
    psk_file_missing_key:
        edit("psk_file = \"psk/dc1.psk\"\n", "")
        => "connection 'dc1': psk_file: is required";
    empty_peer_id:
        edit("psk_file = \"psk/dc1.psk\"\n", "psk_file = \"psk/dc1.psk\"\npeer_id = \"\"\n")
        => "peer_id: '' is not a valid IKE identity";
    initiator_unknown:
        edit("psk_file = \"psk/dc1.psk\"\n", "psk_file = \"psk/dc1.psk\"\ninitiator = \"always\"\n")
        => "initiator: 'always' is not one of bi-directional or response-only";
    xdp_mode_unknown:
        edit(r#"wan_interface = "wan0""#, "wan_interface = \"wan0\"\nxdp_mode = \"offload\"")
        => "gateway: xdp_mode: 'offload' is not one of auto, native or generic";
    wan_default_unknown:
        edit(r#"wan_interface = "wan0""#, "wan_interface = \"wan0\"\nwan_default = \"reject\"")
        => "gateway: wan_default: 'reject' is not one of pass or drop";
    control_socket_too_long:
        edit(r#"wan_interface = "wan0""#, &format!("wan_interface = \"wan0\"\ncontrol_socket = \"/run/{}.sock\"", "x".repeat(120)))
        => "a Unix socket path has at most 107";
    gateway_missing:
        edit("[gateway]", "[other_gateway]").split("[vpc]").nth(1).map(|rest| format!("[vpc]{rest}")).unwrap()
        => "gateway: the [gateway] table is required";
    vpc_without_subnets:
        edit("[[vpc.subnets]]\nname = \"subnet-a\"\ncidr = \"192.168.1.0/24\"\n\n[[vpc.subnets]]\nname = \"subnet-b\"\ncidr = \"192.168.2.0/24\"\n", "")
        => "vpc: subnets: list at least one subnet";
    too_many_lan_interfaces:
        edit(
            r#"lan_interfaces = ["lan0", "lan1"]"#,
            &format!("lan_interfaces = [{}]", (0..17).map(|i| format!("\"lan{i}\"")).collect::<Vec<_>>().join(", ")),
        )
        => "gateway: lan_interfaces: 17 interfaces; at most 16 are supported";
    too_many_local_subnets:
        edit(
            r#"local_subnets = ["192.168.1.0/24"]"#,
            &format!("local_subnets = [{}]", (0..65).map(|i| format!("\"192.168.1.{i}/32\"")).collect::<Vec<_>>().join(", ")),
        )
        => "connection 'dc1': local_subnets: 65 subnets; at most 64 are supported";
}

// ---------- PSK files ----------

#[test]
fn psk_missing() {
    let env = Env::new();
    let text = edit("psk/dc1.psk", "psk/nope.psk");
    let want = format!(
        "psk_file: {} does not exist",
        env.path("psk/nope.psk").display()
    );
    expect_error_in(&env, &text, &want);
}

#[test]
fn psk_empty() {
    let env = Env::new();
    env.psk("psk/dc1.psk", b"", 0o600);
    expect_error_in(&env, BASE, "dc1.psk is empty");
    env.psk("psk/dc1.psk", b"\n", 0o600);
    expect_error_in(
        &env,
        BASE,
        &format!("{} is empty", env.path("psk/dc1.psk").display()),
    );
}

#[test]
fn psk_too_short() {
    let env = Env::new();
    env.psk("psk/dc1.psk", b"1234567\n", 0o600);
    expect_error_in(
        &env,
        BASE,
        "the key is only 7 bytes; at least 8 are required",
    );
    env.psk("psk/dc1.psk", b"1234567\r\n", 0o600);
    expect_error_in(&env, BASE, "the key is only 7 bytes");
    // Exactly 8 bytes after one stripped "\r\n": accepted, and read_psk agrees.
    env.psk("psk/dc1.psk", b"12345678\r\n", 0o600);
    env.ok(BASE);
    assert_eq!(read_psk(&env.path("psk/dc1.psk")).unwrap(), b"12345678");
    // Only one newline is stripped.
    env.psk("psk/dc1.psk", b"1234567\n\n", 0o600);
    assert_eq!(read_psk(&env.path("psk/dc1.psk")).unwrap(), b"1234567\n");
}

#[test]
fn psk_readable_by_others() {
    let env = Env::new();
    env.psk("psk/dc1.psk", TEST_KEY.as_bytes(), 0o644);
    let p = env.path("psk/dc1.psk");
    let want = format!(
        "connection 'dc1': psk_file: {} is readable by group or others (mode 0644); run chmod 600 {}",
        p.display(),
        p.display()
    );
    expect_error_in(&env, BASE, &want);
    env.psk("psk/dc1.psk", TEST_KEY.as_bytes(), 0o640);
    expect_error_in(&env, BASE, "(mode 0640); run chmod 600");
    // Owner-only modes pass, however strict.
    env.psk("psk/dc1.psk", TEST_KEY.as_bytes(), 0o400);
    env.ok(BASE);
}

#[test]
fn psk_not_a_regular_file() {
    let env = Env::new();
    let text = edit("psk_file = \"psk/dc1.psk\"", "psk_file = \"psk\"");
    expect_error_in(&env, &text, "is not a regular file (it is a directory)");
}

#[test]
fn psk_contents_never_in_messages() {
    let env = Env::new();
    let secret = "s3cr3t-do-not-print";
    env.psk("psk/dc1.psk", secret.as_bytes(), 0o644);
    let ps = env.problems(BASE);
    assert!(ps.iter().all(|p| !p.to_string().contains(secret)));
    env.psk("psk/dc1.psk", secret.as_bytes(), 0o600);
    let c = env.ok(BASE);
    assert!(!summary(&c.config, &c.warnings).contains(secret));
    assert!(!format!("{:?}", c.config).contains(secret));
    assert!(!to_toml(&c.config).unwrap().contains(secret));
}

// ---------- syntax and size ----------

#[test]
fn unknown_key_is_named_with_line_and_column() {
    expect_syntax(
        &edit(
            "name = \"gw-test\"\n",
            "name = \"gw-test\"\ncolour = \"blue\"\n",
        ),
        "vpcgw.toml:4:1: unknown field `colour`",
    );
    // Nested tables too.
    expect_syntax(
        &with("[connections.dpd]\nretries = 3\n"),
        "unknown field `retries`",
    );
}

#[test]
fn syntax_error_is_one_line_with_position() {
    expect_syntax(
        &edit("name = \"gw-test\"", "name = gw-test"),
        "vpcgw.toml:3:8: ",
    );
}

#[test]
fn wrong_type_is_a_syntax_error() {
    expect_syntax(
        &edit(
            r#"lan_interfaces = ["lan0", "lan1"]"#,
            r#"lan_interfaces = "lan0""#,
        ),
        "vpcgw.toml:6:18: invalid type: string \"lan0\", expected a sequence",
    );
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let env = Env::new();
    let big = format!("{BASE}\n#{}\n", "x".repeat(limits::MAX_FILE_BYTES));
    match env.load(&big) {
        Err(ConfigError::Read { source, .. }) => {
            assert!(source.to_string().contains("limited to 4194304 bytes"))
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    match parse_str(&big, Path::new("big.toml")) {
        Err(ConfigError::Syntax(m)) => assert!(m.contains("limited to 4194304 bytes")),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn non_utf8_is_refused() {
    let env = Env::new();
    fs::write(env.config_path(), b"[gateway]\nname = \"\xff\"\n").unwrap();
    match load(&env.config_path()) {
        Err(ConfigError::Syntax(m)) => assert!(m.contains("not UTF-8"), "{m}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn missing_file_is_a_read_error() {
    let env = Env::new();
    assert!(matches!(
        load(&env.path("nope.toml")),
        Err(ConfigError::Read { .. })
    ));
}

// ---------- collecting ----------

#[test]
fn every_problem_is_reported_errors_first() {
    let env = Env::new();
    let text = edit_in(
        &edit_in(
            &edit(r#"public_ip = "198.51.100.1""#, r#"public_ip = "nope""#),
            "dh_group = 14",
            "dh_group = 5",
        ),
        r#"remote_subnets = ["192.168.3.0/24"]"#,
        r#"remote_subnets = ["192.168.3.0/24", "192.168.4.0/24"]"#,
    );
    let ps = env.problems(&text);
    let errors: Vec<String> = ps
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.to_string())
        .collect();
    assert!(errors.iter().any(|e| e.contains("public_ip")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("DH group 5")),
        "{errors:?}"
    );
    // The reachability warning (192.168.4.0/24 has no rule) comes along, after the errors.
    let first_warning = ps
        .iter()
        .position(|p| p.severity == Severity::Warning)
        .unwrap();
    assert!(
        ps[first_warning..]
            .iter()
            .all(|p| p.severity == Severity::Warning)
    );
    assert!(ps[first_warning].message.contains("192.168.4.0/24"));
}

#[test]
fn problem_lists_are_capped() {
    let env = Env::new();
    let mut text = BASE.to_string();
    for i in 0..1100 {
        text.push_str(&format!(
            "[[ports]]\nname = \"p{i}\"\naddresses = [\"10.{}.{}.1\"]\nsecurity_groups = [\"sg-web\"]\n",
            i / 256,
            i % 256
        ));
    }
    let ps = env.problems(&text);
    let errors = ps.iter().filter(|p| p.severity == Severity::Error).count();
    assert_eq!(errors, limits::MAX_PROBLEMS + 1);
    assert!(ps.iter().any(|p| p.message == "100 more errors not shown"));
}

// ---------- good configurations ----------

#[test]
fn base_config_and_defaults() {
    let env = Env::new();
    let c = env.ok(BASE);
    assert!(c.warnings.is_empty(), "{}", lines(&c.warnings));
    let cfg = c.config;
    assert_eq!(cfg.path, env.config_path());
    assert_eq!(cfg.gateway.name, "gw-test");
    assert_eq!(cfg.gateway.xdp_mode, XdpMode::Auto);
    assert_eq!(cfg.gateway.wan_default, WanDefault::Pass);
    assert_eq!(
        cfg.gateway.control_socket,
        PathBuf::from("/run/vpcgw/vpcgw.sock")
    );
    assert_eq!(cfg.conntrack.max_entries, 262_144);
    assert_eq!(cfg.conntrack.timeouts, DEFAULT_TIMEOUTS);
    assert_eq!(cfg.conntrack.sweep_interval, Duration::from_secs(10));
    let rule = &cfg.groups[0].rules[0];
    assert_eq!(rule.ethertype, Ethertype::IPv4);
    assert_eq!(rule.protocol, Protocol::Tcp);
    assert_eq!(rule.ports, Some(PortRange::Ports { min: 22, max: 22 }));
    assert_eq!(
        rule.remote,
        Remote::Prefix("192.168.3.0/24".parse().unwrap())
    );
    let egress = &cfg.groups[0].rules[1];
    assert_eq!(
        (
            egress.direction,
            egress.protocol,
            egress.ports,
            egress.remote.clone()
        ),
        (Direction::Egress, Protocol::Any, None, Remote::Any)
    );
    assert_eq!(cfg.ports[0].mac, Some([2, 0, 0, 0, 1, 0x0a]));
    assert_eq!(cfg.ports[0].groups, vec![0]);
    let ike = &cfg.ike_policies[0];
    assert_eq!((ike.integrity, ike.prf), (None, Prf::HmacSha256));
    assert_eq!(ike.lifetime, Duration::from_secs(86_400));
    let esp = &cfg.ipsec_policies[0];
    assert_eq!((esp.pfs, esp.lifetime), (None, Duration::from_secs(3600)));
    let conn = &cfg.connections[0];
    assert_eq!(conn.peer_id, "198.51.100.2");
    assert_eq!(conn.local_id, "198.51.100.1");
    assert_eq!(conn.psk_file, env.path("psk/dc1.psk"));
    assert!(conn.psk_file.is_absolute());
    assert_eq!(conn.initiator, Initiator::BiDirectional);
    assert_eq!(conn.mtu, 1400);
    assert_eq!(
        conn.dpd,
        Dpd {
            action: DpdAction::Hold,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(120)
        }
    );
}

#[test]
fn values_are_normalised() {
    let env = Env::new();
    let text = with(
        r#"
[[security_groups]]
name = "sg-misc"
[[security_groups.rules]]
direction = "INGRESS"
ethertype = "ipv4"
protocol = 6
port_range_min = 1000
port_range_max = 2000
remote_ip_prefix = "0.0.0.0/0"
[[security_groups.rules]]
direction = "ingress"
protocol = "icmp"
port_range_min = 8
remote_group = "sg-web"
[[security_groups.rules]]
direction = "ingress"
protocol = "icmp"
port_range_min = 3
port_range_max = 4
[[security_groups.rules]]
direction = "egress"
ethertype = "IPv6"
protocol = "ipv6-icmp"
[[security_groups.rules]]
direction = "egress"
protocol = 47
[[security_groups.rules]]
direction = "egress"
protocol = 0

[[ike_policies]]
name = "ike-cbc"
encryption = "AES-256"
integrity = "hmac-sha2-384"
dh_group = "group20"

[[ipsec_policies]]
name = "ipsec-cbc"
encryption = "aes-256"
integrity = "hmac-sha2-512"
pfs = "curve25519"
"#,
    )
    .replace("control_socket", "unused")
    .replace(
        "wan_interface = \"wan0\"",
        "wan_interface = \"wan0\"\ncontrol_socket = \"run/gw.sock\"",
    );
    let cfg = env.ok(&text).config;
    let g = &cfg.groups[1];
    assert_eq!(g.rules[0].protocol, Protocol::Tcp);
    assert_eq!(g.rules[0].direction, Direction::Ingress);
    assert_eq!(
        g.rules[0].ports,
        Some(PortRange::Ports {
            min: 1000,
            max: 2000
        })
    );
    assert_eq!(g.rules[0].remote, Remote::Any);
    assert_eq!(
        g.rules[1].ports,
        Some(PortRange::Icmp { ty: 8, code: None })
    );
    assert_eq!(g.rules[1].remote, Remote::Group(0));
    assert_eq!(
        g.rules[2].ports,
        Some(PortRange::Icmp {
            ty: 3,
            code: Some(4)
        })
    );
    assert_eq!(
        (g.rules[3].ethertype, g.rules[3].protocol),
        (Ethertype::IPv6, Protocol::Icmpv6)
    );
    assert_eq!(g.rules[4].protocol, Protocol::Number(47));
    assert_eq!(g.rules[5].protocol, Protocol::Number(0));
    let ike = &cfg.ike_policies[1];
    assert_eq!(ike.encryption, Encryption::Aes256Cbc);
    assert_eq!(ike.integrity, Some(Integrity::HmacSha384_192));
    assert_eq!(
        ike.prf,
        Prf::HmacSha384,
        "the PRF defaults to the integrity's hash"
    );
    assert_eq!(ike.dh_group, DhGroup::Ecp384);
    assert_eq!(ike.proposal(), "aes256-sha384-ecp384");
    let esp = &cfg.ipsec_policies[1];
    assert_eq!(esp.pfs, Some(DhGroup::Curve25519));
    assert_eq!(esp.proposal(), "aes256-sha512-curve25519");
    assert_eq!(cfg.gateway.control_socket, env.path("run/gw.sock"));
}

#[test]
fn proposals_in_strongswan_notation() {
    let ike = IkePolicy {
        name: "x".into(),
        encryption: Encryption::Aes128Gcm16,
        integrity: None,
        prf: Prf::HmacSha256,
        dh_group: DhGroup::Modp2048,
        lifetime: Duration::from_secs(1),
    };
    assert_eq!(ike.proposal(), "aes128gcm16-prfsha256-modp2048");
    let cbc = IkePolicy {
        encryption: Encryption::Aes256Cbc,
        integrity: Some(Integrity::HmacSha256_128),
        prf: Prf::HmacSha512,
        dh_group: DhGroup::Ecp384,
        ..ike.clone()
    };
    assert_eq!(cbc.proposal(), "aes256-sha256-prfsha512-ecp384");
    let esp = IpsecPolicy {
        name: "y".into(),
        encryption: Encryption::Aes256Cbc,
        integrity: Some(Integrity::HmacSha256_128),
        pfs: Some(DhGroup::Modp2048),
        lifetime: Duration::from_secs(1),
    };
    assert_eq!(esp.proposal(), "aes256-sha256-modp2048");
    assert_eq!(DhGroup::Curve25519.number(), 31);
    assert_eq!(Encryption::Aes128Gcm16.transform_id(), 20);
}

#[test]
fn ipv6_connection() {
    let env = Env::new();
    let text = edit_in(
        &edit_in(
            &edit(
                r#"local_subnets = ["192.168.1.0/24"]"#,
                r#"local_subnets = ["fd00:1::/64"]"#,
            ),
            r#"remote_subnets = ["192.168.3.0/24"]"#,
            "remote_subnets = [\"fd00:3::/64\"]\nmtu = 1280",
        ),
        "[[security_groups]]",
        "[[vpc.subnets]]\nname = \"subnet-v6\"\ncidr = \"fd00:1::/64\"\n\n[[security_groups]]",
    );
    let cfg = env.ok(&text).config;
    assert_eq!(cfg.connections[0].mtu, 1280);
}

// ---------- warnings ----------

#[test]
fn warning_for_unreachable_server() {
    let env = Env::new();
    let text = edit(
        r#"remote_subnets = ["192.168.3.0/24"]"#,
        r#"remote_subnets = ["192.168.3.0/24", "192.168.4.0/24"]"#,
    );
    let c = env.ok(&text);
    assert_eq!(c.warnings.len(), 1, "{}", lines(&c.warnings));
    let w = &c.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(
        w.to_string(),
        "warning: port 'ecs-a1': security_groups: no ingress rule of 'sg-web' admits connection 'dc1' remote \
         subnet 192.168.4.0/24: the tunnel would come up but the server (192.168.1.10) would be \
         unreachable from that subnet"
    );
    // An ingress rule from any address, or from a prefix overlapping the
    // subnet, silences it, whatever its protocol.
    for remote in [
        "",
        "remote_ip_prefix = \"192.168.0.0/16\"\n",
        "remote_ip_prefix = \"192.168.4.128/25\"\n",
    ] {
        let t = edit_in(
            &text,
            "[[security_groups.rules]]\ndirection = \"egress\"\n",
            &format!(
                "[[security_groups.rules]]\ndirection = \"egress\"\n\n\
                 [[security_groups.rules]]\ndirection = \"ingress\"\nprotocol = \"udp\"\n{remote}"
            ),
        );
        assert!(env.ok(&t).warnings.is_empty(), "{remote}");
    }
    // An IPv6 rule does not count for an IPv4 subnet.
    let t = edit_in(
        &text,
        "[[security_groups.rules]]\ndirection = \"egress\"\n",
        "[[security_groups.rules]]\ndirection = \"egress\"\n\n[[security_groups.rules]]\ndirection = \"ingress\"\nethertype = \"IPv6\"\n",
    );
    assert_eq!(env.ok(&t).warnings.len(), 1);
}

#[test]
fn warning_for_port_without_egress() {
    let env = Env::new();
    let text = edit("[[security_groups.rules]]\ndirection = \"egress\"\n", "");
    let c = env.ok(&text);
    assert_eq!(c.warnings.len(), 1, "{}", lines(&c.warnings));
    assert!(
        c.warnings[0].to_string().starts_with(
            "warning: port 'ecs-a1': security_groups: none of its groups ('sg-web') has an egress rule"
        ),
        "{}",
        c.warnings[0]
    );
}

// ---------- examples ----------

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The example copied into a temporary directory with its PSK files at mode
/// 0600 (git does not keep modes).
fn example(name: &str) -> (Env, String) {
    let env = Env::new();
    for entry in fs::read_dir(examples_dir().join("psk")).unwrap() {
        let entry = entry.unwrap();
        let rel = format!("psk/{}", entry.file_name().to_string_lossy());
        env.psk(&rel, &fs::read(entry.path()).unwrap(), 0o600);
    }
    let text = fs::read_to_string(examples_dir().join(name)).unwrap();
    (env, text)
}

#[test]
fn site_to_site_example() {
    let (env, text) = example("site-to-site.toml");
    let c = env.ok(&text);
    let cfg = &c.config;
    assert_eq!(cfg.gateway.name, "gw-site");
    assert_eq!(
        cfg.gateway.public_ip,
        "198.51.100.1".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(cfg.gateway.wan_interface, "wan0");
    assert_eq!(cfg.gateway.lan_interfaces, ["lan0", "lan1"]);
    assert_eq!(
        cfg.gateway.control_socket,
        PathBuf::from("/run/vpcgw/site-to-site.sock")
    );
    assert_eq!(cfg.vpc.subnets.len(), 2);
    assert_eq!(cfg.ports.len(), 2);
    assert_eq!(cfg.ports[1].mac, Some([2, 0, 0, 0, 2, 0x0a]));
    assert_eq!(
        cfg.groups
            .iter()
            .map(|g| g.name.as_str())
            .collect::<Vec<_>>(),
        ["sg-web", "sg-db"]
    );
    let conn = &cfg.connections[0];
    assert_eq!(conn.name, "dc1");
    assert_eq!(conn.peer_address.to_string(), "198.51.100.2");
    assert_eq!(conn.psk_file, env.path("psk/dc1.psk"));
    assert_eq!(
        cfg.ike_policies[conn.ike_policy].proposal(),
        "aes128gcm16-prfsha256-modp2048"
    );
    assert_eq!(
        cfg.ipsec_policies[conn.ipsec_policy].proposal(),
        "aes128gcm16-modp2048"
    );
    // The one documented warning: the database is closed to DC subnet 4.
    assert_eq!(c.warnings.len(), 1, "{}", lines(&c.warnings));
    assert!(
        c.warnings[0]
            .to_string()
            .starts_with("warning: port 'ecs-b1'")
    );
    assert!(c.warnings[0].message.contains("192.168.4.0/24"));

    let s = summary(cfg, &c.warnings);
    assert!(s.contains("gateway 'gw-site'"), "{s}");
    assert!(
        s.contains("dc1: peer 198.51.100.2; 192.168.1.0/24, 192.168.2.0/24 -> 192.168.3.0/24, 192.168.4.0/24; ike aes128gcm16-prfsha256-modp2048; esp aes128gcm16-modp2048; bi-directional; mtu 1400; dpd restart 30s/120s"),
        "{s}"
    );
    assert!(s.ends_with(&format!("{}\n", c.warnings[0])), "{s}");
    let key = fs::read_to_string(examples_dir().join("psk/dc1.psk")).unwrap();
    assert!(!s.contains(key.trim()));
}

#[test]
fn hub_and_spoke_example() {
    let (env, text) = example("hub-and-spoke.toml");
    let c = env.ok(&text);
    assert!(c.warnings.is_empty(), "{}", lines(&c.warnings));
    let cfg = &c.config;
    let names: Vec<&str> = cfg.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["dc-east", "dc-west"]);
    let proposals: Vec<(String, String)> = cfg
        .connections
        .iter()
        .map(|c| {
            (
                cfg.ike_policies[c.ike_policy].proposal(),
                cfg.ipsec_policies[c.ipsec_policy].proposal(),
            )
        })
        .collect();
    assert_eq!(
        proposals,
        [
            (
                "aes256gcm16-prfsha384-ecp384".to_string(),
                "aes256gcm16-ecp384".to_string()
            ),
            (
                "aes256-sha256-curve25519".to_string(),
                "aes256-sha256-curve25519".to_string()
            ),
        ]
    );
    assert_eq!(cfg.connections[1].initiator, Initiator::ResponseOnly);
    assert_eq!(cfg.connections[1].peer_id, "vpn.west.example.net");
    assert_eq!(cfg.connections[1].psk_file, env.path("psk/dc-west.psk"));
}

#[test]
fn example_psk_files_are_long_enough() {
    for entry in fs::read_dir(examples_dir().join("psk")).unwrap() {
        let key = fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(key.trim_end().len() >= 32);
    }
}

// ---------- round trip and garbage ----------

#[test]
fn round_trip_through_toml() {
    for name in ["site-to-site.toml", "hub-and-spoke.toml"] {
        let (env, text) = example(name);
        let first = env.ok(&text).config;
        let written = to_toml(&first).unwrap();
        let second = env.ok(&written).config;
        assert_eq!(first, second, "{name}:\n{written}");
    }
    let env = Env::new();
    let first = env.ok(BASE).config;
    let second = env.ok(&to_toml(&first).unwrap()).config;
    assert_eq!(first, second);
}

#[test]
fn garbage_never_panics() {
    let (env, text) = example("site-to-site.toml");
    let path = env.config_path();
    // Every truncation (at character boundaries).
    for (i, _) in text.char_indices() {
        let _ = parse_str(&text[..i], &path);
    }
    // Bytes flipped and lines dropped, deterministically.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let bytes = text.as_bytes();
    for _ in 0..2000 {
        let mut b = bytes.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() % b.len() as u64) as usize;
            let alphabet = b"[]=\"'#\n.,0123456789-/: abcxyz{}";
            b[at] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        let s = String::from_utf8_lossy(&b);
        let _ = parse_str(&s, &path);
        let kept: String = text
            .lines()
            .filter(|_| next() % 8 != 0)
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = parse_str(&kept, &path);
    }
    for s in [
        "",
        "\0",
        "[",
        "[[",
        "a=",
        "x = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ] {
        let _ = parse_str(s, &path);
    }
    let deep = format!("[gateway]\nname = {}{}", "[".repeat(5000), "]".repeat(5000));
    assert!(parse_str(&deep, &path).is_err());
}
