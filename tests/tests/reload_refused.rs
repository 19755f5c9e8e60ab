//! Bad reloads change nothing (issue 12 item 6): `kowabungad` runs the Kawaii
//! lab with a good configuration; the file is then replaced by malformed ones
//! (syntax, type, range, cross-field rule, unknown key, restart-only key, huge
//! and deeply nested inputs), each followed by `SIGHUP`. Every one is refused
//! with its field path in the log, the daemon keeps running, and the
//! dataplane is unchanged: DNAT still passes and an ingress rule that each
//! bad file adds stays closed. A good reload then applies it.
//!
//! Privileged: skipped with a message when not root, or failed where skipping is
//! forbidden (`kowabunga_testkit::privileged`). Needs `target/<profile>/kowabungad`.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use kowabunga_testkit::privileged;
use kowabunga_tests::lab::agent::EXIT_TIMEOUT;
use kowabunga_tests::lab::find_kowabungad;
use kowabunga_tests::lab::topology::{KawaiiLab, DNAT_PORT, PRIV_ADDR, VIP};
use kowabunga_tests::lab::traffic::Agent;

/// The line `kowabungad` logs when a reload is refused.
const REFUSED: &str = "reload failed, keeping the running config";
/// The line it logs when a configuration is applied (start, good reload).
const APPLIED: &str = "applied config";

/// Replaces the configuration file atomically (a reload never reads half a file).
fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("yaml.bad");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context("renaming the config")
}

/// `text` with `old` (present) replaced by `new`.
fn edit(text: &str, old: &str, new: &str) -> String {
    assert!(text.contains(old), "{old:?} not in\n{text}");
    text.replacen(old, new, 1)
}

/// (name, malformed configuration, what the refusal line must contain).
fn bad_configs(good: &str) -> Vec<(&'static str, String, &'static str)> {
    let dnat = format!("{{destination: {PRIV_ADDR}, protocol: tcp, ports: \"{DNAT_PORT}\"}}");
    let mut huge = String::from(good);
    huge.push_str("  vpc_peerings:\n");
    for i in 0..20_000 {
        huge.push_str(&format!(
            "    - {{subnet: 100.{}.{}.0/24, policy: drop}}\n",
            64 + i / 256 % 64,
            i % 256
        ));
    }
    vec![
        (
            "syntax",
            edit(good, "egress_policy: accept", "egress_policy: [accept"),
            "line ",
        ),
        (
            "type",
            edit(good, "  zone: eu-west-a\n", "  zone: [a, b]\n"),
            "node.zone: invalid type: sequence",
        ),
        (
            "range",
            edit(
                good,
                &dnat,
                &format!("{{destination: {PRIV_ADDR}, protocol: tcp, ports: \"0\"}}"),
            ),
            "kawaii.dnat[0].ports: \"0\"",
        ),
        (
            "cross-field",
            edit(
                good,
                &dnat,
                &format!("{{destination: 192.0.2.1, protocol: tcp, ports: \"{DNAT_PORT}\"}}"),
            ),
            "kawaii.dnat[0].destination: \"192.0.2.1\" is not inside kawaii.private_subnet",
        ),
        (
            "unknown key",
            edit(
                good,
                "    egress_policy: accept\n",
                "    egress_policy: accept\n    egres: []\n",
            ),
            "kawaii.firewall: unknown field `egres`",
        ),
        (
            "restart-only key",
            edit(
                good,
                "  zone: eu-west-a\n",
                "  zone: eu-west-a\n  conntrack_entries: 1024\n",
            ),
            "node.conntrack_entries",
        ),
        ("20k peerings", huge, "kawaii.vpc_peerings"),
        (
            "nested 10k deep",
            edit(
                good,
                "  zone: eu-west-a\n",
                &format!("  zone: {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
            ),
            "nested deeper than 64 levels",
        ),
    ]
}

#[test]
fn bad_reloads_change_nothing_and_a_good_one_applies() -> Result<()> {
    if !privileged("bad_reloads_change_nothing_and_a_good_one_applies") {
        return Ok(());
    }
    let agent = Agent::new(env!("CARGO_BIN_EXE_kowabunga-lab-agent"));
    let bin = find_kowabungad()?;
    let mut lab = KawaiiLab::new()?;
    lab.start_daemon(&bin)?;
    let _priv_server = agent.tcp_echo_server(&lab.private, DNAT_PORT, 120)?;
    let _gw_server = agent.tcp_echo_server(&lab.gw, 2222, 120)?;
    let to_dnat = format!("{VIP}:{DNAT_PORT}");
    let to_2222 = format!("{VIP}:2222");

    // The dataplane as the good configuration makes it: DNAT open, 2222 closed.
    let dataplane_unchanged = |agent: &Agent, lab: &KawaiiLab, when: &str| -> Result<()> {
        let out = agent.tcp_client(&lab.inet, &to_dnat)?;
        ensure!(out.success(), "{when}: DNAT to {to_dnat} broke: {out}");
        let out = agent.tcp_client_timeout(&lab.inet, &to_2222, Duration::from_millis(1000))?;
        ensure!(
            out.code == Some(EXIT_TIMEOUT),
            "{when}: {to_2222} answered, a refused config was applied: {out}"
        );
        Ok(())
    };
    dataplane_unchanged(&agent, &lab, "before")?;

    // Every bad file also opens VIP:2222: if any part of it were applied, it would show.
    lab.add_ingress_rule("203.0.113.0/24", "tcp", "2222")?;
    let good = lab.config_yaml();
    let path = lab.config_path();
    let cases = bad_configs(&good);
    for (i, (name, text, says)) in cases.iter().enumerate() {
        write(&path, text)?;
        let daemon = lab.daemon().context("daemon not started")?;
        daemon.reload()?;
        let line = daemon
            .wait_log(REFUSED, i + 1, Duration::from_secs(30))
            .with_context(|| format!("{name}: no refusal logged:\n{}", daemon.log()))?;
        ensure!(
            line.contains(says),
            "{name}: the refusal does not say {says:?}: {line:.400}"
        );
        ensure!(
            daemon.running(),
            "{name}: kowabungad died:\n{}",
            daemon.log()
        );
        ensure!(
            daemon.log_count(APPLIED) == 1,
            "{name}: a refused config was applied:\n{}",
            daemon.log()
        );
        dataplane_unchanged(&agent, &lab, name)?;
        println!(
            "{name}: refused, dataplane unchanged ({} bytes)",
            text.len()
        );
    }

    // A good reload still applies: VIP:2222 opens.
    write(&path, &good)?;
    let daemon = lab.daemon().context("daemon not started")?;
    daemon.reload()?;
    daemon
        .wait_log(APPLIED, 2, Duration::from_secs(30))
        .context("the good reload was not applied")?;
    ensure!(daemon.log_count(REFUSED) == cases.len(), "{}", daemon.log());
    let mut last = None;
    for _ in 0..5 {
        let out = agent.tcp_client_timeout(&lab.inet, &to_2222, Duration::from_millis(1000))?;
        if out.success() {
            let out = agent.tcp_client(&lab.inet, &to_dnat)?;
            ensure!(out.success(), "after the good reload: DNAT broke: {out}");
            return Ok(());
        }
        last = Some(out);
    }
    anyhow::bail!("VIP:2222 still closed after the good reload: {last:?}")
}
