//! Runs frames through the Konvey program (`BPF_PROG_TEST_RUN`) and the
//! reference model side by side, in the Konvey fixture network of the
//! calling thread; services are programmed into both.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::konvey::{Backend, KonveyConfig, ServiceKey};
use kowabunga_dataplane::{Counters, Konvey, LoadOptions};

use crate::fixture_konvey::{self, KonveyNet};
use crate::harness::Step;
use crate::model::flow::{CtEntry, Tuple};
use crate::model::KonveyModel;

/// A loaded Konvey program, its model, and the fixture network.
pub struct KonveyHarness {
    /// The fixture network of this thread.
    pub net: KonveyNet,
    /// The program under test (fresh, unpinned maps).
    pub konvey: Konvey,
    /// The reference model.
    pub model: KonveyModel,
}

/// The conntrack map of the program, in the model's terms; each entry's
/// packets and bytes include those its flow cache holds for it (the model
/// counts every packet in the entry).
pub fn bpf_conntrack(konvey: &Konvey) -> Result<BTreeMap<Tuple, CtEntry>> {
    let mut out = BTreeMap::new();
    for (k, v) in konvey.conntrack_entries()? {
        let (pending_packets, pending_bytes) = konvey.flow_cache_pending(&k)?;
        let key = Tuple {
            saddr: u32::from_be(k.saddr),
            daddr: u32::from_be(k.daddr),
            sport: u16::from_be(k.sport),
            dport: u16::from_be(k.dport),
            proto: k.proto,
        };
        let entry = CtEntry {
            nat: Tuple {
                saddr: u32::from_be(v.nat_saddr),
                daddr: u32::from_be(v.nat_daddr),
                sport: u16::from_be(v.nat_sport),
                dport: u16::from_be(v.nat_dport),
                proto: k.proto,
            },
            in_role: v.in_role,
            flags: v.flags,
            state: v.state,
            packets: v.packets + pending_packets,
            bytes: v.bytes + pending_bytes,
        };
        out.insert(key, entry);
    }
    Ok(out)
}

impl KonveyHarness {
    /// Enter a Konvey fixture network, load the program and program `cfg`
    /// and `services` into both the program and the model.
    pub fn new(cfg: KonveyConfig, services: &[(ServiceKey, Vec<Backend>)]) -> Result<Self> {
        let mut h = Self::unconfigured()?;
        h.set_config(cfg)?;
        for (key, rotation) in services {
            h.set_service(*key, rotation)?;
        }
        Ok(h)
    }

    /// The fixtures' default: [`fixture_konvey::config`] and
    /// [`fixture_konvey::services`].
    pub fn standard() -> Result<Self> {
        Self::new(fixture_konvey::config(), &fixture_konvey::services())
    }

    /// The program loaded but left unconfigured.
    pub fn unconfigured() -> Result<Self> {
        let net = KonveyNet::enter()?;
        let konvey = Konvey::load(&LoadOptions::default()).context("load konvey.o")?;
        let model = KonveyModel::unconfigured(net.fib_model());
        Ok(Self { net, konvey, model })
    }

    /// `set_config` on both.
    pub fn set_config(&mut self, cfg: KonveyConfig) -> Result<()> {
        self.konvey.set_config(&cfg)?;
        self.model.set_config(cfg);
        Ok(())
    }

    /// `set_service` on both.
    pub fn set_service(&mut self, key: ServiceKey, rotation: &[Backend]) -> Result<()> {
        self.konvey.set_service(key, rotation)?;
        self.model.set_service(key, rotation);
        Ok(())
    }

    /// `remove_service` on both.
    pub fn remove_service(&mut self, key: ServiceKey) -> Result<()> {
        self.konvey.remove_service(key)?;
        self.model.remove_service(key);
        Ok(())
    }

    /// `purge_drained_vips` on both.
    pub fn purge_drained_vips(&mut self) -> Result<Vec<std::net::Ipv4Addr>> {
        let purged = self.konvey.purge_drained_vips()?;
        self.model.purge_drained_vips();
        Ok(purged)
    }

    /// Current counters of the program.
    pub fn counters(&self) -> Result<Counters> {
        Ok(self.konvey.counters()?)
    }

    /// Run one frame through the program only, and find its counter.
    pub fn run_bpf(&self, frame: &[u8]) -> Result<(u32, Vec<u8>, u32)> {
        let before = self.counters()?;
        let out = self.konvey.run(frame)?;
        let delta = self.counters()?.since(&before);
        let bumped: Vec<u32> = (0..kw_stat::KW_STAT_COUNT)
            .filter(|s| kowabunga_dataplane::stats::is_outcome(*s) && delta.packets(*s) > 0)
            .collect();
        let [stat] = bumped[..] else {
            bail!("expected exactly one counter to move, got {bumped:?}");
        };
        Ok((out.verdict, out.data, stat))
    }

    /// Run one frame through both and fail on any divergence (verdict,
    /// counter, bytes).
    pub fn step(&mut self, frame: &[u8]) -> Result<Step> {
        let (verdict, data, stat) = self.run_bpf(frame)?;
        let model = self.model.process(frame);
        let step = Step {
            verdict,
            data,
            stat,
            model,
        };
        step.agreed()
    }

    /// The program's conntrack must equal the model's: same tuples, each
    /// with the same translation, role, flags, state and packet and byte
    /// counts.
    pub fn check_conntrack(&self) -> Result<()> {
        let bpf = bpf_conntrack(&self.konvey)?;
        let model: BTreeMap<Tuple, CtEntry> =
            self.model.ct_entries().map(|(k, v)| (*k, *v)).collect();
        if bpf.len() != model.len() {
            bail!(
                "conntrack size diverges: bpf {} model {}",
                bpf.len(),
                model.len()
            );
        }
        for (k, v) in &model {
            match bpf.get(k) {
                Some(b) if b == v => {}
                other => bail!("conntrack entry {k:?}: bpf {other:?} model {v:?}"),
            }
        }
        // and each entry in the same table
        let confirmed: std::collections::BTreeSet<Tuple> = self
            .konvey
            .conntrack_table(kowabunga_dataplane::kawaii::MAP_CT4)?
            .entries()?
            .iter()
            .map(|(k, _)| Tuple {
                saddr: u32::from_be(k.saddr),
                daddr: u32::from_be(k.daddr),
                sport: u16::from_be(k.sport),
                dport: u16::from_be(k.dport),
                proto: k.proto,
            })
            .collect();
        let model_confirmed: std::collections::BTreeSet<Tuple> =
            self.model.conntrack().confirmed.keys().copied().collect();
        if confirmed != model_confirmed {
            bail!("confirmed conntrack diverges: bpf {confirmed:?} model {model_confirmed:?}");
        }
        Ok(())
    }
}
