//! The tunnels' own firewalls, as one nftables table in the `forward` hook.
//!
//! Decrypted traffic never meets an XDP program kowabungad owns (XFRM
//! decapsulates after XDP; strongSwan's userspace ESP hands it to a TUN
//! device), so a tunnel's `firewall` is enforced where every such packet
//! passes: the kernel's forward path, with its conntrack for replies.
//! Flows from the project subnet into a tunnel are Kawaii's egress (the
//! gate); flows out of a tunnel with a `firewall` are accepted only as its
//! `ingress` rules say and counted when dropped. A tunnel without
//! `firewall` is not filtered (upstream's behaviour).

use anyhow::Context as _;
use ipnet::Ipv4Net;

use super::config::{Ipsec, TunnelRule};
use crate::config::fields::Protocol;
use crate::config::model::Policy;

/// The firewall table of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelFirewalls {
    table: String,
    project: Ipv4Net,
    tunnels: Vec<Ipsec>,
}

fn rule_match(net_dir: &str, r: &TunnelRule) -> String {
    let proto = match r.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    };
    let mut m = format!("ip {net_dir} {} meta l4proto {proto}", r.net);
    if !r.ports.is_empty() {
        let ports: Vec<String> = r
            .ports
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        m.push_str(&format!(" th dport {{ {} }}", ports.join(", ")));
    }
    m
}

impl TunnelFirewalls {
    /// The firewalls of `tunnels` in front of `project`, in table `table`.
    pub fn new(table: String, project: Ipv4Net, tunnels: &[Ipsec]) -> Self {
        TunnelFirewalls {
            table,
            project,
            tunnels: tunnels.to_vec(),
        }
    }

    /// The nftables table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The whole table, as one `nft -f` transaction.
    pub fn script(&self) -> String {
        let t = &self.table;
        let mut base = vec!["ct state established,related accept".to_owned()];
        let mut chains = String::new();
        for (i, c) in self.tunnels.iter().enumerate() {
            let Some(fw) = &c.firewall else { continue };
            let name = c.charon_name.as_str();
            base.push(format!(
                "ip saddr {} ip daddr {} jump in_{i}",
                c.remote_subnet, self.project
            ));
            chains.push_str(&format!("  chain in_{i} {{\n"));
            for r in &fw.ingress {
                chains.push_str(&format!("    {} accept\n", rule_match("saddr", r)));
            }
            chains.push_str(&format!(
                "    counter drop comment \"kowabunga: {name} firewall ingress\"\n  }}\n"
            ));
            if fw.egress_policy == Policy::Drop || !fw.egress.is_empty() {
                base.push(format!(
                    "ip saddr {} ip daddr {} jump out_{i}",
                    self.project, c.remote_subnet
                ));
                let (verdict, last) = match fw.egress_policy {
                    Policy::Accept => ("counter drop", "accept"),
                    Policy::Drop => ("accept", "counter drop"),
                };
                chains.push_str(&format!("  chain out_{i} {{\n"));
                for r in &fw.egress {
                    chains.push_str(&format!("    {} {verdict}\n", rule_match("daddr", r)));
                }
                chains.push_str(&format!(
                    "    {last} comment \"kowabunga: {name} firewall egress\"\n  }}\n"
                ));
            }
        }
        let mut out = format!(
            "table inet {t}\ndelete table inet {t}\ntable inet {t} {{\n  chain forward {{\n    type filter hook forward priority filter - 5; policy accept;\n"
        );
        for r in base {
            out.push_str(&format!("    {r}\n"));
        }
        out.push_str("  }\n");
        // the node itself is no service of the remote offices: new flows
        // from any tunnel to its own addresses are dropped (replies to the
        // node's own flows pass)
        if !self.tunnels.is_empty() {
            let nets: Vec<String> = self
                .tunnels
                .iter()
                .map(|c| c.remote_subnet.to_string())
                .collect();
            out.push_str(&format!(
                "  chain input {{\n    type filter hook input priority filter - 5; policy accept;\n    ip saddr {{ {} }} ct state new counter drop comment \"kowabunga: IPsec tunnels to the node itself\"\n  }}\n",
                nets.join(", ")
            ));
        }
        out.push_str(&chains);
        out.push_str("}\n");
        out
    }

    /// Installs the table (one transaction: all or nothing).
    ///
    /// # Errors
    /// `nft` missing or refusing the script.
    pub fn apply(&self) -> anyhow::Result<()> {
        nft(&self.script())
    }

    /// Removes the table, if present.
    ///
    /// # Errors
    /// `nft` missing or failing.
    pub fn remove(table: &str) -> anyhow::Result<()> {
        nft(&format!("table inet {table}\ndelete table inet {table}\n"))
    }
}

/// One `nft -f -` transaction, with the backstop's loader (its errors name
/// `nft` and its one-line refusal).
fn nft(script: &str) -> anyhow::Result<()> {
    crate::kawaii::backstop::install(script).context("the IPsec tunnels' firewall")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn a_tunnel_with_a_firewall_gets_its_chains() {
        let yaml = r#"
node: {zone: a, interfaces: {public: p, private: q}}
kawaii:
  public_ips: [203.0.113.10]
  private_subnet: 10.0.0.0/24
  ipsec_connections:
    - name: ACME Office
      remote_peer: 5.6.7.8
      remote_subnet: 172.16.1.0/24
      pre_shared_key: k
      phase1_dh_group_number: 14
      phase1_integrity_algorithm: SHA512
      phase1_encryption_algorithm: AES256
      phase2_dh_group_number: 14
      phase2_integrity_algorithm: SHA512
      phase2_encryption_algorithm: AES256
      firewall:
        ingress:
          - {protocol: tcp, ports: "22,8000-8010"}
          - {protocol: icmp, source: 172.16.1.128/25}
    - name: open
      remote_ip: 5.6.7.9
      remote_subnet: 172.16.2.0/24
      pre_shared_key: k
      phase1_dh_group_number: 19
      phase1_integrity_algorithm: SHA256
      phase1_encryption_algorithm: AES128
      phase2_dh_group_number: 19
      phase2_integrity_algorithm: SHA256
      phase2_encryption_algorithm: AES128
"#;
        let config = parse_str(yaml).expect("valid");
        let k = config.kawaii.expect("kawaii");
        let fw = TunnelFirewalls::new("kw_t".to_owned(), k.private_subnet, &k.ipsec);
        let s = fw.script();
        assert!(
            s.contains("ip saddr 172.16.1.0/24 ip daddr 10.0.0.0/24 jump in_0"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 172.16.1.0/24 meta l4proto tcp th dport { 22, 8000-8010 } accept"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 172.16.1.128/25 meta l4proto icmp accept"),
            "{s}"
        );
        assert!(
            s.contains("counter drop comment \"kowabunga: kw-acme-office firewall ingress\""),
            "{s}"
        );
        // the unfiltered tunnel has no chain, and no egress chain without egress filtering
        assert!(!s.contains("ip saddr 172.16.2.0/24 ip daddr"), "{s}");
        // every tunnel, filtered or not, is kept off the node itself
        assert!(
            s.contains("ip saddr { 172.16.1.0/24, 172.16.2.0/24 } ct state new counter drop comment \"kowabunga: IPsec tunnels to the node itself\""),
            "{s}"
        );
        assert!(!s.contains("out_0"), "{s}");
        assert!(
            s.starts_with("table inet kw_t\ndelete table inet kw_t\n"),
            "{s}"
        );
    }
}
