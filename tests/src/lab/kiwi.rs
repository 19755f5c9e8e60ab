//! The Kiwi lab: a Kiwi node, a client in the project subnet and a stub
//! recursor for forwarded names.
//!
//! ```text
//!  [client] eth0 10.0.0.10/25 ── kw-cli 10.0.0.126/25 [kiwi] kw-rec 192.0.2.1/24 ── eth0 192.0.2.53/24 [rec]
//!                                  Kiwi listens on 10.0.0.126:53 and 192.0.2.1:53      stub recursor on :53
//! ```
//!
//! `kowabungad` runs in `kiwi` with a `kiwi` section only: zone `acme.local`
//! isolated to the project subnet `10.0.0.0/25` (so the recursor's
//! namespace is an outsider), an instance `acme-server`, a custom record
//! `ad` with three addresses and `big` with more addresses than fit in 512
//! bytes; everything else forwarded to the stub recursor
//! ([`super::dns`]: `*.example.test` answers [`super::dns::STUB_ADDRESS`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use kowabunga_control::config::model::{Kiwi, KiwiRecord, KiwiZone};

use super::daemon::Daemon;
use super::netns::{unique_prefix, Netns};
use super::topology::{ensure_bpffs, BPFFS};
use super::traffic::{Agent, Background};

/// Kiwi's address in the project subnet.
pub const KIWI_ADDR: &str = "10.0.0.126";
/// Kiwi's address on the recursor side.
pub const KIWI_REC_SIDE: &str = "192.0.2.1";
/// The client (also the instance `acme-server`).
pub const CLIENT_ADDR: &str = "10.0.0.10";
/// The stub recursor.
pub const RECURSOR_ADDR: &str = "192.0.2.53";
/// The project subnet (the zone's `allow_from`).
pub const PROJECT_SUBNET: &str = "10.0.0.0/25";
/// The project's domain.
pub const DOMAIN: &str = "acme.local";
/// The addresses of the custom record `ad`.
pub const AD_ADDRESSES: [&str; 3] = ["10.0.0.10", "10.0.0.11", "10.0.0.12"];
/// How many addresses `big` has: 60 A records, about 1,000 bytes.
pub const BIG_COUNT: usize = 60;
/// The bound on one forwarded query the lab configures, ms.
pub const FORWARD_TIMEOUT_MS: u64 = 1000;

/// The Kiwi lab's namespaces, configuration and daemon.
#[derive(Debug)]
pub struct KiwiLab {
    daemon: Option<Daemon>,
    /// The Kiwi node.
    pub kiwi: Netns,
    /// A client in the project subnet.
    pub client: Netns,
    /// The stub recursor's host (an outsider to the zone).
    pub recursor: Netns,
    section: Kiwi,
    prefix: String,
    pin_dir: PathBuf,
    dir: PathBuf,
}

/// The lab's `kiwi` section: both listen addresses, the stub recursor,
/// zone `acme.local` isolated to the project subnet.
pub fn default_section() -> Kiwi {
    let mut kiwi = Kiwi::new(
        vec![KIWI_ADDR.into(), KIWI_REC_SIDE.into()],
        vec![RECURSOR_ADDR.into()],
    );
    kiwi.forward_timeout_ms = FORWARD_TIMEOUT_MS;
    kiwi.zones.push(KiwiZone {
        domain: DOMAIN.into(),
        allow_from: vec![PROJECT_SUBNET.into()],
        records: vec![
            KiwiRecord {
                name: "acme-server".into(),
                addresses: vec![CLIENT_ADDR.into()],
            },
            KiwiRecord {
                name: "ad".into(),
                addresses: AD_ADDRESSES.map(String::from).to_vec(),
            },
            KiwiRecord {
                name: "big".into(),
                addresses: (1..=BIG_COUNT).map(|i| format!("10.0.1.{i}")).collect(),
            },
        ],
    });
    kiwi
}

