//! Validation: raw file -> [`Config`], or every problem found.
//!
//! Each object is checked on its own first (values, ranges, references by
//! name), then across objects (`cross`: overlapping subnets, reachability
//! warnings). Nothing stops at the first problem: a bad value is reported and
//! the object is checked further with the value left out, so one run lists
//! everything to fix. Cross-object checks only look at values that parsed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use vpcgw_common::conntrack::DEFAULT_TIMEOUTS;

use super::algorithms::{parse_dh, parse_encryption, parse_integrity, parse_pfs, parse_prf};
use super::cross;
use super::limits::*;
use super::names::{Keyword, parse_mac, quote};
use super::prefix::{PrefixIndex, parse_cidr, parse_ip};
use super::psk::read_psk;
use super::raw::*;
use super::{
    Config, Connection, ConntrackSettings, Direction, Dpd, DpdAction, Encryption, Ethertype,
    Gateway, IkePolicy, Initiator, Integrity, IpsecPolicy, Port, PortRange, Prf, Protocol, Remote,
    Rule, SecurityGroup, Subnet, Vpc, WanDefault, XdpMode,
};

/// How bad a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// Valid, but probably not what was meant.
    Warning,
}

/// One problem, naming where it is: e.g. `connection 'dc1': local_subnets[0]: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The object: `connection 'dc1'`, `security group 'web' rule 2`, `gateway`...
    /// Objects without a (valid) name are named by position: `connections[3]`.
    pub location: String,
    /// The field within it, as written in the file (may be empty).
    pub field: String,
    pub message: String,
}

/// `location: field: message`; warnings start with `warning: ` (errors and
/// warnings share the list of [`ConfigError::Invalid`]).
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if self.field.is_empty() {
            write!(f, "{}: {}", self.location, self.message)
        } else {
            write!(f, "{}: {}: {}", self.location, self.field, self.message)
        }
    }
}

/// A valid configuration and the warnings found on the way.
#[derive(Clone, Debug)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (or is larger than 4 MiB).
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not TOML of the expected shape (syntax, wrong type, unknown key):
    /// one line, `path:line:column: message`.
    #[error("{0}")]
    Syntax(String),
    /// Every error found, then every warning. Within each severity, problems
    /// come section by section (gateway, conntrack, vpc, security_groups,
    /// ports, ike_policies, ipsec_policies, connections; objects in file
    /// order), then the checks across objects (overlapping subnets).
    #[error("{} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
}

/// Read and validate the file at `path`.
pub fn load(path: &Path) -> Result<Checked, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    };
    let too_big = |len: u64| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is {len} bytes; configuration files are limited to {MAX_FILE_BYTES} bytes (4 MiB)"
            ),
        ))
    };
    let file = File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    if len > MAX_FILE_BYTES as u64 {
        return Err(too_big(len));
    }
    // Read at most one byte past the limit: the size stat reports may be 0
    // (pipes, /proc) or change under us.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigError::Syntax(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse_str(&text, path)
}

/// Validate `text` as if read from `path` (which anchors relative PSK paths).
pub fn parse_str(text: &str, path: &Path) -> Result<Checked, ConfigError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigError::Syntax(format!(
            "{}: the text is {} bytes; configuration files are limited to {MAX_FILE_BYTES} bytes (4 MiB)",
            path.display(),
            text.len()
        )));
    }
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::Syntax(syntax_message(path, text, &e)))?;
    Validator::new(path).run(&raw)
}

/// `path:line:column: message`, on one line.
fn syntax_message(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = text.as_bytes().get(..span.start).unwrap_or(text.as_bytes());
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            // Columns count characters: skip UTF-8 continuation bytes.
            let column = before
                .get(line_start..)
                .unwrap_or_default()
                .iter()
                .filter(|&&b| b & 0xc0 != 0x80)
                .count()
                + 1;
            format!("{}:{line}:{column}: {message}", path.display())
        }
        None => format!("{}: {message}", path.display()),
    }
}

/// Problems found so far, each severity capped at [`MAX_PROBLEMS`].
#[derive(Default)]
pub(super) struct Problems {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
    errors_left_out: usize,
    warnings_left_out: usize,
}

impl Problems {
    pub fn error(&mut self, location: &str, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, location, field, message.into());
    }

    pub fn warning(&mut self, location: &str, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, location, field, message.into());
    }

    /// A warning whose message is only built while the list has room: a
    /// large configuration can produce a great many of them.
    pub fn warning_with(&mut self, location: &str, field: &str, message: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_PROBLEMS {
            self.warning(location, field, message());
        } else {
            self.warnings_left_out += 1;
        }
    }

    fn push(&mut self, severity: Severity, location: &str, field: &str, message: String) {
        let (list, left_out) = match severity {
            Severity::Error => (&mut self.errors, &mut self.errors_left_out),
            Severity::Warning => (&mut self.warnings, &mut self.warnings_left_out),
        };
        if list.len() < MAX_PROBLEMS {
            list.push(Problem {
                severity,
                location: location.to_string(),
                field: field.to_string(),
                message,
            });
        } else {
            *left_out += 1;
        }
    }

    /// Errors so far, counting those left out of the list.
    pub fn error_count(&self) -> usize {
        self.errors.len() + self.errors_left_out
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Errors, then warnings; a last line for each severity that overflowed.
    fn finish(mut self) -> (Vec<Problem>, Vec<Problem>) {
        for (severity, list, left_out, word) in [
            (
                Severity::Error,
                &mut self.errors,
                self.errors_left_out,
                "errors",
            ),
            (
                Severity::Warning,
                &mut self.warnings,
                self.warnings_left_out,
                "warnings",
            ),
        ] {
            if left_out > 0 {
                list.push(Problem {
                    severity,
                    location: "configuration".into(),
                    field: String::new(),
                    message: format!("{left_out} more {word} not shown"),
                });
            }
        }
        (self.errors, self.warnings)
    }
}

