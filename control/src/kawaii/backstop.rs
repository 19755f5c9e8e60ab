//! The kernel backstop: an nftables `forward` chain that Kawaii's XDP fast
//! path never meets (redirected frames skip the kernel's forward path) and
//! that closes the doors the kernel would otherwise open.
//!
//! * **Running** (installed at every start and reload, kept when the daemon
//!   exits or crashes): nothing forwarded out of the public interface
//!   without a VIP as source, unless it goes to an IPsec remote subnet
//!   (XFRM encapsulates it); no IPv6 forwarded to or from the public side.
//!   Packets the XDP program hands to the kernel already translated (next
//!   hop not yet resolved) have a VIP as source and pass.
//! * **Closed** (installed by `--detach` before the programs go): nothing
//!   is forwarded between the public interface and the private or peering
//!   ones, in either direction, whatever `ip_forward` says.
//!
//! The chain lives in its own table, named after the pin directory, so
//! several daemons in one namespace do not step on each other; a new
//! ruleset replaces the table in one nftables transaction.

use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context as _;
use ipnet::Ipv4Net;

use crate::config::ValidConfig;

/// The backstop of one Kawaii node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backstop {
    table: String,
    public: String,
    inner: Vec<String>,
    vips: Vec<Ipv4Addr>,
    ipsec: Vec<Ipv4Net>,
}

impl Backstop {
    /// The backstop of `config`; `None` without a `kawaii` section.
    pub fn of(config: &ValidConfig) -> Option<Self> {
        let k = config.kawaii.as_ref()?;
        let ifaces = &config.node.interfaces;
        let public = ifaces.public.clone()?;
        let mut inner: Vec<String> = ifaces.private.iter().cloned().collect();
        inner.extend(ifaces.peerings.iter().cloned());
        Some(Backstop {
            table: table_name(&config.node.bpffs),
            public,
            inner,
            vips: k.public_ips.clone(),
            ipsec: k.ipsec.iter().map(|c| c.remote_subnet).collect(),
        })
    }

    /// The nftables table (family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The ruleset while Kawaii runs (see the module docs).
    pub fn running(&self) -> String {
        let vips = set(self.vips.iter().map(ToString::to_string));
        let mut egress = format!(
            "oifname \"{}\" meta nfproto ipv4 ip saddr != {vips}",
            self.public
        );
        if !self.ipsec.is_empty() {
            let nets = set(self.ipsec.iter().map(ToString::to_string));
            egress.push_str(&format!(" ip daddr != {nets}"));
        }
        let mut rules = vec![format!(
            "{egress} counter drop comment \"kowabunga: untranslated egress\""
        )];
        if !self.ipsec.is_empty() {
            // an IPsec remote subnet leaves by the public interface only
            // inside its tunnel (XFRM); without an SA, never in clear
            let nets = set(self.ipsec.iter().map(ToString::to_string));
            rules.push(format!(
                "oifname \"{}\" ip daddr {nets} rt ipsec missing counter drop comment \"kowabunga: IPsec subnet outside its tunnel\"",
                self.public
            ));
        }
        rules.push(self.no_ipv6());
        rules.push(self.no_ipv6_in());
        self.script(&rules)
    }

    /// The ruleset once the dataplane is gone (`--detach`).
    pub fn closed(&self) -> String {
        let public = set([format!("\"{}\"", self.public)].into_iter());
        let inner = set(self.inner.iter().map(|i| format!("\"{i}\"")));
        self.script(&[
            format!(
                "iifname {public} oifname {inner} counter drop comment \"kowabunga: detached\""
            ),
            format!(
                "iifname {inner} oifname {public} counter drop comment \"kowabunga: detached\""
            ),
            self.no_ipv6(),
            self.no_ipv6_in(),
        ])
    }

    fn no_ipv6(&self) -> String {
        format!(
            "oifname \"{}\" meta nfproto ipv6 counter drop comment \"kowabunga: no IPv6 across the gateway\"",
            self.public
        )
    }

