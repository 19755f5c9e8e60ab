//! Runs frames through the BPF program (`BPF_PROG_TEST_RUN`) and the
//! reference model side by side, in a fixture network of the calling thread.

use anyhow::{bail, Context, Result};
use kowabunga_bindings::{kw_config, kw_rule, kw_rule6, kw_stat};
use kowabunga_dataplane::{stats::stat_name, Counters, Kawaii, LoadOptions, Role, Tables};

use crate::fixture_net::FixtureNet;
use crate::model::{KawaiiModel, Outcome};

/// Converts the shared table list into the dataplane's fixed array.
pub fn tables(v: &[Vec<kw_rule>]) -> Tables {
    std::array::from_fn(|t| v.get(t).cloned().unwrap_or_default())
}

/// The role constant (`kw_role::KW_ROLE_*`) of a dataplane role.
pub fn role_code(role: Role) -> u32 {
    role.to_kw()
}

/// One packet through both implementations.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the BPF program did.
    pub verdict: u32,
    /// The frame the BPF program left.
    pub data: Vec<u8>,
    /// The counter the BPF program bumped.
    pub stat: u32,
    /// What the model said.
    pub model: Outcome,
}

impl Step {
    /// The step, or an error naming the divergence when the program and the
    /// model disagree on verdict, counter or bytes.
    pub fn agreed(self) -> Result<Self> {
        let step = self;
        if step.verdict != step.model.verdict || step.stat != step.model.stat {
            bail!(
                "divergence: bpf {} / {} vs model {} / {}",
                step.verdict,
                stat_name(step.stat),
                step.model.verdict,
                stat_name(step.model.stat)
            );
        }
        if step.data != step.model.packet {
            bail!(
                "divergence in bytes ({}):\n bpf   {:02x?}\n model {:02x?}",
                stat_name(step.stat),
                step.data,
                step.model.packet
            );
        }
        Ok(step)
    }

    /// Name of the counter the packet was counted in.
    pub fn stat_name(&self) -> &'static str {
        stat_name(self.stat)
    }
}

/// A loaded program, its model, and the fixture network.
pub struct Harness {
    /// The fixture network of this thread.
    pub net: FixtureNet,
    /// The program under test (fresh, unpinned maps).
    pub kawaii: Kawaii,
    /// The reference model.
    pub model: KawaiiModel,
}

impl Harness {
    /// Enter a fixture network, load the program and apply `cfg` + `tables`
    /// to both the program and the model.
    pub fn new(cfg: kw_config, tables_v: &[Vec<kw_rule>]) -> Result<Self> {
        let net = FixtureNet::enter()?;
        let mut kawaii = Kawaii::load(&LoadOptions::default()).context("load kawaii.o")?;
        kawaii
            .apply_raw(&cfg, &tables(tables_v))
            .context("apply the fixture config")?;
        let model = KawaiiModel::new(cfg, tables_v, net.fib_model());
        Ok(Self { net, kawaii, model })
    }

    /// Same, with conntrack tables of `ct_entries` entries each (the model's
    /// confirmed table gets the same bound).
    pub fn with_ct_entries(
        cfg: kw_config,
        tables_v: &[Vec<kw_rule>],
        ct_entries: u32,
    ) -> Result<Self> {
        let net = FixtureNet::enter()?;
        let mut kawaii = Kawaii::load(&LoadOptions {
            pin_dir: None,
            ct_entries: Some(ct_entries),
        })
        .context("load kawaii.o")?;
        kawaii
            .apply_raw(&cfg, &tables(tables_v))
            .context("apply the fixture config")?;
        let mut model = KawaiiModel::new(cfg, tables_v, net.fib_model());
        model.conntrack_mut().confirmed_max = ct_entries as usize;
        Ok(Self { net, kawaii, model })
    }

    /// Same, with the program left unconfigured.
    pub fn unconfigured() -> Result<Self> {
        let net = FixtureNet::enter()?;
        let kawaii = Kawaii::load(&LoadOptions::default()).context("load kawaii.o")?;
        let model = KawaiiModel::unconfigured(net.fib_model());
        Ok(Self { net, kawaii, model })
    }

    /// Opens (`up`) or closes the IPsec gate of `net` in the program and
    /// the model alike.
    pub fn set_ipsec_up(&mut self, net: ipnet::Ipv4Net, up: bool) -> Result<()> {
        kowabunga_dataplane::kawaii::ipsec_gate::IpsecGate::of(&mut self.kawaii)?.set(net, up)?;
        let key = (u32::from(net.network()), u32::from(net.netmask()));
        if up {
            self.model.ipsec_up.insert(key);
        } else {
            self.model.ipsec_up.remove(&key);
        }
        Ok(())
    }

    /// Apply a new configuration to both; conntrack is kept.
    pub fn apply(&mut self, cfg: kw_config, tables_v: &[Vec<kw_rule>]) -> Result<()> {
        self.apply6(cfg, tables_v, &[])
    }

    /// [`Harness::apply`] with IPv6 rules of firewall.ingress.
    pub fn apply6(
        &mut self,
        cfg: kw_config,
        tables_v: &[Vec<kw_rule>],
        ingress6: &[kw_rule6],
    ) -> Result<()> {
        self.kawaii.apply_raw6(&cfg, &tables(tables_v), ingress6)?;
        self.model.apply6(cfg, tables_v, ingress6);
        Ok(())
    }

    /// Current counters of the program.
    pub fn counters(&self) -> Result<Counters> {
        Ok(self.kawaii.counters()?)
    }

    /// Run one frame through the program only, and find its counter.
    pub fn run_bpf(&self, role: Role, frame: &[u8]) -> Result<(u32, Vec<u8>, u32)> {
        let before = self.counters()?;
        let out = self.kawaii.run(role, frame)?;
        let delta = self.counters()?.since(&before);
        let bumped: Vec<u32> = (0..kw_stat::KW_STAT_COUNT)
            .filter(|s| kowabunga_dataplane::stats::is_outcome(*s) && delta.packets(*s) > 0)
            .collect();
        let [stat] = bumped[..] else {
            bail!("expected exactly one counter to move, got {bumped:?}");
        };
        Ok((out.verdict, out.data, stat))
    }

    /// Run one frame through both and fail on any divergence.
    pub fn step(&mut self, role: Role, frame: &[u8]) -> Result<Step> {
        let (verdict, data, stat) = self.run_bpf(role, frame)?;
        let model = self.model.process(role_code(role), frame);
        let step = Step {
            verdict,
            data,
            stat,
            model,
        };
        step.agreed()
    }
}
