//! What is attached: a pinned XDP link, the program inside it and its tag,
//! read with `bpftool` (installed by `cargo xtask deps`).
//!
//! A daemon restart swaps a newly loaded program into the same pinned link
//! (`BPF_LINK_UPDATE`): the link id stays, the program id changes; an upgrade
//! to another program build also changes the tag (the hash of the
//! instructions).

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};

/// A pinned link and its program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link's id.
    pub id: u64,
    /// The id of the program inside it.
    pub prog_id: u64,
    /// The program's tag (hex).
    pub tag: String,
}

impl std::fmt::Display for LinkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link {} prog {} tag {}", self.id, self.prog_id, self.tag)
    }
}

fn bpftool_json(args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .context("running bpftool (apt-get install bpftool)")?;
    ensure!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("bpftool {args:?}: not JSON"))
}

/// Reads the link pinned at `path` and its program.
pub fn pinned_link(path: &Path) -> Result<LinkInfo> {
    let shown = path.to_string_lossy();
    let link = bpftool_json(&["link", "show", "pinned", &shown])?;
    let id = link["id"]
        .as_u64()
        .with_context(|| format!("no link id in {link}"))?;
    let prog_id = link["prog_id"]
        .as_u64()
        .with_context(|| format!("no prog_id in {link}"))?;
    let prog = bpftool_json(&["prog", "show", "id", &prog_id.to_string()])?;
    let tag = prog["tag"]
        .as_str()
        .with_context(|| format!("no tag in {prog}"))?
        .to_owned();
    Ok(LinkInfo { id, prog_id, tag })
}

/// Every link pinned in `dir` (`<pin dir>/links`), by interface name, sorted.
pub fn pinned_links(dir: &Path) -> Result<Vec<(String, LinkInfo)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, pinned_link(&entry.path())?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `bpftool map dump pinned PATH` as text (the map's whole content, e.g. the
/// Konvey rotations), for before/after comparisons.
pub fn dump_map(path: &Path) -> Result<String> {
    let shown = path.to_string_lossy();
    let out = Command::new("bpftool")
        .args(["map", "dump", "pinned", &shown])
        .output()
        .context("running bpftool")?;
    ensure!(
        out.status.success(),
        "bpftool map dump {shown}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