/// `connection 'dc1'`, or `connections[3]` when it has no usable name.
fn object(kind: &str, list: &str, index: usize, name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!("{kind} {}", quote(n)),
        _ => format!("{list}[{index}]"),
    }
}

/// Where each object of a list is (`connection 'dc1'`, or `connections[3]`
/// without a usable name), and the index of the first object of each name;
/// every later object of a name already taken is reported.
fn named<'a, T>(
    p: &mut Problems,
    items: &'a [T],
    kind: &str,
    list: &str,
    name: impl Fn(&'a T) -> Option<&'a str>,
) -> (Vec<String>, HashMap<&'a str, usize>) {
    let mut locations = Vec::with_capacity(items.len());
    let mut first: HashMap<&'a str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let n = name(item);
        let location = object(kind, list, i, n);
        if let Some(n) = n {
            match first.get(n) {
                Some(&j) => p.error(
                    &location,
                    "name",
                    format!(
                        "{list}[{j}] and {list}[{i}] are both named {}; names must be unique",
                        quote(n)
                    ),
                ),
                None => {
                    first.insert(n, i);
                }
            }
        }
        locations.push(location);
    }
    (locations, first)
}

/// A checked connection's subnets with their positions in the file, for the
/// checks across objects (which name `local_subnets[2]` even when an earlier
/// entry failed to parse).
pub(super) struct ConnectionNets {
    pub location: String,
    pub local: Vec<(usize, IpNet)>,
    pub remote: Vec<(usize, IpNet)>,
    /// No error about these subnets: reachability warnings only make sense
    /// for a connection whose subnets are right.
    pub subnets_ok: bool,
}

struct Validator {
    p: Problems,
    /// Absolute directory of the file: relative paths are resolved against it.
    base_dir: PathBuf,
    path: PathBuf,
    public_ip: Option<IpAddr>,
}

impl Validator {
    fn new(path: &Path) -> Self {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self {
            p: Problems::default(),
            base_dir: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
            path: path.to_path_buf(),
            public_ip: None,
        }
    }

    fn run(mut self, raw: &RawConfig) -> Result<Checked, ConfigError> {
        if !self.within_limits(raw) {
            let (errors, _) = self.p.finish();
            return Err(ConfigError::Invalid(errors));
        }

        let gateway = self.gateway(raw.gateway.as_ref());
        let conntrack = self.conntrack(raw.conntrack.as_ref());
        let (vpc, vpc_nets) = self.vpc(raw.vpc.as_ref());
        let vpc_index = PrefixIndex::new(vpc_nets.iter().copied());

        let (group_locations, group_names) = named(
            &mut self.p,
            &raw.security_groups,
            "security group",
            "security_groups",
            |g| g.name.as_deref(),
        );
        let groups = self.groups(&raw.security_groups, &group_locations, &group_names);
        let (ports, port_locations) = self.ports(&raw.ports, &group_names, &vpc_nets, &vpc_index);

        let (ike_locations, ike_names) = named(
            &mut self.p,
            &raw.ike_policies,
            "ike policy",
            "ike_policies",
            |x| x.name.as_deref(),
        );
        let ike_policies: Vec<IkePolicy> = raw
            .ike_policies
            .iter()
            .zip(&ike_locations)
            .map(|(x, loc)| self.ike_policy(x, loc))
            .collect();

        let (ipsec_locations, ipsec_names) = named(
            &mut self.p,
            &raw.ipsec_policies,
            "ipsec policy",
            "ipsec_policies",
            |x| x.name.as_deref(),
        );
        let ipsec_policies: Vec<IpsecPolicy> = raw
            .ipsec_policies
            .iter()
            .zip(&ipsec_locations)
            .map(|(x, loc)| self.ipsec_policy(x, loc))
            .collect();

        let (connections, mut nets) = self.connections(&raw.connections, &ike_names, &ipsec_names);

        let overlapping = cross::subnet_overlaps(&mut self.p, &vpc, &vpc_index, &nets);
        for (n, bad) in nets.iter_mut().zip(overlapping) {
            n.subnets_ok &= !bad;
        }
        cross::reachability(
            &mut self.p,
            &groups,
            &ports,
            &port_locations,
            &connections,
            &nets,
        );

        let has_errors = self.p.has_errors();
        let (errors, warnings) = self.p.finish();
        if has_errors {
            let mut all = errors;
            all.extend(warnings);
            return Err(ConfigError::Invalid(all));
        }
        Ok(Checked {
            config: Config {
                path: self.path,
                gateway,
                conntrack,
                vpc,
                groups,
                ports,
                ike_policies,
                ipsec_policies,
                connections,
            },
            warnings,
        })
    }

    /// Counts first: everything after may be quadratic in some of them.
    fn within_limits(&mut self, raw: &RawConfig) -> bool {
        let check = |p: &mut Problems, loc: &str, field: &str, n: usize, max: usize, what: &str| {
            if n > max {
                p.error(
                    loc,
                    field,
                    format!("{n} {what}; at most {max} are supported"),
                );
            }
        };
        let p = &mut self.p;
        if let Some(lans) = raw.gateway.as_ref().and_then(|g| g.lan_interfaces.as_ref()) {
            check(
                p,
                "gateway",
                "lan_interfaces",
                lans.len(),
                MAX_LAN_INTERFACES,
                "interfaces",
            );
        }
        if let Some(vpc) = &raw.vpc {
            check(
                p,
                "vpc",
                "subnets",
                vpc.subnets.len(),
                MAX_VPC_SUBNETS,
                "subnets",
            );
        }
        let groups = &raw.security_groups;
        check(
            p,
            "configuration",
            "security_groups",
            groups.len(),
            MAX_SECURITY_GROUPS,
            "security groups",
        );
        let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
        check(
            p,
            "configuration",
            "security_groups.rules",
            rules,
            MAX_RULES,
            "rules in all groups",
        );
        check(
            p,
            "configuration",
            "ports",
            raw.ports.len(),
            MAX_PORTS,
            "ports",
        );
        for (i, port) in raw.ports.iter().enumerate() {
            let loc = object("port", "ports", i, port.name.as_deref());
            let n = port.addresses.as_ref().map_or(0, Vec::len);
            check(p, &loc, "addresses", n, MAX_PORT_ADDRESSES, "addresses");
            let n = port.security_groups.as_ref().map_or(0, Vec::len);
            check(p, &loc, "security_groups", n, MAX_PORT_GROUPS, "groups");
        }
        check(
            p,
            "configuration",
            "ike_policies",
            raw.ike_policies.len(),
            MAX_IKE_POLICIES,
            "IKE policies",
        );
        check(
            p,
            "configuration",
            "ipsec_policies",
            raw.ipsec_policies.len(),
            MAX_IPSEC_POLICIES,
            "IPsec policies",
        );
        check(
            p,
            "configuration",
            "connections",
            raw.connections.len(),
            MAX_CONNECTIONS,
            "connections",
        );
        for (i, c) in raw.connections.iter().enumerate() {
            let loc = object("connection", "connections", i, c.name.as_deref());
            let n = c.local_subnets.as_ref().map_or(0, Vec::len);
            check(
                p,
                &loc,
                "local_subnets",
                n,
                MAX_CONNECTION_SUBNETS,
                "subnets",
            );
            let n = c.remote_subnets.as_ref().map_or(0, Vec::len);
            check(
                p,
                &loc,
                "remote_subnets",
                n,
                MAX_CONNECTION_SUBNETS,
                "subnets",
            );
        }
        !self.p.has_errors()
    }

