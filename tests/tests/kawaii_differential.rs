//! Differential test: random and malformed packet sequences through the BPF
//! program (`BPF_PROG_TEST_RUN`) and the reference model; zero divergence in
//! verdict and bytes, per packet, and in counters and conntrack size per
//! sequence.
//!
//! `KOWABUNGA_DIFF_PACKETS` (default 200000) sets the packet count and
//! `KOWABUNGA_DIFF_SEED` replays a run (the seed is printed).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use kowabunga_bindings::{kw_stat, kw_table};
use kowabunga_dataplane::stats::stat_name;
use kowabunga_testkit::privileged;
use kowabunga_tests::generator::{random_rules, random_rules6, Generator};
use kowabunga_tests::harness::{role_code, Harness};
use kowabunga_tests::world;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEQUENCE: usize = 5_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// IPv6 frames the model let in through an IPv6 ingress rule
/// (`pass_to_host`) and those it refused (`drop_host_denied`), over the run.
static V6_OPENED: AtomicU64 = AtomicU64::new(0);
static V6_DENIED: AtomicU64 = AtomicU64::new(0);

fn run_sequence(
    seed: u64,
    index: u64,
    packets: usize,
) -> Result<[u64; kw_stat::KW_STAT_COUNT as usize]> {
    let (mut cfg, mut tables) = world::config();
    // a narrow SNAT range in every other sequence: collisions and exhaustion
    if index % 2 == 1 {
        cfg.port_min = 40000;
        cfg.port_max = 40003;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // large random tables in one sequence of four: the rule index against
    // the model's linear scan (the world's rules first, so its paths stay)
    if index % 4 == 2 {
        for t in [
            kw_table::KW_TABLE_INGRESS,
            kw_table::KW_TABLE_EGRESS,
            kw_table::KW_TABLE_PEER_IN,
            kw_table::KW_TABLE_PEER_OUT,
        ] {
            // bounded so the index of four random tables stays well inside a
            // bank (nested prefixes with wide port ranges multiply its entries)
            let n = rng.random_range(100..=800);
            tables[t as usize].extend(random_rules(&mut rng, n));
        }
    }
    // the world's IPv6 ingress rules, and random ones in the large sequence
    let mut ingress6 = world::ingress6();
    if index % 4 == 2 {
        let n = rng.random_range(100..=800);
        ingress6.extend(random_rules6(&mut rng, n));
    }
    let mut h = Harness::new(cfg, &tables)?;
    h.apply6(cfg, &tables, &ingress6)?;
    let mut gen = Generator::default();
    let mut model_stats = [0u64; kw_stat::KW_STAT_COUNT as usize];
    let before = h.counters()?;
    for i in 0..packets {
        let input = gen.next(&mut rng);
        let out = h.kawaii.run(input.role, &input.frame)?;
        let want = h.model.process(role_code(input.role), &input.frame);
        if out.verdict != want.verdict || out.data != want.packet {
            bail!(
                "divergence: seed {seed} sequence {index} packet {i} role {}\n in    {}\n bpf   verdict {} {}\n model verdict {} ({}) {}",
                input.role,
                hex(&input.frame),
                out.verdict,
                hex(&out.data),
                want.verdict,
                stat_name(want.stat),
                hex(&want.packet),
            );
        }
        model_stats[want.stat as usize] += 1;
        if input.frame.get(12..14) == Some(&[0x86, 0xdd]) {
            match want.stat {
                kw_stat::KW_STAT_PASS_TO_HOST => V6_OPENED.fetch_add(1, Ordering::Relaxed),
                kw_stat::KW_STAT_DROP_HOST_DENIED => V6_DENIED.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
        }
        gen.observe(out.verdict, &out.data);
    }
    let delta = h.counters()?.since(&before);
    for s in 0..kw_stat::KW_STAT_COUNT {
        if delta.packets(s) != model_stats[s as usize] {
            bail!(
                "counter {} diverges: bpf {} model {} (seed {seed} sequence {index})",
                stat_name(s),
                delta.packets(s),
                model_stats[s as usize]
            );
        }
    }
    let bpf_ct = h.kawaii.conntrack_entries()?.len();
    if bpf_ct != h.model.ct_len() {
        bail!(
            "conntrack size diverges: bpf {bpf_ct} model {} (seed {seed} sequence {index})",
            h.model.ct_len()
        );
    }
    let bpf_confirmed = h
        .kawaii
        .conntrack_table(kowabunga_dataplane::kawaii::MAP_CT4)?
        .entries()?
        .len();
    let model_confirmed = h.model.conntrack().confirmed.len();
    if bpf_confirmed != model_confirmed {
        bail!(
            "confirmed conntrack diverges: bpf {bpf_confirmed} model {model_confirmed} (seed {seed} sequence {index})"
        );
    }
    Ok(model_stats)
}

#[test]
fn bpf_program_and_model_agree_on_random_traffic() -> Result<()> {
    if !privileged("bpf_program_and_model_agree_on_random_traffic") {
        return Ok(());
    }
    let total = env_u64("KOWABUNGA_DIFF_PACKETS").unwrap_or(200_000) as usize;
    let seed = env_u64("KOWABUNGA_DIFF_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!("differential: {total} packets, KOWABUNGA_DIFF_SEED={seed}");
    let mut stats = [0u64; kw_stat::KW_STAT_COUNT as usize];
    let mut done = 0usize;
    let mut index = 0u64;
    while done < total {
        let n = SEQUENCE.min(total - done);
        let s = run_sequence(seed, index, n).with_context(|| format!("sequence {index}"))?;
        for (a, b) in stats.iter_mut().zip(s) {
            *a += b;
        }
        done += n;
        index += 1;
    }
    eprintln!("differential: {done} packets agreed; outcomes:");
    for s in 0..kw_stat::KW_STAT_COUNT {
        eprintln!("  {:<22} {}", stat_name(s), stats[s as usize]);
    }
    let (opened, denied) = (
        V6_OPENED.load(Ordering::Relaxed),
        V6_DENIED.load(Ordering::Relaxed),
    );
    eprintln!("  IPv6 to the node: {opened} opened by an IPv6 rule, {denied} denied");
    // the traffic must reach the interesting paths, or the test proves little
    if total >= 100_000 {
        assert!(opened > 0 && denied > 0, "IPv6 rules not exercised");
    }
    for s in [
        kw_stat::KW_STAT_FWD_REDIRECT,
        kw_stat::KW_STAT_PASS_TO_HOST,
        kw_stat::KW_STAT_PASS_NO_NEIGH,
        kw_stat::KW_STAT_PASS_TTL,
        kw_stat::KW_STAT_PASS_FIB,
        kw_stat::KW_STAT_PASS_FRAGMENT,
        kw_stat::KW_STAT_DROP_FIB,
        kw_stat::KW_STAT_DROP_TTL,
        kw_stat::KW_STAT_DROP_IPV6,
        kw_stat::KW_STAT_PASS_HOST_REPLY,
        kw_stat::KW_STAT_PASS_HOST_FRAGMENT,
        kw_stat::KW_STAT_DROP_HOST_DENIED,
        kw_stat::KW_STAT_DROP_MALFORMED,
        kw_stat::KW_STAT_DROP_MALFORMED_L4,
        kw_stat::KW_STAT_DROP_FRAGMENT,
        kw_stat::KW_STAT_DROP_INGRESS_DENIED,
        kw_stat::KW_STAT_DROP_EGRESS_DENIED,
        kw_stat::KW_STAT_DROP_PEERING_DENIED,
        kw_stat::KW_STAT_DROP_TCP_NOT_SYN,
        kw_stat::KW_STAT_DROP_UNSUPPORTED,
        kw_stat::KW_STAT_DROP_ICMP_UNMATCHED,
    ] {
        if total >= 100_000 {
            assert!(stats[s as usize] > 0, "no packet reached {}", stat_name(s));
        }
    }
    Ok(())
}
