//! Konvey differential test: random and malformed packet sequences, with
//! service, rotation and port range changes in the middle, through the BPF program
//! (`BPF_PROG_TEST_RUN`) and the reference model; zero divergence in verdict
//! and bytes per packet, and in counters and the whole conntrack map (tuples,
//! translations, flags, states, packet and byte counts) per sequence.
//!
//! `KOWABUNGA_DIFF_PACKETS` (default 200000) sets the packet count and
//! `KOWABUNGA_DIFF_SEED` replays a run (the seed is printed).

use anyhow::{bail, Context, Result};
use kowabunga_bindings::kw_stat;
use kowabunga_dataplane::konvey::KonveyConfig;
use kowabunga_dataplane::stats::stat_name;
use kowabunga_testkit::privileged;
use kowabunga_tests::fixture_konvey;
use kowabunga_tests::generator_konvey::{Input, KonveyGenerator};
use kowabunga_tests::harness_konvey::KonveyHarness;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SEQUENCE: usize = 5_000;

type Stats = [u64; kw_stat::KW_STAT_COUNT as usize];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One sequence; returns the outcome counts and the number of service and
/// configuration changes applied.
fn run_sequence(seed: u64, index: u64, packets: usize) -> Result<(Stats, u64)> {
    let mut cfg = fixture_konvey::config();
    // a narrow port range in every other sequence: collisions and exhaustion
    if index % 2 == 1 {
        cfg = KonveyConfig {
            port_min: 40000,
            port_max: 40003,
            ..cfg
        };
    }
    let mut h = KonveyHarness::new(cfg, &fixture_konvey::services())?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut gen = KonveyGenerator::default();
    let mut model_stats: Stats = [0; kw_stat::KW_STAT_COUNT as usize];
    let mut changes = 0u64;
    let before = h.counters()?;
    let mut i = 0usize;
    // bounded: every iteration either runs a packet or is one of at most
    // `packets` service or configuration changes
    let mut budget = 2 * packets;
    while i < packets && budget > 0 {
        budget -= 1;
        let frame = match gen.next(&mut rng) {
            Input::SetService(key, rotation) => {
                h.set_service(key, &rotation)?;
                changes += 1;
                continue;
            }
            Input::RemoveService(key) => {
                h.remove_service(key)?;
                changes += 1;
                continue;
            }
            Input::SetConfig(cfg) => {
                h.set_config(cfg)?;
                changes += 1;
                continue;
            }
            Input::Frame(f) => f,
        };
        let out = h.konvey.run(&frame)?;
        let want = h.model.process(&frame);
        if out.verdict != want.verdict || out.data != want.packet {
            bail!(
                "divergence: seed {seed} sequence {index} packet {i}\n in    {}\n bpf   verdict {} {}\n model verdict {} ({}) {}",
                hex(&frame),
                out.verdict,
                hex(&out.data),
                want.verdict,
                stat_name(want.stat),
                hex(&want.packet),
            );
        }
        model_stats[want.stat as usize] += 1;
        gen.observe(out.verdict, &out.data);
        i += 1;
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
    h.check_conntrack()
        .with_context(|| format!("seed {seed} sequence {index}"))?;
    Ok((model_stats, changes))
}

#[test]
fn konvey_program_and_model_agree_on_random_traffic() -> Result<()> {
    if !privileged("konvey_program_and_model_agree_on_random_traffic") {
        return Ok(());
    }
    let total = env_u64("KOWABUNGA_DIFF_PACKETS").unwrap_or(200_000) as usize;
    let seed = env_u64("KOWABUNGA_DIFF_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    eprintln!("konvey differential: {total} packets, KOWABUNGA_DIFF_SEED={seed}");
    let mut stats: Stats = [0; kw_stat::KW_STAT_COUNT as usize];
    let mut changes = 0u64;
    let mut done = 0usize;
    let mut index = 0u64;
    while done < total {
        let n = SEQUENCE.min(total - done);
        let (s, c) = run_sequence(seed, index, n).with_context(|| format!("sequence {index}"))?;
        for (a, b) in stats.iter_mut().zip(s) {
            *a += b;
        }
        changes += c;
        done += n;
        index += 1;
    }
    eprintln!(
        "konvey differential: {done} packets and {changes} service/config changes agreed; outcomes:"
    );
    for s in 0..kw_stat::KW_STAT_COUNT {
        eprintln!("  {:<22} {}", stat_name(s), stats[s as usize]);
    }
    // the traffic must reach the interesting paths, or the test proves little
    if total >= 100_000 {
        assert!(changes > 0, "no service change was exercised");
        for s in [
            kw_stat::KW_STAT_FWD_REDIRECT,
            kw_stat::KW_STAT_PASS_NOT_IPV4,
            kw_stat::KW_STAT_PASS_NOT_OURS,
            kw_stat::KW_STAT_PASS_TO_HOST,
            kw_stat::KW_STAT_DROP_TTL,
            kw_stat::KW_STAT_DROP_FIB,
            kw_stat::KW_STAT_PASS_NO_NEIGH,
            kw_stat::KW_STAT_DROP_MALFORMED,
            kw_stat::KW_STAT_DROP_MALFORMED_L4,
            kw_stat::KW_STAT_DROP_IP_OPTIONS,
            kw_stat::KW_STAT_DROP_FRAGMENT,
            kw_stat::KW_STAT_DROP_TCP_NOT_SYN,
            kw_stat::KW_STAT_DROP_NO_PORT,
            kw_stat::KW_STAT_DROP_NO_SERVICE,
            kw_stat::KW_STAT_DROP_NO_BACKEND,
        ] {
            assert!(stats[s as usize] > 0, "no packet reached {}", stat_name(s));
        }
    }
    Ok(())
}