    // ----- helpers: one value each, reporting what is wrong -----

    fn required<'a, T>(&mut self, loc: &str, field: &str, v: Option<&'a T>) -> Option<&'a T> {
        if v.is_none() {
            self.p.error(loc, field, "is required");
        }
        v
    }

    /// An integer in `lo..=hi`; `default` when absent or wrong (wrong is reported).
    fn int(
        &mut self,
        loc: &str,
        field: &str,
        v: Option<i64>,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
        unit: &str,
    ) -> i64 {
        let (lo, hi) = (*range.start(), *range.end());
        match v {
            None => default,
            Some(n) if range.contains(&n) => n,
            Some(n) => {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                self.p.error(
                    loc,
                    field,
                    format!("{n} is out of range ({lo} to {hi}{unit})"),
                );
                default
            }
        }
    }

    fn keyword<K: Keyword>(&mut self, loc: &str, field: &str, v: Option<&str>, default: K) -> K {
        match v {
            None => default,
            Some(s) => K::parse(s).unwrap_or_else(|| {
                self.p.error(
                    loc,
                    field,
                    format!("{} is not one of {}", quote(s), K::choices()),
                );
                default
            }),
        }
    }

    /// The required name of an object (checked by [`Self::name`]).
    fn object_name(&mut self, loc: &str, v: Option<&String>) -> String {
        match self.required(loc, "name", v) {
            Some(n) => {
                self.name(loc, "name", n);
                n.clone()
            }
            None => String::new(),
        }
    }

    /// Names of objects: shown in messages and status output.
    fn name(&mut self, loc: &str, field: &str, v: &str) -> bool {
        let problem = if v.is_empty() {
            Some("must not be empty".to_string())
        } else if v.len() > MAX_NAME_BYTES {
            Some(format!(
                "is {} bytes long; at most {MAX_NAME_BYTES}",
                v.len()
            ))
        } else if v.chars().any(char::is_control) {
            Some(format!("{} contains control characters", quote(v)))
        } else {
            None
        };
        match problem {
            Some(m) => {
                self.p.error(loc, field, m);
                false
            }
            None => true,
        }
    }

    /// Linux's rules for interface names (`dev_valid_name`).
    fn ifname(&mut self, loc: &str, field: &str, v: &str) -> bool {
        let problem = if v.is_empty() {
            Some("an interface name must not be empty".to_string())
        } else if v.len() > MAX_IFNAME_BYTES {
            Some(format!(
                "{} is {} bytes long; Linux interface names have at most {MAX_IFNAME_BYTES} (IFNAMSIZ)",
                quote(v),
                v.len()
            ))
        } else if v == "."
            || v == ".."
            || v.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            Some(format!(
                "{} is not a valid interface name (no '/', ':', spaces, '.' or '..')",
                quote(v)
            ))
        } else {
            None
        };
        match problem {
            Some(m) => {
                self.p.error(loc, field, m);
                false
            }
            None => true,
        }
    }

    fn ip(&mut self, loc: &str, field: &str, v: &str) -> Option<IpAddr> {
        parse_ip(v).map_err(|m| self.p.error(loc, field, m)).ok()
    }

    /// A host address of ours or a peer's: not a wildcard, loopback, multicast
    /// or broadcast address.
    fn unicast_ip(&mut self, loc: &str, field: &str, v: &str) -> Option<IpAddr> {
        let a = self.ip(loc, field, v)?;
        let bad = a.is_unspecified()
            || a.is_loopback()
            || a.is_multicast()
            || matches!(a, IpAddr::V4(v4) if v4.is_broadcast());
        if bad {
            self.p.error(
                loc,
                field,
                format!(
                    "{a} is not a unicast address (unspecified, loopback, multicast or broadcast)"
                ),
            );
            return None;
        }
        Some(a)
    }

    /// A prefix; host bits are reported with the corrected prefix, which is
    /// returned so the checks across objects still see it.
    fn cidr(&mut self, loc: &str, field: &str, v: &str) -> Option<IpNet> {
        match parse_cidr(v) {
            Ok(c) => {
                if c.host_bits {
                    self.p
                        .error(loc, field, format!("{v} has host bits set; use {}", c.net));
                }
                Some(c.net)
            }
            Err(m) => {
                self.p.error(loc, field, m);
                None
            }
        }
    }

    fn resolve_path(&self, p: &str) -> PathBuf {
        let joined = self.base_dir.join(p);
        std::path::absolute(&joined).unwrap_or(joined)
    }

    // ----- sections -----

    fn gateway(&mut self, raw: Option<&RawGateway>) -> Gateway {
        let loc = "gateway";
        let Some(g) = raw else {
            self.p.error(loc, "", "the [gateway] table is required");
            return Gateway {
                name: "vpcgw".into(),
                public_ip: IpAddr::from([0, 0, 0, 0]),
                wan_interface: String::new(),
                lan_interfaces: Vec::new(),
                xdp_mode: XdpMode::Auto,
                wan_default: WanDefault::Pass,
                control_socket: PathBuf::new(),
            };
        };
        let name = g.name.clone().unwrap_or_else(|| "vpcgw".into());
        self.name(loc, "name", &name);

        let public_ip = self
            .required(loc, "public_ip", g.public_ip.as_ref())
            .and_then(|s| self.unicast_ip(loc, "public_ip", s));
        self.public_ip = public_ip;

        let wan = self
            .required(loc, "wan_interface", g.wan_interface.as_ref())
            .cloned();
        let wan_ok = wan
            .as_deref()
            .is_some_and(|w| self.ifname(loc, "wan_interface", w));

        let lans = self
            .required(loc, "lan_interfaces", g.lan_interfaces.as_ref())
            .cloned()
            .unwrap_or_default();
        if g.lan_interfaces.as_ref().is_some_and(Vec::is_empty) {
            self.p
                .error(loc, "lan_interfaces", "list at least one LAN interface");
        }
        let mut seen = HashSet::new();
        for (i, lan) in lans.iter().enumerate() {
            let field = format!("lan_interfaces[{i}]");
            if !self.ifname(loc, &field, lan) {
                continue;
            }
            if !seen.insert(lan.as_str()) {
                self.p
                    .error(loc, &field, format!("{} is listed twice", quote(lan)));
            } else if wan_ok && wan.as_deref() == Some(lan.as_str()) {
                self.p.error(
                    loc,
                    &field,
                    format!(
                        "{} is also the wan_interface; LAN and WAN must be different interfaces",
                        quote(lan)
                    ),
                );
            }
        }

        let xdp_mode = self.keyword(loc, "xdp_mode", g.xdp_mode.as_deref(), XdpMode::Auto);
        let wan_default = self.keyword(
            loc,
            "wan_default",
            g.wan_default.as_deref(),
            WanDefault::Pass,
        );

        let socket_text = g
            .control_socket
            .as_deref()
            .unwrap_or("/run/vpcgw/vpcgw.sock");
        let control_socket = self.resolve_path(socket_text);
        let socket_len = control_socket.as_os_str().len();
        if socket_text.is_empty() || socket_text.ends_with('/') {
            self.p
                .error(loc, "control_socket", "must be the path of a socket file");
        } else if socket_len > MAX_SOCKET_PATH_BYTES {
            self.p.error(
                loc,
                "control_socket",
                format!(
                    "{} is {socket_len} bytes long; a Unix socket path has at most {MAX_SOCKET_PATH_BYTES}",
                    control_socket.display()
                ),
            );
        }

        Gateway {
            name,
            public_ip: public_ip.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            wan_interface: wan.unwrap_or_default(),
            lan_interfaces: lans,
            xdp_mode,
            wan_default,
            control_socket,
        }
    }

    fn conntrack(&mut self, raw: Option<&RawConntrack>) -> ConntrackSettings {
        let loc = "conntrack";
        let default = RawConntrack::default();
        let c = raw.unwrap_or(&default);
        let max_entries = self.int(
            loc,
            "max_entries",
            c.max_entries,
            262_144,
            1024..=16_777_216,
            "entries",
        );
        let sweep = self.int(
            loc,
            "sweep_interval",
            c.sweep_interval,
            10,
            1..=3600,
            "seconds",
        );
        let mut timeouts = DEFAULT_TIMEOUTS;
        for (slot, ((field, value), default)) in timeouts
            .iter_mut()
            .zip(c.timeouts().into_iter().zip(DEFAULT_TIMEOUTS))
        {
            let secs = self.int(
                loc,
                field,
                value,
                i64::from(default),
                1..=2_592_000,
                "seconds",
            );
            *slot = u32::try_from(secs).unwrap_or(default);
        }
        ConntrackSettings {
            max_entries: u32::try_from(max_entries).unwrap_or(262_144),
            timeouts,
            sweep_interval: Duration::from_secs(sweep.unsigned_abs()),
        }
    }

    /// The VPC, and its subnets' prefixes that parsed (with their index).
    fn vpc(&mut self, raw: Option<&RawVpc>) -> (Vpc, Vec<(IpNet, usize)>) {
        let loc = "vpc";
        let Some(v) = raw else {
            self.p.error(loc, "", "the [vpc] table is required");
            return (
                Vpc {
                    name: String::new(),
                    subnets: Vec::new(),
                },
                Vec::new(),
            );
        };
        let name = self.object_name(loc, v.name.as_ref());
        if v.subnets.is_empty() {
            self.p
                .error(loc, "subnets", "list at least one subnet ([[vpc.subnets]])");
        }
        let (locations, _) = named(&mut self.p, &v.subnets, "vpc subnet", "vpc.subnets", |x| {
            x.name.as_deref()
        });
        let mut subnets = Vec::new();
        let mut nets = Vec::new();
        for (i, (s, loc)) in v.subnets.iter().zip(&locations).enumerate() {
            let name = self.object_name(loc, s.name.as_ref());
            let cidr = self
                .required(loc, "cidr", s.cidr.as_ref())
                .and_then(|c| self.cidr(loc, "cidr", c));
            if let Some(net) = cidr {
                nets.push((net, i));
            }
            subnets.push(Subnet {
                name,
                cidr: cidr.unwrap_or_default(),
            });
        }
        // Disjoint subnets: a server's address must name one subnet.
        let index = PrefixIndex::new(nets.iter().copied());
        for &(net, i) in &nets {
            let earlier: Vec<String> = index
                .overlapping(&net)
                .into_iter()
                .filter(|(_, j)| **j < i)
                .map(|(other, j)| format!("{} ({other})", subnet_label(&subnets, *j)))
                .collect();
            if !earlier.is_empty() {
                self.p.error(
                    locations.get(i).map_or(loc, String::as_str),
                    "cidr",
                    format!(
                        "{net} overlaps {}; VPC subnets must be disjoint",
                        cross::listing(earlier)
                    ),
                );
            }
        }
        (Vpc { name, subnets }, nets)
    }

    fn groups(
        &mut self,
        raw: &[RawGroup],
        locations: &[String],
        names: &HashMap<&str, usize>,
    ) -> Vec<SecurityGroup> {
        let mut groups = Vec::with_capacity(raw.len());
        for (g, loc) in raw.iter().zip(locations) {
            let name = self.object_name(loc, g.name.as_ref());
            let rules = g
                .rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| self.rule(r, &format!("{loc} rule {}", i + 1), names))
                .collect();
            groups.push(SecurityGroup {
                name,
                description: g.description.clone().unwrap_or_default(),
                rules,
            });
        }
        groups
    }

    fn rule(&mut self, r: &RawRule, loc: &str, groups: &HashMap<&str, usize>) -> Option<Rule> {
        let errors_before = self.p.error_count();

        let direction = self
            .required(loc, "direction", r.direction.as_ref())
            .map(|d| self.keyword(loc, "direction", Some(d), Direction::Ingress));
        let ethertype = self.keyword(loc, "ethertype", r.ethertype.as_deref(), Ethertype::IPv4);
        let protocol = self.protocol(loc, r.protocol.as_ref());

        if let Some(proto) = protocol {
            match (proto, ethertype) {
                (Protocol::Icmp, Ethertype::IPv6) => self.p.error(
                    loc,
                    "protocol",
                    "icmp is IPv4's ICMP; with ethertype IPv6 use protocol icmpv6",
                ),
                (Protocol::Icmpv6, Ethertype::IPv4) => self.p.error(
                    loc,
                    "protocol",
                    "icmpv6 belongs to IPv6; with ethertype IPv4 use protocol icmp",
                ),
                _ => {}
            }
        }
        let ports = protocol
            .and_then(|proto| self.port_range(loc, proto, r.port_range_min, r.port_range_max));

        let remote = match (&r.remote_ip_prefix, &r.remote_group) {
            (Some(_), Some(_)) => {
                self.p.error(
                    loc,
                    "remote_group",
                    "give at most one of remote_ip_prefix and remote_group",
                );
                None
            }
            (Some(prefix), None) => self.cidr(loc, "remote_ip_prefix", prefix).and_then(|net| {
                if Ethertype::of_net(&net) != ethertype {
                    self.p.error(
                        loc,
                        "remote_ip_prefix",
                        format!(
                            "{net} is {} but the rule's ethertype is {ethertype}",
                            Ethertype::of_net(&net)
                        ),
                    );
                    None
                } else if net.prefix_len() == 0 {
                    Some(Remote::Any)
                } else {
                    Some(Remote::Prefix(net))
                }
            }),
            (None, Some(group)) => match groups.get(group.as_str()) {
                Some(&i) => Some(Remote::Group(i)),
                None => {
                    self.p.error(
                        loc,
                        "remote_group",
                        format!("no security group is named {}", quote(group)),
                    );
                    None
                }
            },
            (None, None) => Some(Remote::Any),
        };

        if self.p.error_count() != errors_before {
            return None;
        }
        Some(Rule {
            direction: direction?,
            ethertype,
            protocol: protocol?,
            ports,
            remote: remote?,
            description: r.description.clone().unwrap_or_default(),
        })
    }

    fn protocol(&mut self, loc: &str, v: Option<&toml::Value>) -> Option<Protocol> {
        const CHOICES: &str = "any, tcp, udp, icmp, icmpv6 or an IP protocol number 0 to 254";
        let message = match v {
            None => return Some(Protocol::Any),
            Some(toml::Value::String(s)) => match Protocol::from_name(s) {
                Some(p) => return Some(p),
                None => format!("{} is not one of {CHOICES}", quote(s)),
            },
            Some(toml::Value::Integer(n)) => match u8::try_from(*n).ok().map(Protocol::from_number)
            {
                Some(Some(p)) => return Some(p),
                Some(None) => {
                    "protocol number 255 is reserved (IANA); it matches no packet".to_string()
                }
                None => format!("{n} is not an IP protocol number (0 to 254)"),
            },
            Some(other) => format!("must be {CHOICES}, not a {}", other.type_str()),
        };
        self.p.error(loc, "protocol", message);
        None
    }

    fn port_range(
        &mut self,
        loc: &str,
        proto: Protocol,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Option<PortRange> {
        if !proto.has_ports() {
            if min.is_some() || max.is_some() {
                let field = if min.is_some() {
                    "port_range_min"
                } else {
                    "port_range_max"
                };
                self.p.error(
                    loc,
                    field,
                    format!(
                        "port ranges only apply to protocols tcp, udp, icmp and icmpv6, not {proto}; \
                         remove port_range_min/port_range_max"
                    ),
                );
            }
            return None;
        }
        let icmp = matches!(proto, Protocol::Icmp | Protocol::Icmpv6);
        let Some(min) = min else {
            if max.is_some() {
                let m = if icmp {
                    "port_range_max (the ICMP code) needs port_range_min (the ICMP type)"
                } else {
                    "port_range_max needs port_range_min (give both, or port_range_min alone for one port)"
                };
                self.p.error(loc, "port_range_max", m);
            }
            return None;
        };
        if icmp {
            let ty = self.small(loc, "port_range_min", min, 0, 255, "ICMP type")?;
            let code = match max {
                None => None,
                Some(code) => Some(self.small(loc, "port_range_max", code, 0, 255, "ICMP code")?),
            };
            return Some(PortRange::Icmp {
                ty: u8::try_from(ty).ok()?,
                code: code.and_then(|c| u8::try_from(c).ok()),
            });
        }
        let lo = self.small(loc, "port_range_min", min, 1, 65535, "port");
        let hi = match max {
            None => lo,
            Some(max) => self.small(loc, "port_range_max", max, 1, 65535, "port"),
        };
        let (lo, hi) = (u16::try_from(lo?).ok()?, u16::try_from(hi?).ok()?);
        if hi < lo {
            self.p.error(
                loc,
                "port_range_max",
                format!("{hi} is below port_range_min ({lo})"),
            );
            return None;
        }
        Some(PortRange::Ports { min: lo, max: hi })
    }

    fn small(
        &mut self,
        loc: &str,
        field: &str,
        v: i64,
        lo: i64,
        hi: i64,
        what: &str,
    ) -> Option<i64> {
        if (lo..=hi).contains(&v) {
            Some(v)
        } else {
            self.p.error(
                loc,
                field,
                format!("{v} is not a valid {what} ({lo} to {hi})"),
            );
            None
        }
    }

    fn ports(
        &mut self,
        raw: &[RawPort],
        group_names: &HashMap<&str, usize>,
        vpc_nets: &[(IpNet, usize)],
        vpc_index: &PrefixIndex<usize>,
    ) -> (Vec<Port>, Vec<String>) {
        let (locations, _) = named(&mut self.p, raw, "port", "ports", |x| x.name.as_deref());
        let mut owner_of_address: HashMap<IpAddr, usize> = HashMap::new();
        let mut owner_of_mac: HashMap<[u8; 6], usize> = HashMap::new();
        let mut ports = Vec::with_capacity(raw.len());
        for (i, (port, loc)) in raw.iter().zip(&locations).enumerate() {
            let name = self.object_name(loc, port.name.as_ref());

            let mut addresses = Vec::new();
            let raw_addresses = self.required(loc, "addresses", port.addresses.as_ref());
            if raw_addresses.is_some_and(Vec::is_empty) {
                self.p.error(loc, "addresses", "list at least one address");
            }
            for (k, text) in raw_addresses.into_iter().flatten().enumerate() {
                let field = format!("addresses[{k}]");
                let Some(a) = self.ip(loc, &field, text) else {
                    continue;
                };
                if vpc_index.containing_addr(a).is_empty() {
                    self.p.error(
                        loc,
                        &field,
                        format!(
                            "{a} is not inside any VPC subnet ({})",
                            vpc_summary(vpc_nets)
                        ),
                    );
                }
                match owner_of_address.get(&a) {
                    Some(&j) if j == i => {
                        self.p.error(loc, &field, format!("{a} is listed twice"));
                        continue;
                    }
                    Some(&j) => {
                        self.p.error(
                            loc,
                            &field,
                            format!(
                                "{a} is also an address of {}",
                                locations.get(j).map_or("", String::as_str)
                            ),
                        );
                        continue;
                    }
                    None => {
                        owner_of_address.insert(a, i);
                    }
                }
                addresses.push(a);
            }

            let mac = port.mac.as_deref().and_then(|text| {
                let Some(mac) = parse_mac(text) else {
                    self.p.error(
                        loc,
                        "mac",
                        format!(
                            "{} is not a MAC address (six hex octets like 02:00:00:00:01:0a)",
                            quote(text)
                        ),
                    );
                    return None;
                };
                if mac[0] & 1 != 0 || mac == [0; 6] {
                    self.p
                        .error(loc, "mac", format!("{text} is not a unicast MAC address"));
                    return None;
                }
                if let Some(&j) = owner_of_mac.get(&mac) {
                    self.p.error(
                        loc,
                        "mac",
                        format!(
                            "{text} is also the MAC of {}",
                            locations.get(j).map_or("", String::as_str)
                        ),
                    );
                    return None;
                }
                owner_of_mac.insert(mac, i);
                Some(mac)
            });

            let mut groups = Vec::new();
            let raw_groups = self.required(loc, "security_groups", port.security_groups.as_ref());
            if raw_groups.is_some_and(Vec::is_empty) {
                self.p.error(
                    loc,
                    "security_groups",
                    "list at least one security group (a port in no group could send and receive nothing)",
                );
            }
            for (k, g) in raw_groups.into_iter().flatten().enumerate() {
                let field = format!("security_groups[{k}]");
                match group_names.get(g.as_str()) {
                    None => self.p.error(
                        loc,
                        &field,
                        format!("no security group is named {}", quote(g)),
                    ),
                    Some(idx) if groups.contains(idx) => {
                        self.p
                            .error(loc, &field, format!("{} is listed twice", quote(g)))
                    }
                    Some(&idx) => groups.push(idx),
                }
            }
            ports.push(Port {
                name,
                addresses,
                mac,
                groups,
            });
        }
        (ports, locations)
    }

    /// Encryption and integrity, which IKE and IPsec policies share.
    fn cipher(
        &mut self,
        loc: &str,
        encryption: Option<&String>,
        integrity: Option<&String>,
    ) -> (Encryption, Option<Integrity>) {
        let enc = self.required(loc, "encryption", encryption).and_then(|s| {
            parse_encryption(s)
                .map_err(|m| self.p.error(loc, "encryption", m))
                .ok()
        });
        let integ = integrity.and_then(|s| {
            parse_integrity(s)
                .map_err(|m| self.p.error(loc, "integrity", m))
                .ok()
        });
        match (enc, integrity) {
            (Some(e), Some(_)) if e.is_aead() => self.p.error(
                loc,
                "integrity",
                format!(
                    "must be left out with {}: GCM is an AEAD cipher and authenticates the data itself",
                    e.keyword()
                ),
            ),
            (Some(e), None) if !e.is_aead() => self.p.error(
                loc,
                "integrity",
                format!(
                    "is required with {} (CBC encrypts but does not authenticate); \
                     use hmac-sha2-256, hmac-sha2-384 or hmac-sha2-512, or a GCM cipher",
                    e.keyword()
                ),
            ),
            _ => {}
        }
        (
            enc.unwrap_or(Encryption::Aes128Gcm16),
            integ.filter(|_| enc.is_some_and(|e| !e.is_aead())),
        )
    }

    fn lifetime(&mut self, loc: &str, v: Option<i64>, default: i64, lo: i64, hi: i64) -> Duration {
        Duration::from_secs(
            self.int(loc, "lifetime", v, default, lo..=hi, "seconds")
                .unsigned_abs(),
        )
    }

    fn ike_policy(&mut self, x: &RawIkePolicy, loc: &str) -> IkePolicy {
        let name = self.object_name(loc, x.name.as_ref());
        if let Some(v) = &x.ike_version {
            match v.to_ascii_lowercase().as_str() {
                "v2" | "ikev2" => {}
                "v1" | "ikev1" => self.p.error(
                    loc,
                    "ike_version",
                    "IKEv1 is not supported: vpcgw speaks IKEv2 only (RFC 7296), and RFC 9395 \
                     deprecates IKEv1; set ike_version = \"v2\" (and the same on the peer)",
                ),
                _ => self.p.error(
                    loc,
                    "ike_version",
                    format!("{} is not an IKE version; use \"v2\"", quote(v)),
                ),
            }
        }
        let (encryption, integrity) = self.cipher(loc, x.encryption.as_ref(), x.integrity.as_ref());
        let default_prf = integrity.map_or(Prf::HmacSha256, Integrity::prf);
        let prf = match &x.prf {
            None => default_prf,
            Some(s) => parse_prf(s).unwrap_or_else(|m| {
                self.p.error(loc, "prf", m);
                default_prf
            }),
        };
        let dh_group = match self.required(loc, "dh_group", x.dh_group.as_ref()) {
            None => None,
            Some(v) => parse_dh(v)
                .map_err(|m| self.p.error(loc, "dh_group", m))
                .ok(),
        };
        IkePolicy {
            name,
            encryption,
            integrity,
            prf,
            dh_group: dh_group.unwrap_or(super::DhGroup::Modp2048),
            lifetime: self.lifetime(loc, x.lifetime, 86_400, 60, 604_800),
        }
    }

    fn ipsec_policy(&mut self, x: &RawIpsecPolicy, loc: &str) -> IpsecPolicy {
        let name = self.object_name(loc, x.name.as_ref());
        if let Some(v) = &x.transform_protocol {
            match v.to_ascii_lowercase().as_str() {
                "esp" => {}
                "ah" | "ah-esp" => self.p.error(
                    loc,
                    "transform_protocol",
                    "AH is not supported: it authenticates the outer IP header, so it cannot \
                     cross NAT, and ESP already protects the traffic; use \"esp\"",
                ),
                _ => self.p.error(
                    loc,
                    "transform_protocol",
                    format!("{} is not a transform protocol; use \"esp\"", quote(v)),
                ),
            }
        }
        if let Some(v) = &x.encapsulation_mode {
            match v.to_ascii_lowercase().as_str() {
                "tunnel" => {}
                "transport" => self.p.error(
                    loc,
                    "encapsulation_mode",
                    "transport mode is not supported: a site-to-site gateway carries other \
                     hosts' packets, which needs tunnel mode; use \"tunnel\"",
                ),
                _ => self.p.error(
                    loc,
                    "encapsulation_mode",
                    format!("{} is not an encapsulation mode; use \"tunnel\"", quote(v)),
                ),
            }
        }
        let (encryption, integrity) = self.cipher(loc, x.encryption.as_ref(), x.integrity.as_ref());
        let pfs = match &x.pfs {
            None => None,
            Some(v) => parse_pfs(v).unwrap_or_else(|m| {
                self.p.error(loc, "pfs", m);
                None
            }),
        };
        IpsecPolicy {
            name,
            encryption,
            integrity,
            pfs,
            lifetime: self.lifetime(loc, x.lifetime, 3600, 30, 604_800),
        }
    }

    /// Identities sent in IKE_AUTH (ID_IPV4_ADDR / ID_FQDN ...).
    fn ike_id(&mut self, loc: &str, field: &str, v: &str) {
        if v.is_empty() || v.len() > MAX_NAME_BYTES || v.chars().any(char::is_control) {
            self.p.error(
                loc,
                field,
                format!("{} is not a valid IKE identity (1 to {MAX_NAME_BYTES} bytes, no control characters)", quote(v)),
            );
        }
    }

    fn subnet_list(
        &mut self,
        loc: &str,
        field: &str,
        v: Option<&Vec<String>>,
    ) -> Vec<(usize, IpNet)> {
        let list = self.required(loc, field, v);
        if list.is_some_and(Vec::is_empty) {
            self.p.error(loc, field, "list at least one subnet");
        }
        list.into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, s)| self.cidr(loc, &format!("{field}[{i}]"), s).map(|n| (i, n)))
            .collect()
    }

    fn connections(
        &mut self,
        raw: &[RawConnection],
        ike_names: &HashMap<&str, usize>,
        ipsec_names: &HashMap<&str, usize>,
    ) -> (Vec<Connection>, Vec<ConnectionNets>) {
        let (locations, _) = named(&mut self.p, raw, "connection", "connections", |x| {
            x.name.as_deref()
        });
        let mut peers: HashMap<IpAddr, usize> = HashMap::new();
        let mut connections = Vec::with_capacity(raw.len());
        let mut all_nets = Vec::with_capacity(raw.len());
        for (i, (c, loc)) in raw.iter().zip(&locations).enumerate() {
            let name = self.object_name(loc, c.name.as_ref());

            let peer = self
                .required(loc, "peer_address", c.peer_address.as_ref())
                .and_then(|s| self.unicast_ip(loc, "peer_address", s));
            if let Some(peer) = peer {
                if Some(peer) == self.public_ip {
                    self.p.error(
                        loc,
                        "peer_address",
                        format!("{peer} is the gateway's own public_ip; the peer is the other end"),
                    );
                } else if let Some(public) = self.public_ip
                    && public.is_ipv4() != peer.is_ipv4()
                {
                    self.p.error(
                        loc,
                        "peer_address",
                        format!(
                            "{peer} is {} but the gateway's public_ip {public} is {}; IKE runs between the two",
                            Ethertype::of(&peer),
                            Ethertype::of(&public)
                        ),
                    );
                }
                if let Some(&j) = peers.get(&peer) {
                    self.p.error(
                        loc,
                        "peer_address",
                        format!(
                            "{peer} is also the peer of {}; one connection per peer",
                            locations.get(j).map_or("", String::as_str)
                        ),
                    );
                } else {
                    peers.insert(peer, i);
                }
            }
            let peer_id = match (&c.peer_id, peer) {
                (Some(id), _) => id.clone(),
                (None, Some(peer)) => peer.to_string(),
                (None, None) => String::new(),
            };
            if c.peer_id.is_some() {
                self.ike_id(loc, "peer_id", &peer_id);
            }
            let local_id = match (&c.local_id, self.public_ip) {
                (Some(id), _) => id.clone(),
                (None, Some(ip)) => ip.to_string(),
                (None, None) => String::new(),
            };
            if c.local_id.is_some() {
                self.ike_id(loc, "local_id", &local_id);
            }

            let errors_before_subnets = self.p.error_count();
            let local = self.subnet_list(loc, "local_subnets", c.local_subnets.as_ref());
            let remote = self.subnet_list(loc, "remote_subnets", c.remote_subnets.as_ref());
            let subnets_ok = self.p.error_count() == errors_before_subnets;

            let ike_policy = self
                .required(loc, "ike_policy", c.ike_policy.as_ref())
                .and_then(|n| self.reference(loc, "ike_policy", n, ike_names, "IKE policy"));
            let ipsec_policy = self
                .required(loc, "ipsec_policy", c.ipsec_policy.as_ref())
                .and_then(|n| self.reference(loc, "ipsec_policy", n, ipsec_names, "IPsec policy"));

            let psk_file = match self.required(loc, "psk_file", c.psk_file.as_ref()) {
                None => PathBuf::new(),
                Some(text) if text.is_empty() => {
                    self.p.error(loc, "psk_file", "must be the path of a file");
                    PathBuf::new()
                }
                Some(text) => {
                    let path = self.resolve_path(text);
                    // The key is read and dropped at once: only its checks matter here.
                    if let Err(e) = read_psk(&path) {
                        self.p.error(loc, "psk_file", e.to_string());
                    }
                    path
                }
            };

            let initiator = self.keyword(
                loc,
                "initiator",
                c.initiator.as_deref(),
                Initiator::BiDirectional,
            );

            // The family of the first subnet that parsed decides the MTU bounds
            // (IPv6 links must carry 1280 bytes, RFC 8200); mixed families
            // are reported across objects.
            let v6 = local
                .first()
                .or(remote.first())
                .is_some_and(|(_, n)| n.addr().is_ipv6());
            let (mtu_min, family) = if v6 { (1280, "IPv6") } else { (68, "IPv4") };
            let mtu = match c.mtu {
                None => 1400,
                Some(m) if (mtu_min..=9000).contains(&m) => m,
                Some(m) => {
                    self.p.error(
                        loc,
                        "mtu",
                        format!("{m} is out of range for an {family} connection ({mtu_min} to 9000 bytes)"),
                    );
                    1400
                }
            };

            let dpd = self.dpd(loc, c.dpd.as_ref());

            all_nets.push(ConnectionNets {
                location: loc.clone(),
                local: local.clone(),
                remote: remote.clone(),
                subnets_ok,
            });
            connections.push(Connection {
                name,
                peer_address: peer.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                peer_id,
                local_id,
                local_subnets: local.into_iter().map(|(_, n)| n).collect(),
                remote_subnets: remote.into_iter().map(|(_, n)| n).collect(),
                ike_policy: ike_policy.unwrap_or(0),
                ipsec_policy: ipsec_policy.unwrap_or(0),
                psk_file,
                initiator,
                mtu: u16::try_from(mtu).unwrap_or(1400),
                dpd,
            });
        }
        (connections, all_nets)
    }

    fn reference(
        &mut self,
        loc: &str,
        field: &str,
        name: &str,
        names: &HashMap<&str, usize>,
        what: &str,
    ) -> Option<usize> {
        let found = names.get(name).copied();
        if found.is_none() {
            self.p
                .error(loc, field, format!("no {what} is named {}", quote(name)));
        }
        found
    }

    fn dpd(&mut self, loc: &str, raw: Option<&RawDpd>) -> Dpd {
        let default = RawDpd::default();
        let d = raw.unwrap_or(&default);
        let action = self.keyword(loc, "dpd.action", d.action.as_deref(), DpdAction::Hold);
        let before = self.p.error_count();
        let interval = self.int(loc, "dpd.interval", d.interval, 30, 1..=3600, "seconds");
        let timeout = self.int(loc, "dpd.timeout", d.timeout, 120, 2..=86_400, "seconds");
        if self.p.error_count() == before && timeout <= interval {
            self.p.error(
                loc,
                "dpd.timeout",
                format!("{timeout} must be greater than dpd.interval ({interval})"),
            );
        }
        Dpd {
            action,
            interval: Duration::from_secs(interval.unsigned_abs()),
            timeout: Duration::from_secs(timeout.unsigned_abs()),
        }
    }
}

fn subnet_label(subnets: &[Subnet], i: usize) -> String {
    match subnets.get(i) {
        Some(s) if !s.name.is_empty() => format!("subnet {}", quote(&s.name)),
        _ => format!("vpc.subnets[{i}]"),
    }
}

/// The VPC's subnets for a message: a few, then a count.
fn vpc_summary(nets: &[(IpNet, usize)]) -> String {
    const SHOWN: usize = 4;
    let mut parts: Vec<String> = nets
        .iter()
        .take(SHOWN)
        .map(|(n, _)| n.to_string())
        .collect();
    if nets.len() > SHOWN {
        parts.push(format!("{} more", nets.len() - SHOWN));
    }
    if parts.is_empty() {
        "the VPC has no valid subnet".into()
    } else {
        format!("VPC subnets: {}", parts.join(", "))
    }
}
