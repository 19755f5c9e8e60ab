//! Kylo on Ceph: a CephFS subvolume per share, exported over NFSv4 by nfs-ganesha with its
//! Ceph backend (FSAL CEPH) to the project's subnets only (feature `ceph`).
//!
//! The subvolume is made by the ceph-mgr `volumes` module (`fs subvolume create`, with the
//! share's quota), through librados on the same bounded owner thread as the RBD backend.
//! The NFS side is a file of `EXPORT` blocks that this backend owns and that the operator's
//! `ganesha.conf` pulls in with `%include`; after each change the file is replaced
//! atomically and ganesha is told to re-read its exports with `SIGHUP`. Each block is
//! preceded by a `# kowabunga-share` comment that records the share, so the file is also
//! the backend's state (it survives restarts of the service that embeds the library).
//!
//! ```text
//! # ganesha.conf (operator's)
//! NFS_CORE_PARAM { Protocols = 4; }
//! NFSv4 { Graceless = true; }
//! CEPH { Ceph_Conf = /etc/ceph/ceph.conf; }
//! %include "/var/lib/kowabunga/kylo-exports.conf"
//! ```
//!
//! Exports use `Squash = No_Root_Squash` (the project's instances administer their share)
//! and `Access_Type = None` except for a `CLIENT` block listing the allowed networks.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::{FileShares, Share, ShareError, ShareRequest};
use crate::storage::rbd::session::{CephSession, SessionConfig};
use crate::storage::rbd::CephError;

const BACKEND: &str = "ceph-nfs";
const MARKER: &str = "# kowabunga-share ";

/// Settings of a [`CephNfsShares`].
#[derive(Debug, Clone)]
pub struct CephNfsConfig {
    /// ceph.conf used to reach the mgr (subvolumes).
    pub ceph_conf: PathBuf,
    /// cephx user (without `client.`) that creates subvolumes (default `admin`).
    pub user: String,
    /// CephFS file system (volume) name.
    pub fs_name: String,
    /// Subvolume group; `None`: the default group (`_nogroup`).
    pub group: Option<String>,
    /// The exports file this backend owns (`%include`d by ganesha.conf).
    pub exports_file: PathBuf,
    /// ganesha's pid file: it gets `SIGHUP` after each change.
    pub ganesha_pid_file: PathBuf,
    /// cephx user ganesha's FSAL uses for the exports (`User_Id`).
    pub fsal_user: String,
    /// NFS server address reported in [`Share::server`] (`host` or `host:port`).
    pub server: String,
    /// First `Export_Id` to hand out.
    pub first_export_id: u32,
    /// Bound on connecting to Ceph (default 10 s).
    pub connect_timeout: Duration,
    /// Bound on each mgr command (default 60 s).
    pub op_timeout: Duration,
}

impl CephNfsConfig {
    /// Defaults for a cluster, a file system, the exports file and ganesha's pid file.
    pub fn new(
        ceph_conf: impl Into<PathBuf>,
        fs_name: impl Into<String>,
        exports_file: impl Into<PathBuf>,
        ganesha_pid_file: impl Into<PathBuf>,
        server: impl Into<String>,
    ) -> Self {
        CephNfsConfig {
            ceph_conf: ceph_conf.into(),
            user: "admin".into(),
            fs_name: fs_name.into(),
            group: None,
            exports_file: exports_file.into(),
            ganesha_pid_file: ganesha_pid_file.into(),
            fsal_user: "admin".into(),
            server: server.into(),
            first_export_id: 100,
            connect_timeout: Duration::from_secs(10),
            op_timeout: Duration::from_secs(60),
        }
    }
}

/// One export as recorded in the exports file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    share: Share,
    export_id: u32,
    path: String,
}

/// The Kylo backend on CephFS + nfs-ganesha.
#[derive(Debug)]
pub struct CephNfsShares {
    cfg: CephNfsConfig,
    session: CephSession,
    // Serializes read-modify-write cycles of the exports file.
    lock: std::sync::Mutex<()>,
}

