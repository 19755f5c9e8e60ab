//! What a live run measures: modes, flow sets, repetitions and durations.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::Serialize;

/// One way of forwarding through the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Generator calibration: XDP_DROP at the gateway's ingress (what the
    /// generator offers; nothing is forwarded).
    Gen,
    /// Kernel IPv4 forwarding, XDP_PASS at the gateway's ingress.
    Kernel,
    /// Kernel forwarding plus nftables masquerade on the egress side.
    NftMasq,
    /// Kernel forwarding plus nftables DNAT round-robin (numgen) to three
    /// backends, and masquerade.
    NftDnat,
    /// The trivial XDP forwarder (MAC rewrite, TTL, bpf_redirect): the limit.
    Limit,
    /// Kawaii run by `kowabungad`: SNAT to the VIP.
    Kawaii,
    /// Konvey run by `kowabungad`: full NAT round-robin to three backends.
    Konvey,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 7] = [
        Mode::Gen,
        Mode::Kernel,
        Mode::NftMasq,
        Mode::NftDnat,
        Mode::Limit,
        Mode::Kawaii,
        Mode::Konvey,
    ];

    /// Name on the command line, in the table and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Gen => "gen",
            Mode::Kernel => "kernel",
            Mode::NftMasq => "nft-masq",
            Mode::NftDnat => "nft-dnat",
            Mode::Limit => "limit",
            Mode::Kawaii => "kawaii",
            Mode::Konvey => "konvey",
        }
    }

    /// One line of description.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Gen => "generator calibration: XDP_DROP at gateway ingress",
            Mode::Kernel => "kernel forwarding (XDP_PASS at ingress)",
            Mode::NftMasq => "kernel + nftables masquerade",
            Mode::NftDnat => "kernel + nftables DNAT numgen(3) + masquerade",
            Mode::Limit => "trivial XDP redirect (MAC, TTL, bpf_redirect): the limit",
            Mode::Kawaii => "Kawaii SNAT (kowabungad)",
            Mode::Konvey => "Konvey full NAT round-robin(3) (kowabungad)",
        }
    }

    /// Load balancer modes: one destination (a VIP), many sources.
    pub fn balances(self) -> bool {
        matches!(self, Mode::NftDnat | Mode::Konvey)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match Mode::ALL.iter().find(|m| m.name() == s) {
            Some(m) => Ok(*m),
            None => bail!(
                "unknown mode {s:?}: one of {}",
                Mode::ALL.map(Mode::name).join(", ")
            ),
        }
    }
}

/// How many flows the generator cycles through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowSet {
    /// A fixed number of flows, a power of two in 1..=65536.
    Fixed(u32),
    /// Every frame a new 5-tuple: the conntrack insert path.
    AllNew,
}

impl FlowSet {
    /// The default sets: 64, 1,024, 65,536 and all-new.
    pub const DEFAULT: [FlowSet; 4] = [
        FlowSet::Fixed(64),
        FlowSet::Fixed(1024),
        FlowSet::Fixed(65536),
        FlowSet::AllNew,
    ];

    /// The generator's flow mask and the number of its bits that go into the
    /// source port (the rest go into an address).
    pub fn mask_and_port_bits(self) -> (u32, u32) {
        match self {
            FlowSet::Fixed(n) => (n - 1, n.trailing_zeros().min(10)),
            FlowSet::AllNew => (u32::MAX, 15),
        }
    }
}

impl fmt::Display for FlowSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowSet::Fixed(n) => write!(f, "{n}"),
            FlowSet::AllNew => f.write_str("new"),
        }
    }
}

impl Serialize for FlowSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for FlowSet {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        if s == "new" || s == "all-new" {
            return Ok(FlowSet::AllNew);
        }
        let n: u32 = s.replace([',', '_'], "").parse().map_err(|_| {
            anyhow::anyhow!("flow count {s:?}: a power of two in 1..=65536, or `new`")
        })?;
        if !n.is_power_of_two() || n > 65536 {
            bail!("flow count {n}: a power of two in 1..=65536, or `new`");
        }
        Ok(FlowSet::Fixed(n))
    }
}

/// A live run's settings (`kowabunga-live-bench --help`).
#[derive(Clone, Debug, Serialize)]
pub struct Options {
    /// Modes measured, interleaved (order rotated every repetition).
    pub modes: Vec<Mode>,
    /// Flow sets measured.
    pub flows: Vec<FlowSet>,
    /// Repetitions of every (flow set, mode).
    pub reps: u32,
    /// Seconds measured per repetition.
    pub secs: f64,
    /// Seconds of traffic before the measurement starts.
    pub warm: f64,
    /// Frames the generator hands to the client's uplink per loop pass.
    pub amp: u32,
    /// Seed frames circulating in the generator's loop.
    pub seeds: u32,
    /// Where results go (a directory per run is created inside).
    pub out: PathBuf,
    /// The `kowabungad` binary (modes kawaii and konvey).
    pub kowabungad: Option<PathBuf>,
    /// Leave the fixed flow sets unanswered (one-way, embryonic in
    /// conntrack) instead of answering each flow during the warm-up.
    pub one_way: bool,
    /// Print one line per measurement (the progress line is always printed).
    pub verbose: bool,
}

impl Options {
    /// Checks the values a run depends on; the error names the option.
    pub fn validate(&self) -> Result<()> {
        if self.modes.is_empty() {
            bail!("--modes: at least one mode");
        }
        if self.flows.is_empty() {
            bail!("--flows: at least one flow set");
        }
        if !(1..=20).contains(&self.reps) {
            bail!("--reps {}: 1..=20", self.reps);
        }
        if !(0.2..=60.0).contains(&self.secs) {
            bail!("--secs {}: 0.2..=60", self.secs);
        }
        if !(0.0..=10.0).contains(&self.warm) {
            bail!("--warm {}: 0..=10", self.warm);
        }
        if !(1..=8).contains(&self.amp) {
            bail!("--amp {}: 1..=8", self.amp);
        }
        if !(1..=250).contains(&self.seeds) {
            bail!("--seeds {}: 1..=250", self.seeds);
        }
        Ok(())
    }

    /// Measurements in the whole run.
    pub fn total(&self) -> usize {
        self.modes.len() * self.flows.len() * self.reps as usize
    }
}

/// Parses a comma-separated list (`kawaii,konvey`, `64,1024,new`).
pub fn parse_list<T: FromStr<Err = anyhow::Error>>(s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(T::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_sets_parse_and_split_into_port_and_address_bits() {
        let sets: Vec<FlowSet> = parse_list("64, 1024,65536,new").expect("parse");
        assert_eq!(sets, FlowSet::DEFAULT);
        assert_eq!(FlowSet::Fixed(64).mask_and_port_bits(), (63, 6));
        assert_eq!(FlowSet::Fixed(65536).mask_and_port_bits(), (65535, 10));
        assert_eq!(FlowSet::AllNew.mask_and_port_bits(), (u32::MAX, 15));
        assert!("1000".parse::<FlowSet>().is_err());
        assert!("131072".parse::<FlowSet>().is_err());
    }

    #[test]
    fn modes_parse_by_name() {
        let modes: Vec<Mode> = parse_list("kawaii,limit").expect("parse");
        assert_eq!(modes, [Mode::Kawaii, Mode::Limit]);
        let e = "kawai".parse::<Mode>().expect_err("unknown");
        assert!(e.to_string().contains("konvey"), "{e}");
    }
}
