//! The `node.vrrp` configuration: instances, their validation and the zone rule.
//!
//! ```yaml
//! vrrp:
//!   instances:
//!     - name: public-a            # optional, default "vrid-<vrid>"
//!       vrid: 51
//!       interface: ens4
//!       zone: eu-west-a           # the zone whose VIPs this instance carries
//!       virtual_ips: [203.0.113.10/32, 10.0.0.1/25]
//!       advert_interval_ms: 100   # default 1000; multiple of 10, 10..=40950
//!       # priority: 150          # default: 150 in the node's zone, 100 elsewhere
//!       # preempt: true
//!       # checksum: pseudo_header # or no_pseudo_header
//!       # garp_count: 3, garp_delay_ms: 100
//!       # priority_zero_handover: immediate  # or skew (see below)
//! ```
//!
//! The zone rule (as upstream Kowabunga): with `node.zone` known, an instance whose
//! `zone` is the node's zone gets priority 150 and every other one 100, unless
//! `priority` is set.
//!
//! ```
//! use kowabunga_control::vrrp::config::VrrpConfig;
//! let cfg: VrrpConfig = serde_norway::from_str(
//!     "instances: [{vrid: 1, interface: eth0, zone: a, virtual_ips: [10.0.0.1/24]}]",
//! ).unwrap();
//! let inst = cfg.resolve(Some("a")).unwrap();
//! assert_eq!(inst[0].priority, 150);
//! assert_eq!(cfg.resolve(Some("b")).unwrap()[0].priority, 100);
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::packet::{ChecksumMode, MAX_ADVERT_CS};

/// Priority of the zone-local instance under the zone rule.
pub const ZONE_LOCAL_PRIORITY: u8 = 150;
/// Priority of other zones' instances under the zone rule.
pub const ZONE_OTHER_PRIORITY: u8 = 100;
/// Default advert interval.
pub const DEFAULT_ADVERT_INTERVAL_MS: u32 = 1000;
/// Default gratuitous ARP rounds on takeover.
pub const DEFAULT_GARP_COUNT: u32 = 3;
/// Default delay between two rounds.
pub const DEFAULT_GARP_DELAY_MS: u32 = 100;

/// A configuration error: names the field and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field out of range or malformed.
    #[error("{field}: invalid value {value:?}: {why}")]
    Invalid {
        /// e.g. `node.vrrp.instances[0].vrid`.
        field: String,
        /// The offending value.
        value: String,
        /// What is expected.
        why: &'static str,
    },
    /// Two instances with the same VRID and family on one interface.
    #[error("{field}: vrid {vrid} is used twice on interface {interface}")]
    DuplicateVrid {
        /// The second instance.
        field: String,
        /// The VRID.
        vrid: u8,
        /// The interface.
        interface: String,
    },
}

impl ConfigError {
    /// The path of the offending field, e.g. `node.vrrp.instances[0].vrid`.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::Invalid { field, .. } | ConfigError::DuplicateVrid { field, .. } => field,
        }
    }

    /// What is wrong, with the value, without the field path.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Invalid { value, why, .. } => format!("{value:?} is invalid: {why}"),
            ConfigError::DuplicateVrid {
                vrid, interface, ..
            } => {
                format!("vrid {vrid} is used twice on interface {interface}")
            }
        }
    }
}

/// A virtual address with its prefix length: `10.0.0.1/25`, or `10.0.0.1` (a /32
/// or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualIp {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length on the interface.
    pub prefix: u8,
}

impl FromStr for VirtualIp {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| "not an IP address")?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().map_err(|_| "bad prefix length")?,
            None => max,
        };
        if prefix > max {
            return Err("prefix length too long");
        }
        Ok(VirtualIp { addr, prefix })
    }
}

impl fmt::Display for VirtualIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for VirtualIp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|why| serde::de::Error::custom(format!("{s:?}: {why}")))
    }
}

/// The `vrrp` node key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpConfig {
    /// Virtual routers run by this node.
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
}