impl KiwiLab {
    /// Builds the namespaces, veths and addresses, and writes the config
    /// ([`default_section`], the client at [`CLIENT_ADDR`]).
    pub fn new() -> Result<Self> {
        Self::with(default_section(), CLIENT_ADDR)
    }

    /// The same with `section` and the client at `client_addr` (in the
    /// project subnet).
    pub fn with(section: Kiwi, client_addr: &str) -> Result<Self> {
        let prefix = unique_prefix();
        ensure_bpffs()?;
        let dir = std::env::temp_dir().join(format!("{prefix}-kiwi"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let lab = KiwiLab {
            daemon: None,
            kiwi: Netns::new(&format!("{prefix}-kiwi"))?,
            client: Netns::new(&format!("{prefix}-cli"))?,
            recursor: Netns::new(&format!("{prefix}-rec"))?,
            section,
            pin_dir: Path::new(BPFFS).join(&prefix),
            prefix,
            dir,
        };
        let (k, c, r) = (&lab.kiwi, &lab.client, &lab.recursor);
        k.veth("kw-cli", c, "eth0")?;
        k.veth("kw-rec", r, "eth0")?;
        k.addr("kw-cli", &format!("{KIWI_ADDR}/25"))?;
        k.addr("kw-rec", &format!("{KIWI_REC_SIDE}/24"))?;
        c.addr("eth0", &format!("{client_addr}/25"))?;
        r.addr("eth0", &format!("{RECURSOR_ADDR}/24"))?;
        lab.write_config()?;
        Ok(lab)
    }

    /// The lab's name prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The generated configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("kowabungad.yaml")
    }

    /// The `kiwi` section the file holds (change it, then
    /// [`KiwiLab::write_config`] and reload).
    pub fn section_mut(&mut self) -> &mut Kiwi {
        &mut self.section
    }

    /// Replaces the section and writes the file (reload to apply).
    pub fn set_section(&mut self, section: Kiwi) -> Result<()> {
        self.section = section;
        self.write_config()
    }

    /// The configuration as YAML.
    pub fn config_yaml(&self) -> String {
        let section: String = self
            .section
            .to_yaml()
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect();
        format!(
            "# Generated by the kowabunga-tests Kiwi lab ({}).\nnode:\n  zone: eu-west-a\n  interfaces: {{}}\n  bpffs: {}\nkiwi:\n{section}",
            self.prefix,
            self.pin_dir.display()
        )
    }

    /// Writes [`KiwiLab::config_yaml`] atomically (a reload never reads half
    /// a file).
    pub fn write_config(&self) -> Result<()> {
        let path = self.config_path();
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.config_yaml())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Starts `kowabungad` in the Kiwi namespace and waits until it is ready.
    pub fn start_daemon(&mut self, bin: &Path) -> Result<&mut Daemon> {
        self.daemon = None;
        let daemon = Daemon::start(&self.kiwi, bin, &self.config_path())?;
        Ok(self.daemon.insert(daemon))
    }

    /// The running daemon.
    pub fn daemon(&mut self) -> Option<&mut Daemon> {
        self.daemon.as_mut()
    }

    /// Starts the stub recursor on `RECURSOR_ADDR:53` for `seconds`
    /// (`silent`: it never answers).
    pub fn start_recursor(&self, agent: &Agent, silent: bool, seconds: u64) -> Result<Background> {
        let listen = format!("{RECURSOR_ADDR}:53");
        let secs = seconds.to_string();
        let mut args = vec!["dns-recursor", "--listen", &listen, "--seconds", &secs];
        if silent {
            args.extend(["--silent", "yes"]);
        }
        let mut bg = Background::spawn("dns-recursor", agent.command(&self.recursor, &args))?;
        bg.wait_for("ready dns", Duration::from_secs(5))?;
        Ok(bg)
    }
}

impl Drop for KiwiLab {
    fn drop(&mut self) {
        self.daemon = None;
        let _ = std::fs::remove_dir_all(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