    fn no_ipv6_in(&self) -> String {
        format!(
            "iifname \"{}\" meta nfproto ipv6 counter drop comment \"kowabunga: no IPv6 across the gateway\"",
            self.public
        )
    }

    /// One transaction: create the table if missing, delete it, define it.
    fn script(&self, rules: &[String]) -> String {
        let t = &self.table;
        let mut out = format!(
            "table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n  chain forward {{\n    type filter hook forward priority filter - 10; policy accept;\n"
        );
        for r in rules {
            out.push_str("    ");
            out.push_str(r);
            out.push('\n');
        }
        out.push_str("  }\n}\n");
        out
    }
}

/// `{ a, b }`: an anonymous nftables set.
fn set(items: impl Iterator<Item = String>) -> String {
    format!("{{ {} }}", items.collect::<Vec<_>>().join(", "))
}

/// `kowabunga_<16 hex digits>`: a table name derived from the pin
/// directory (stable across runs, distinct per daemon).
pub fn table_name(pin_dir: &Path) -> String {
    // FNV-1a: stable across Rust versions, unlike DefaultHasher.
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    pin_dir.hash(&mut h);
    format!("kowabunga_{:016x}", h.finish())
}

struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Loads `ruleset` with `nft -f -` (in the daemon's network namespace).
///
/// # Errors
/// `nft` is missing or refused the ruleset (its message, one line).
pub fn install(ruleset: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("kawaii: the nftables backstop needs `nft` (apt-get install nftables)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(ruleset.as_bytes())
        .context("writing the ruleset to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line: Vec<&str> = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        anyhow::bail!("kawaii: nft refused the backstop: {}", line.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    const YAML: &str = r#"
node: {zone: a, interfaces: {public: pub0, private: priv0, peerings: [peer0]}, bpffs: /sys/fs/bpf/kw-test}
kawaii:
  public_ips: [203.0.113.10, 203.0.113.11]
  private_subnet: 10.0.0.0/25
  ipsec_connections:
    - {name: office, remote_ip: 5.6.7.8, remote_subnet: 172.16.1.0/24, pre_shared_key: k,
       phase1_dh_group_number: 14, phase1_integrity_algorithm: SHA512, phase1_encryption_algorithm: AES256,
       phase2_dh_group_number: 14, phase2_integrity_algorithm: SHA512, phase2_encryption_algorithm: AES256}
"#;

    #[test]
    fn running_and_closed_rulesets() {
        let b = Backstop::of(&parse_str(YAML).expect("valid")).expect("kawaii");
        let t = table_name(Path::new("/sys/fs/bpf/kw-test"));
        assert_eq!(b.table(), t);
        assert!(t.starts_with("kowabunga_") && t.len() == 26, "{t}");
        assert_ne!(t, table_name(Path::new("/sys/fs/bpf/kw-test2")));
        let running = b.running();
        assert!(running.starts_with(&format!(
            "table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n"
        )));
        assert!(running.contains(
            "oifname \"pub0\" meta nfproto ipv4 ip saddr != { 203.0.113.10, 203.0.113.11 } ip daddr != { 172.16.1.0/24 } counter drop"
        ), "{running}");
        assert!(running.contains("oifname \"pub0\" meta nfproto ipv6 counter drop"));
        assert!(running.contains("iifname \"pub0\" meta nfproto ipv6 counter drop"));
        let closed = b.closed();
        assert!(
            closed.contains("iifname { \"pub0\" } oifname { \"priv0\", \"peer0\" } counter drop"),
            "{closed}"
        );
        assert!(
            closed.contains("iifname { \"priv0\", \"peer0\" } oifname { \"pub0\" } counter drop")
        );
        // Without IPsec there is no empty set in the rule.
        let plain = parse_str(
            "node: {zone: a, interfaces: {public: p, private: q}}\nkawaii: {public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}\n",
        )
        .expect("valid");
        let b = Backstop::of(&plain).expect("kawaii");
        assert!(!b.running().contains("daddr"), "{}", b.running());
        assert_eq!(table_name(Path::new("/sys/fs/bpf/kowabunga")), b.table());
    }
}
