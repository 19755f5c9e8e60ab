//! Putting the gateway in one mode: its own XDP program, nftables rules, or
//! `kowabungad` with a generated configuration, and back out of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use kowabunga_dataplane::conntrack::CtTable;
use kowabunga_tests::lab::counters::Counters;
use kowabunga_tests::lab::daemon::Daemon;
use kowabunga_tests::lab::netns::checked;

use super::options::Mode;
use super::progs::GwProgs;
use super::report::ConntrackEntries;
use super::topology::{
    client_subnet, destinations, Topology, BACKENDS, DPORT, GW_OUT, KAWAII_VIP, KONVEY_VIP, NFT_VIP,
};
use super::verify::{Destination, Expect, Source};

/// What a mode must deliver at the sink; `None` for the generator
/// calibration, which forwards nothing.
pub fn expect(mode: Mode) -> Option<Expect> {
    let kept_dst = Destination::Kept(destinations());
    let backends = Destination::Backends(BACKENDS.to_vec());
    Some(match mode {
        Mode::Gen => return None,
        Mode::Kernel | Mode::Limit => Expect {
            source: Source::Kept(client_subnet()),
            destination: kept_dst,
        },
        Mode::NftMasq => Expect {
            source: Source::Translated(GW_OUT),
            destination: kept_dst,
        },
        Mode::NftDnat => Expect {
            source: Source::Translated(GW_OUT),
            destination: backends,
        },
        Mode::Kawaii => Expect {
            source: Source::Translated(KAWAII_VIP),
            destination: kept_dst,
        },
        Mode::Konvey => Expect {
            source: Source::Translated(GW_OUT),
            destination: backends,
        },
    })
}

/// The configuration `kowabungad` runs with in mode kawaii or konvey.
pub fn daemon_config(mode: Mode, topo: &Topology, pin: &Path) -> Option<String> {
    let pin = pin.display();
    match mode {
        Mode::Kawaii => Some(format!(
            "# live bench: Kawaii SNAT of {client} to {KAWAII_VIP}\n\
             node:\n  zone: bench\n  interfaces: {{public: {g1}, private: {g0}}}\n  bpffs: {pin}\n\
             kawaii:\n  public_ips: [{KAWAII_VIP}]\n  private_subnet: {client}\n\
             \x20 firewall:\n    egress_policy: accept\n",
            client = client_subnet(),
            g0 = topo.g0,
            g1 = topo.g1,
        )),
        Mode::Konvey => Some(format!(
            "# live bench: Konvey udp {KONVEY_VIP}:{DPORT} -> backends, full NAT from {GW_OUT}\n\
             node:\n  zone: bench\n  interfaces: {{konvey: [{g0}, {g1}]}}\n  bpffs: {pin}\n\
             \x20 konvey:\n    source_ip: {GW_OUT}\n    nat_port_range: \"1024-32767\"\n\
             \x20   health: {{interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 2, udp_probe: {{send: \"\", expect: null}}}}\n\
             konvey:\n  vip: {KONVEY_VIP}\n  endpoints:\n\
             \x20 - {{name: discard, protocol: udp, port: {DPORT}, backend_port: {DPORT}, backend_ips: [{b}]}}\n",
            g0 = topo.g0,
            g1 = topo.g1,
            b = BACKENDS.map(|a| a.to_string()).join(", "),
        )),
        _ => None,
    }
}

/// The nftables ruleset of a mode (empty for the others).
pub fn nft_rules(mode: Mode, topo: &Topology) -> Option<String> {
    let masq = format!(
        "\tchain post {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\toifname \"{}\" masquerade\n\t}}\n",
        topo.g1
    );
    match mode {
        Mode::NftMasq => Some(format!("table ip kwbench {{\n{masq}}}\n")),
        Mode::NftDnat => Some(format!(
            "table ip kwbench {{\n\tchain pre {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tip daddr {NFT_VIP} udp dport {DPORT} dnat to numgen inc mod 3 map {{ 0 : {}, 1 : {}, 2 : {} }}\n\
             \t}}\n{masq}}}\n",
            BACKENDS[0], BACKENDS[1], BACKENDS[2]
        )),
        _ => None,
    }
}

struct Running {
    daemon: Daemon,
    config: PathBuf,
    pin: PathBuf,
    netns: String,
}

/// The gateway namespace and what runs in it.
pub struct Gateway {
    progs: GwProgs,
    daemon: Option<Running>,
    kowabungad: Option<PathBuf>,
    dir: PathBuf,
}

impl Gateway {
    /// The gateway's baselines loaded; `dir` holds generated files.
    pub fn new(topo: &Topology, kowabungad: Option<PathBuf>, dir: &Path) -> Result<Self> {
        Ok(Gateway {
            progs: GwProgs::load(topo)?,
            daemon: None,
            kowabungad,
            dir: dir.to_owned(),
        })
    }

    /// Leaves the current mode and enters `mode`; pins the NAPI threads
    /// and returns their ids (gateway, sink).
    pub fn set(&mut self, topo: &Topology, mode: Mode) -> Result<[i32; 2]> {
        self.clear(topo)?;
        match mode {
            Mode::Gen => self.progs.attach(topo, "xdp_drop")?,
            Mode::Kernel => self.progs.attach(topo, "xdp_pass")?,
            Mode::NftMasq | Mode::NftDnat => {
                self.progs.attach(topo, "xdp_pass")?;
                let file = self.dir.join(format!("{mode}.nft"));
                std::fs::write(&file, nft_rules(mode, topo).unwrap_or_default())?;
                topo.gw
                    .run_ok("nft", &["-f", &file.to_string_lossy()])
                    .with_context(|| format!("loading {}", file.display()))?;
            }
            Mode::Limit => self.progs.attach(topo, "xdp_fwd")?,
            Mode::Kawaii | Mode::Konvey => self.start_daemon(topo, mode)?,
        }
        topo.pin_napi()
    }