fn ceph_error(e: CephError) -> ShareError {
    match e {
        CephError::CephDown(reason) | CephError::Config(reason) => ShareError::Unavailable {
            backend: BACKEND,
            reason,
        },
        CephError::Timeout { op, after } => ShareError::Timeout {
            op: format!("ceph {op}"),
            after,
        },
        other => ShareError::Backend {
            op: "ceph".into(),
            code: other.errno().map_or(0, |e| -e),
            message: other.to_string(),
        },
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> ShareError {
    move |source| ShareError::Io { context, source }
}

/// Share names become subvolume names and path components: `[A-Za-z0-9_-]`, 1-64.
fn check_share_name(what: &str, name: &str) -> Result<(), ShareError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ShareError::Backend {
            op: "validate".into(),
            code: -libc::EINVAL,
            message: format!("invalid {what} name {name:?} (1-64 of [A-Za-z0-9_-])"),
        })
    }
}

/// A JSON string literal (names are validated; this only guards the config values).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl CephNfsShares {
    /// Connects to Ceph (bounded) and checks that the exports file can be read (it is
    /// created empty when missing).
    pub fn connect(cfg: CephNfsConfig) -> Result<Self, ShareError> {
        if !cfg.exports_file.exists() {
            std::fs::write(&cfg.exports_file, "")
                .map_err(io_error(cfg.exports_file.display().to_string()))?;
        }
        let session = CephSession::connect(&SessionConfig {
            conf: cfg.ceph_conf.clone(),
            user: cfg.user.clone(),
            connect_timeout: cfg.connect_timeout,
            op_timeout: cfg.op_timeout,
        })
        .map_err(ceph_error)?;
        Ok(CephNfsShares {
            cfg,
            session,
            lock: std::sync::Mutex::new(()),
        })
    }

    fn mgr(&self, op: &'static str, args: String) -> Result<String, ShareError> {
        let json = format!("{{\"prefix\": \"{op}\", {args}}}");
        self.session
            .call(op, move |c| c.mgr_command(op, &json))
            .map_err(ceph_error)
    }

    fn subvolume_args(&self, name: &str) -> String {
        let mut a = format!(
            "\"vol_name\": {}, \"sub_name\": {}",
            json_str(&self.cfg.fs_name),
            json_str(name)
        );
        if let Some(g) = &self.cfg.group {
            let _ = write!(a, ", \"group_name\": {}", json_str(g));
        }
        a
    }

    /// The CephFS path of a share's subvolume (what the export serves), from the mgr.
    pub fn path(&self, name: &str) -> Result<String, ShareError> {
        check_share_name("share", name)?;
        let out = self.mgr("fs subvolume getpath", self.subvolume_args(name))?;
        Ok(out.trim().to_owned())
    }

    fn remove_subvolume(&self, name: &str) -> Result<(), ShareError> {
        self.mgr(
            "fs subvolume rm",
            format!("{}, \"force\": true", self.subvolume_args(name)),
        )
        .map(|_| ())
    }

    fn read_entries(&self) -> Result<Vec<Entry>, ShareError> {
        let text = std::fs::read_to_string(&self.cfg.exports_file)
            .map_err(io_error(self.cfg.exports_file.display().to_string()))?;
        Ok(parse_entries(&text, &self.cfg.server))
    }

    fn write_entries(&self, entries: &[Entry]) -> Result<(), ShareError> {
        let text = render_entries(entries, &self.cfg.fs_name, &self.cfg.fsal_user);
        let file = &self.cfg.exports_file;
        let tmp = file.with_extension("kowabunga-tmp");
        std::fs::write(&tmp, text).map_err(io_error(tmp.display().to_string()))?;
        std::fs::rename(&tmp, file).map_err(io_error(file.display().to_string()))
    }

    /// Tells ganesha to re-read its exports.
    fn reload(&self) -> Result<(), ShareError> {
        let pid_file = &self.cfg.ganesha_pid_file;
        let text = std::fs::read_to_string(pid_file).map_err(|e| ShareError::Unavailable {
            backend: BACKEND,
            reason: format!("nfs-ganesha pid file {}: {e}", pid_file.display()),
        })?;
        let pid: libc::pid_t = text.trim().parse().map_err(|_| ShareError::Unavailable {
            backend: BACKEND,
            reason: format!(
                "nfs-ganesha pid file {} holds {:?}",
                pid_file.display(),
                text.trim()
            ),
        })?;
        // SAFETY: kill(2) has no memory-safety preconditions; the pid comes from ganesha's
        // own pid file and is checked to be positive.
        if pid <= 0 || unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            return Err(ShareError::Unavailable {
                backend: BACKEND,
                reason: format!("nfs-ganesha (pid {pid}) is not running"),
            });
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FileShares for CephNfsShares {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn create(&self, request: &ShareRequest) -> Result<Share, ShareError> {
        check_share_name("share", &request.name)?;
        check_share_name("project", &request.project)?;
        if request.clients.is_empty() {
            return Err(ShareError::NoClients(request.name.clone()));
        }
        let _guard = self.lock();
        let mut entries = self.read_entries()?;
        if entries.iter().any(|e| e.share.name == request.name) {
            return Err(ShareError::AlreadyExists(request.name.clone()));
        }
        let mut args = self.subvolume_args(&request.name);
        if let Some(q) = request.quota_bytes {
            let _ = write!(args, ", \"size\": {q}");
        }
        if let Err(e) = self.mgr("fs subvolume create", args) {
            if matches!(e, ShareError::Timeout { .. }) {
                // The create may still happen once the cluster answers: queue its undo
                // behind it on the owner thread.
                let rm = format!(
                    "{{\"prefix\": \"fs subvolume rm\", {}, \"force\": true}}",
                    self.subvolume_args(&request.name)
                );
                self.session.queue(move |c| {
                    if let Err(e) = c.mgr_command("fs subvolume rm", &rm) {
                        tracing::debug!(error = %e, "undo of a timed-out subvolume create");
                    }
                });
            }
            return Err(e);
        }
        // From here on, undo the subvolume if anything fails.
        let made = (|| {
            let path = self.path(&request.name)?;
            let mut export_id = self.cfg.first_export_id;
            while entries.iter().any(|e| e.export_id == export_id) {
                export_id += 1;
            }
            let share = Share {
                name: request.name.clone(),
                project: request.project.clone(),
                server: self.cfg.server.clone(),
                export_path: format!("/{}/{}", request.project, request.name),
                clients: request.clients.clone(),
            };
            entries.push(Entry {
                share: share.clone(),
                export_id,
                path,
            });
            self.write_entries(&entries)?;
            if let Err(e) = self.reload() {
                entries.pop();
                let _ = self.write_entries(&entries);
                return Err(e);
            }
            Ok(share)
        })();
        if made.is_err() {
            if let Err(undo) = self.remove_subvolume(&request.name) {
                tracing::warn!(share = %request.name, error = %undo, "undo of a failed share left its subvolume");
            }
        }
        made
    }

    fn get(&self, name: &str) -> Result<Option<Share>, ShareError> {
        Ok(self
            .read_entries()?
            .into_iter()
            .find(|e| e.share.name == name)
            .map(|e| e.share))
    }

    fn remove(&self, name: &str) -> Result<(), ShareError> {
        let _guard = self.lock();
        let mut entries = self.read_entries()?;
        let before = entries.len();
        entries.retain(|e| e.share.name != name);
        if entries.len() == before {
            return Err(ShareError::NotFound(name.to_owned()));
        }
        // Unexport first, then delete the data.
        self.write_entries(&entries)?;
        self.reload()?;
        self.remove_subvolume(name)
    }

    fn list(&self) -> Result<Vec<Share>, ShareError> {
        Ok(self.read_entries()?.into_iter().map(|e| e.share).collect())
    }
}

/// The exports file: per share, a marker comment then its `EXPORT` block.
fn render_entries(entries: &[Entry], fs_name: &str, fsal_user: &str) -> String {
    let mut s =
        String::from("# Written by kowabunga (Kylo); do not edit: changes are overwritten.\n");
    for e in entries {
        let clients: Vec<String> = e.share.clients.iter().map(IpNet::to_string).collect();
        let _ = write!(
            s,
            "\n{MARKER}name={} project={} export_id={} clients={} path={}\n\
             EXPORT {{\n\
             \tExport_Id = {};\n\
             \tPath = \"{}\";\n\
             \tPseudo = \"{}\";\n\
             \tProtocols = 4;\n\
             \tTransports = TCP;\n\
             \tSecType = sys;\n\
             \tSquash = No_Root_Squash;\n\
             \tAccess_Type = None;\n\
             \tCLIENT {{\n\
             \t\tClients = {};\n\
             \t\tAccess_Type = RW;\n\
             \t}}\n\
             \tFSAL {{\n\
             \t\tName = CEPH;\n\
             \t\tFilesystem = \"{}\";\n\
             \t\tUser_Id = \"{}\";\n\
             \t}}\n\
             }}\n",
            e.share.name,
            e.share.project,
            e.export_id,
            clients.join(","),
            e.path,
            e.export_id,
            e.path,
            e.share.export_path,
            clients.join(", "),
            fs_name,
            fsal_user,
        );
    }
    s
}

/// Reads back the marker comments written by [`render_entries`].
fn parse_entries(text: &str, server: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| l.strip_prefix(MARKER))
        .filter_map(|l| {
            let field = |k: &str| {
                l.split(' ')
                    .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            let (name, project) = (field("name")?, field("project")?);
            let clients = field("clients")?
                .split(',')
                .filter_map(|c| c.parse().ok())
                .collect();
            Some(Entry {
                share: Share {
                    name: name.to_owned(),
                    project: project.to_owned(),
                    server: server.to_owned(),
                    export_path: format!("/{project}/{name}"),
                    clients,
                },
                export_id: field("export_id")?.parse().ok()?,
                path: field("path")?.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, id: u32, clients: &[&str]) -> Entry {
        Entry {
            share: Share {
                name: name.into(),
                project: "acme".into(),
                server: "10.0.0.5".into(),
                export_path: format!("/acme/{name}"),
                clients: clients.iter().map(|c| c.parse().expect("net")).collect(),
            },
            export_id: id,
            path: format!("/volumes/_nogroup/{name}/0c6f"),
        }
    }

    #[test]
    fn exports_file_round_trip() {
        let entries = vec![
            entry("acme-nfs", 100, &["10.0.0.0/25"]),
            entry("acme-logs", 101, &["10.0.0.0/25", "fd00::/64"]),
        ];
        let text = render_entries(&entries, "cephfs", "kylo");
        assert!(text.contains("Clients = 10.0.0.0/25, fd00::/64;"), "{text}");
        assert!(text.contains("Pseudo = \"/acme/acme-nfs\";"));
        assert!(
            text.contains("Access_Type = None;"),
            "only the CLIENT block grants access"
        );
        assert!(text.contains("User_Id = \"kylo\";"));
        assert_eq!(text.matches("EXPORT {").count(), 2);
        assert_eq!(parse_entries(&text, "10.0.0.5"), entries);
        assert!(parse_entries("", "x").is_empty());
    }

    #[test]
    fn names_and_json() {
        assert!(check_share_name("share", "acme-nfs_1").is_ok());
        for bad in ["", "-x", "a b", "a/b", "a\"b", &"x".repeat(65)] {
            assert!(check_share_name("share", bad).is_err(), "{bad:?}");
        }
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