/// One virtual router, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Name used in logs and status (default `vrid-<vrid>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Virtual router id, 1..=255 (the project's VRID, shared by all its zones' nodes).
    pub vrid: u16,
    /// Interface the adverts are sent on and the VIPs are added to.
    pub interface: String,
    /// The zone whose VIPs this instance carries (zone rule).
    #[serde(default)]
    pub zone: Option<String>,
    /// Explicit priority 1..=255; overrides the zone rule.
    #[serde(default)]
    pub priority: Option<u16>,
    /// Advert interval in milliseconds: a multiple of 10 from 10 to 40950.
    #[serde(default = "default_interval")]
    pub advert_interval_ms: u32,
    /// The virtual addresses (one family per instance).
    pub virtual_ips: Vec<VirtualIp>,
    /// Preemption (default true).
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// Checksum variant (default: with pseudo-header, as keepalived).
    #[serde(default)]
    pub checksum: ChecksumMode,
    /// Gratuitous ARP rounds on takeover (1..=100, default 3).
    #[serde(default = "default_garp_count")]
    pub garp_count: u32,
    /// Delay between rounds in ms (default 100, at most 10000).
    #[serde(default = "default_garp_delay")]
    pub garp_delay_ms: u32,
    /// What a backup does when the master stops gracefully (priority 0): take
    /// over at once (`immediate`, default: a graceful stop costs one packet
    /// time), or wait Skew_Time as RFC 9568 says (`skew`: 61 ms for priority
    /// 100 at 100 ms adverts). The skew only orders backups of *different*
    /// priorities; under the zone rule every backup of a VIP has 100, so waiting
    /// buys nothing there, and equal-priority backups settle by address either way.
    #[serde(default)]
    pub priority_zero_handover: Handover,
}

/// Backup behaviour on a priority-0 advert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handover {
    /// Wait Skew_Time (RFC 9568).
    Skew,
    /// Take over at once (the default).
    #[default]
    Immediate,
}

fn default_interval() -> u32 {
    DEFAULT_ADVERT_INTERVAL_MS
}
fn default_true() -> bool {
    true
}
fn default_garp_count() -> u32 {
    DEFAULT_GARP_COUNT
}
fn default_garp_delay() -> u32 {
    DEFAULT_GARP_DELAY_MS
}

/// A validated instance with its effective priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Name for logs and status.
    pub name: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Interface.
    pub interface: String,
    /// Effective priority (explicit, or from the zone rule).
    pub priority: u8,
    /// Advert interval in centiseconds.
    pub advert_interval_cs: u16,
    /// Virtual addresses.
    pub virtual_ips: Vec<VirtualIp>,
    /// Preemption.
    pub preempt: bool,
    /// Checksum variant.
    pub checksum: ChecksumMode,
    /// Gratuitous ARP rounds.
    pub garp_count: u32,
    /// Delay between rounds.
    pub garp_delay: Duration,
    /// Backup behaviour on a priority-0 advert.
    pub priority_zero_handover: Handover,
}

impl Instance {
    /// True for an IPv6 instance.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_ips.first().is_some_and(|v| v.addr.is_ipv6())
    }
}

impl VrrpConfig {
    /// Validates every instance and applies the zone rule with `node_zone`.
    /// Field names in errors start with `node.vrrp`.
    pub fn resolve(&self, node_zone: Option<&str>) -> Result<Vec<Instance>, ConfigError> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(self.instances.len());
        for (i, c) in self.instances.iter().enumerate() {
            let inst = c.resolve(&format!("node.vrrp.instances[{i}]"), node_zone)?;
            if !seen.insert((inst.interface.clone(), inst.vrid, inst.is_ipv6())) {
                return Err(ConfigError::DuplicateVrid {
                    field: format!("node.vrrp.instances[{i}].vrid"),
                    vrid: inst.vrid,
                    interface: inst.interface,
                });
            }
            out.push(inst);
        }
        Ok(out)
    }
}

