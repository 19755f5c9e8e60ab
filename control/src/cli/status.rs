//! `kowabunga status`: the daemon's view of the node.

use super::table::{human_secs, render};
use crate::api::wire::Status;

/// The text of `status`.
pub fn format(s: &Status) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<12}{v}\n"));
    line(&mut out, "node", format!("{} (zone {})", s.node, s.zone));
    line(&mut out, "version", s.version.clone());
    line(&mut out, "uptime", human_secs(s.uptime_s));
    line(&mut out, "roles", s.roles.join(", "));
    line(
        &mut out,
        "config",
        format!(
            "{} generation {} ({} reloads applied, {} refused)",
            s.config_file, s.generation, s.reloads_ok, s.reloads_failed
        ),
    );
    line(&mut out, "bpffs", s.bpffs.clone());
    let ct: Vec<String> = s
        .conntrack_entries
        .iter()
        .map(|(role, n)| format!("{role} {n}"))
        .collect();
    line(
        &mut out,
        "conntrack",
        if ct.is_empty() {
            "- (no sweep yet)".to_owned()
        } else {
            format!("{} entries at the last sweep", ct.join(", "))
        },
    );
    if s.roles.iter().any(|r| r == "konvey") {
        line(
            &mut out,
            "konvey",
            format!("{} services, {} backends", s.services, s.backends),
        );
    }
    for other in &s.other {
        line(&mut out, "", other.clone());
    }
    if !s.programs.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .programs
            .iter()
            .map(|p| {
                vec![
                    p.interface.clone(),
                    p.role.clone(),
                    p.program.clone(),
                    p.mode.clone(),
                ]
            })
            .collect();
        out.push_str(&render(&["INTERFACE", "ROLE", "PROGRAM", "MODE"], &rows));
    }
    if !s.vrrp.is_empty() {
        out.push('\n');
        out.push_str(&super::vrrp::format(&s.vrrp));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{Program, VrrpInstance};

    #[test]
    fn status_shows_every_part() {
        let s = Status {
            node: "gw1".into(),
            zone: "z1".into(),
            version: "0.1.0".into(),
            roles: vec!["konvey".into(), "vrrp".into()],
            programs: vec![Program {
                role: "konvey".into(),
                interface: "eth0".into(),
                program: "konvey".into(),
                mode: "driver".into(),
            }],
            config_file: "/etc/kowabunga/node.yaml".into(),
            generation: 3,
            reloads_ok: 2,
            reloads_failed: 1,
            uptime_s: 3725,
            bpffs: "/sys/fs/bpf/kowabunga".into(),
            vrrp: vec![VrrpInstance {
                name: "vip".into(),
                vrid: 51,
                interface: "eth0".into(),
                state: "master".into(),
                priority: 150,
                master: None,
                adverts_rx: 0,
                adverts_tx: 10,
                became_master: 1,
                became_backup: 1,
            }],
            conntrack_entries: vec![("konvey".into(), 42)],
            services: 2,
            backends: 4,
            other: vec![],
        };
        let text = format(&s);
        for want in [
            "node        gw1 (zone z1)\n",
            "uptime      1h02m\n",
            "roles       konvey, vrrp\n",
            "config      /etc/kowabunga/node.yaml generation 3 (2 reloads applied, 1 refused)\n",
            "conntrack   konvey 42 entries at the last sweep\n",
            "konvey      2 services, 4 backends\n",
            "INTERFACE  ROLE    PROGRAM  MODE\neth0       konvey  konvey   driver\n",
            "vip       51    eth0       master",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
    }
}