    /// No program, no rules, no daemon on the gateway.
    pub fn clear(&mut self, topo: &Topology) -> Result<()> {
        self.stop_daemon(topo)?;
        self.progs.detach()?;
        topo.gw.run_ok("nft", &["flush", "ruleset"])
    }

    fn start_daemon(&mut self, topo: &Topology, mode: Mode) -> Result<()> {
        let Some(bin) = self.kowabungad.clone() else {
            bail!("mode {mode} needs kowabungad (--kowabungad PATH, or build it: cargo build --release -p kowabunga-control)");
        };
        let pin = PathBuf::from(format!("/sys/fs/bpf/kwbench-{}-{mode}", std::process::id()));
        let config = self.dir.join(format!("{mode}.yaml"));
        std::fs::write(&config, daemon_config(mode, topo, &pin).unwrap_or_default())?;
        let daemon = Daemon::start(&topo.gw, &bin, &config)
            .with_context(|| format!("starting kowabungad for mode {mode}"))?;
        self.daemon = Some(Running {
            daemon,
            config,
            pin,
            netns: topo.gw.name().to_owned(),
        });
        Ok(())
    }

    /// Frames the generator calibration dropped at the gateway's ingress.
    pub fn ingress_drops(&self) -> Result<u64> {
        self.progs.drops()
    }

    /// The running daemon's counters (summed over CPUs), non-zero ones.
    pub fn daemon_counters(&self) -> Result<Option<BTreeMap<String, u64>>> {
        let Some(r) = &self.daemon else {
            return Ok(None);
        };
        let Some(dir) = find_stats(&r.pin) else {
            bail!("no kw_stats under {}", r.pin.display());
        };
        let c = Counters::read(&dir)?;
        Ok(Some(
            c.0.iter()
                .filter(|c| c.packets > 0)
                .map(|c| (c.name.to_owned(), c.packets))
                .collect(),
        ))
    }

    /// Entries in `kowabungad`'s conntrack tables (its pinned `kw_ct4` and
    /// `kw_ct4_new`); `None` when no daemon runs.
    pub fn conntrack_entries(&self) -> Result<Option<ConntrackEntries>> {
        let Some(r) = &self.daemon else {
            return Ok(None);
        };
        let Some(dir) = find_stats(&r.pin) else {
            bail!("no kw_stats under {}", r.pin.display());
        };
        let count = |name: &'static str| -> Result<u64> {
            let t = CtTable::from_pin(name, &dir.join(name))?;
            Ok(t.entries()?.len() as u64)
        };
        Ok(Some(ConntrackEntries {
            confirmed: count("kw_ct4")?,
            embryonic: count("kw_ct4_new")?,
        }))
    }

    /// Stops the daemon (SIGTERM), then `kowabungad --detach` removes its
    /// links and pins.
    fn stop_daemon(&mut self, topo: &Topology) -> Result<()> {
        let Some(r) = self.daemon.take() else {
            return Ok(());
        };
        drop(r.daemon);
        if let Some(bin) = &self.kowabungad {
            let mut cmd = Command::new(bin);
            cmd.arg("--config").arg(&r.config).arg("--detach");
            topo.gw.enter_net_only(&mut cmd)?;
            checked(&mut cmd).context("kowabungad --detach")?;
        }
        if r.pin.exists() {
            std::fs::remove_dir_all(&r.pin)
                .with_context(|| format!("removing {}", r.pin.display()))?;
        }
        Ok(())
    }
}

impl Drop for Gateway {
    /// A run cut short by an error: stop the daemon and remove its links and
    /// pins (`kowabungad --detach` in the gateway's network namespace, with
    /// `nsenter`: `ip netns exec` would hide the bpffs), so no pinned map
    /// outlives the run. The namespaces are deleted after this.
    fn drop(&mut self) {
        let Some(r) = self.daemon.take() else {
            return;
        };
        drop(r.daemon);
        if let Some(bin) = &self.kowabungad {
            let done = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", r.netns))
                .arg(bin)
                .arg("--config")
                .arg(&r.config)
                .arg("--detach")
                .output();
            if !done.is_ok_and(|o| o.status.success()) {
                eprintln!(
                    "live bench: kowabungad --detach failed for {}",
                    r.config.display()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&r.pin);
    }
}

/// The directory holding `kw_stats` below `pin` (depth 2 at most).
fn find_stats(pin: &Path) -> Option<PathBuf> {
    if pin.join("kw_stats").exists() {
        return Some(pin.to_owned());
    }
    std::fs::read_dir(pin)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("kw_stats").exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forwarding_mode_has_an_expectation_and_nat_modes_translate() {
        assert!(expect(Mode::Gen).is_none());
        for m in Mode::ALL.into_iter().filter(|m| *m != Mode::Gen) {
            let e = expect(m).expect("forwarding mode");
            let translates = matches!(e.source, Source::Translated(_));
            assert_eq!(translates, !matches!(m, Mode::Kernel | Mode::Limit), "{m}");
            assert_eq!(
                matches!(e.destination, Destination::Backends(_)),
                m.balances(),
                "{m}"
            );
        }
    }
}