fn invalid(field: String, value: impl fmt::Display, why: &'static str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        why,
    }
}

impl InstanceConfig {
    /// Validates this instance (`at` is its field path) and applies the zone rule.
    pub fn resolve(&self, at: &str, node_zone: Option<&str>) -> Result<Instance, ConfigError> {
        let vrid = u8::try_from(self.vrid)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| invalid(format!("{at}.vrid"), self.vrid, "1..=255"))?;
        if self.interface.is_empty()
            || self.interface.len() > 15
            || self.interface.contains(['/', ' ', '\0'])
        {
            return Err(invalid(
                format!("{at}.interface"),
                &self.interface,
                "an interface name of 1 to 15 bytes",
            ));
        }
        let priority = match self.priority {
            Some(p) => u8::try_from(p).ok().filter(|p| *p >= 1).ok_or_else(|| {
                invalid(
                    format!("{at}.priority"),
                    p,
                    "1..=255 (0 is reserved for shutdown)",
                )
            })?,
            None => match (node_zone, self.zone.as_deref()) {
                (Some(n), Some(z)) if n == z => ZONE_LOCAL_PRIORITY,
                _ => ZONE_OTHER_PRIORITY,
            },
        };
        let ms = self.advert_interval_ms;
        if !ms.is_multiple_of(10) || ms < 10 || ms / 10 > u32::from(MAX_ADVERT_CS) {
            return Err(invalid(
                format!("{at}.advert_interval_ms"),
                ms,
                "a multiple of 10 from 10 to 40950",
            ));
        }
        let advert_interval_cs = u16::try_from(ms / 10)
            .map_err(|_| invalid(format!("{at}.advert_interval_ms"), ms, "too large"))?;
        if self.virtual_ips.is_empty() || self.virtual_ips.len() > 255 {
            return Err(invalid(
                format!("{at}.virtual_ips"),
                self.virtual_ips.len(),
                "1 to 255 addresses",
            ));
        }
        let v6 = self.virtual_ips[0].addr.is_ipv6();
        let mut uniq = BTreeSet::new();
        for (j, v) in self.virtual_ips.iter().enumerate() {
            let field = format!("{at}.virtual_ips[{j}]");
            if v.addr.is_ipv6() != v6 {
                return Err(invalid(field, v, "one address family per instance"));
            }
            if v.addr.is_unspecified() || v.addr.is_multicast() || v.addr.is_loopback() {
                return Err(invalid(field, v, "a unicast address"));
            }
            if !uniq.insert(v.addr) {
                return Err(invalid(field, v, "listed twice"));
            }
        }
        if v6 && self.checksum == ChecksumMode::NoPseudoHeader {
            return Err(invalid(
                format!("{at}.checksum"),
                "no_pseudo_header",
                "IPv6 always uses the pseudo-header",
            ));
        }
        if self.garp_count == 0 || self.garp_count > 100 {
            return Err(invalid(
                format!("{at}.garp_count"),
                self.garp_count,
                "1..=100",
            ));
        }
        if self.garp_delay_ms > 10_000 {
            return Err(invalid(
                format!("{at}.garp_delay_ms"),
                self.garp_delay_ms,
                "0..=10000",
            ));
        }
        Ok(Instance {
            name: self.name.clone().unwrap_or_else(|| format!("vrid-{vrid}")),
            vrid,
            interface: self.interface.clone(),
            priority,
            advert_interval_cs,
            virtual_ips: self.virtual_ips.clone(),
            preempt: self.preempt,
            checksum: self.checksum,
            garp_count: self.garp_count,
            garp_delay: Duration::from_millis(u64::from(self.garp_delay_ms)),
            priority_zero_handover: self.priority_zero_handover,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> VrrpConfig {
        serde_norway::from_str(y).expect("yaml")
    }

    #[test]
    fn zone_rule_and_explicit_priority() {
        let cfg = parse(
            "instances:\n- {vrid: 1, interface: e0, zone: a, virtual_ips: [10.0.0.1]}\n- {vrid: 2, interface: e0, zone: b, virtual_ips: [10.0.0.2/24]}\n- {vrid: 3, interface: e0, zone: a, priority: 42, virtual_ips: [10.0.0.3]}\n- {vrid: 4, interface: e0, virtual_ips: ['2001:db8::1/64']}\n",
        );
        let r = cfg.resolve(Some("a")).expect("valid");
        assert_eq!(
            r.iter().map(|i| i.priority).collect::<Vec<_>>(),
            [150, 100, 42, 100]
        );
        assert_eq!(r[0].virtual_ips[0].prefix, 32);
        assert_eq!(r[1].virtual_ips[0].prefix, 24);
        assert_eq!(r[0].advert_interval_cs, 100);
        assert!(r[0].preempt);
        assert!(r[3].is_ipv6());
        let r = cfg.resolve(None).expect("valid");
        assert_eq!(
            r.iter().map(|i| i.priority).collect::<Vec<_>>(),
            [100, 100, 42, 100]
        );
    }

    #[test]
    fn errors_name_field_and_value() {
        let bad = [
            (
                "{vrid: 0, interface: e0, virtual_ips: [10.0.0.1]}",
                "instances[0].vrid",
            ),
            (
                "{vrid: 256, interface: e0, virtual_ips: [10.0.0.1]}",
                "instances[0].vrid",
            ),
            (
                "{vrid: 1, interface: e0, priority: 0, virtual_ips: [10.0.0.1]}",
                "priority",
            ),
            (
                "{vrid: 1, interface: e0, advert_interval_ms: 15, virtual_ips: [10.0.0.1]}",
                "advert_interval_ms",
            ),
            (
                "{vrid: 1, interface: e0, advert_interval_ms: 0, virtual_ips: [10.0.0.1]}",
                "advert_interval_ms",
            ),
            (
                "{vrid: 1, interface: e0, advert_interval_ms: 40960, virtual_ips: [10.0.0.1]}",
                "advert_interval_ms",
            ),
            ("{vrid: 1, interface: e0, virtual_ips: []}", "virtual_ips"),
            (
                "{vrid: 1, interface: e0, virtual_ips: [10.0.0.1, '2001:db8::1']}",
                "virtual_ips[1]",
            ),
            (
                "{vrid: 1, interface: e0, virtual_ips: [10.0.0.1, 10.0.0.1/24]}",
                "virtual_ips[1]",
            ),
            (
                "{vrid: 1, interface: e0, virtual_ips: [224.0.0.18]}",
                "virtual_ips[0]",
            ),
            (
                "{vrid: 1, interface: '', virtual_ips: [10.0.0.1]}",
                "interface",
            ),
            (
                "{vrid: 1, interface: e0, garp_count: 0, virtual_ips: [10.0.0.1]}",
                "garp_count",
            ),
        ];
        for (y, field) in bad {
            let err = parse(&format!("instances: [{y}]"))
                .resolve(Some("a"))
                .expect_err(y);
            assert!(err.to_string().contains(field), "{y}: {err}");
        }
        let dup = parse("instances: [{vrid: 1, interface: e0, virtual_ips: [10.0.0.1]}, {vrid: 1, interface: e0, virtual_ips: [10.0.0.2]}]");
        assert!(matches!(
            dup.resolve(None),
            Err(ConfigError::DuplicateVrid { .. })
        ));
        assert!(serde_norway::from_str::<VrrpConfig>(
            "instances: [{vrid: 1, interface: e0, virtual_ips: [10.0.0.1/33]}]"
        )
        .is_err());
        assert!(serde_norway::from_str::<VrrpConfig>(
            "instances: [{vrid: 1, interface: e0, virtual_ips: [x]}]"
        )
        .is_err());
        assert!(serde_norway::from_str::<VrrpConfig>(
            "instances: [{vrid: 1, interface: e0, virtual_ips: [10.0.0.1], bogus: 1}]"
        )
        .is_err());
    }
}
