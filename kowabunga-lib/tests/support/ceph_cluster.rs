//! A throwaway single-node Ceph cluster for integration tests.
//!
//! One `ceph-mon`, one `ceph-mgr`, one bluestore `ceph-osd` on a sparse file and one
//! `ceph-mds`, all on 127.0.0.1 with cephx, in a temporary directory of their own (own
//! `ceph.conf`, keyrings, logs, sockets). No systemd: every daemon is a child of the test
//! process, started in the foreground and killed by pid when the [`CephCluster`] is dropped
//! (also while a test panics). A cluster whose test process died without dropping it (for
//! instance killed by a timeout) is swept by the next [`CephCluster::start`].
//!
//! Every `ceph`/`rbd` command runs under coreutils `timeout`: they hang while no OSD is up.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Binaries the cluster needs, with the Debian package that ships each one.
const BINARIES: &[(&str, &str)] = &[
    ("ceph-mon", "ceph-mon"),
    ("ceph-mgr", "ceph-mgr"),
    ("ceph-osd", "ceph-osd"),
    ("ceph-mds", "ceph-mds"),
    ("ceph", "ceph-common"),
    ("rbd", "ceph-common"),
    ("ceph-authtool", "ceph-common"),
    ("monmaptool", "ceph-common"),
    ("timeout", "coreutils"),
];

/// Prefix of the temporary directories of the clusters (used by the stale sweep).
const DIR_PREFIX: &str = "kowabunga-ceph-";

/// Size of the sparse bluestore block file.
const BLOCK_SIZE: u64 = 20 << 30;

/// The first binary of [`BINARIES`] not found here, with its package, if any.
pub fn missing_binary() -> Option<String> {
    BINARIES
        .iter()
        .find(|(bin, _)| which(bin).is_none())
        .map(|(bin, pkg)| format!("`{bin}` (apt-get install {pkg}, or `cargo xtask deps`)"))
}

/// Returns `true` when the caller should skip (and prints why): the process is not
/// privileged (the daemons, ceph-fuse and nfs-ganesha need root) or a binary is missing.
/// Panics instead where skipping is forbidden (see `kowabunga_testkit`).
pub fn skip_unless_available(test: &str) -> bool {
    if !kowabunga_testkit::privileged(test) {
        return true;
    }
    match missing_binary() {
        None => false,
        Some(what) => !kowabunga_testkit::missing(test, &what),
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Runs a command bounded by `limit`, returning stdout or a message with stderr.
pub fn run_bounded(program: &str, args: &[&str], limit: Duration) -> Result<String, String> {
    let secs = limit.as_secs().max(1).to_string();
    let out = Command::new("timeout")
        .args(["--kill-after=5", &secs, program])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let code = out.status.code();
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            if code == Some(124) {
                format!("timed out after {secs} s")
            } else {
                format!("exit {code:?}")
            },
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Polls `check` every 250 ms until it returns `true` or `limit` passes.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not ready after {limit:?}"));
        }
        sleep(Duration::from_millis(250));
    }
}

/// A daemon (or other long-running helper) started by the fixture.
struct Daemon {
    name: String,
    program: String,
    args: Vec<String>,
    child: Child,
}

/// A running throwaway cluster; dropping it kills every daemon and removes its directory.
pub struct CephCluster {
    dir: PathBuf,
    conf: PathBuf,
    mon_port: u16,
    mon_port_v1: u16,
    daemons: Vec<Daemon>,
    mounts: Vec<PathBuf>,
    /// Time from the first command to a cluster with active PGs, an active mgr and MDS.
    pub start_time: Duration,
    /// When each stage was seen ready, from the first command (upper bounds: polled).
    pub stages: Vec<(&'static str, Duration)>,
    /// Name of the RBD pool created at start.
    pub rbd_pool: String,
    /// Name of the CephFS file system created at start.
    pub fs_name: String,
}

impl CephCluster {
    /// Bootstraps and starts the cluster, then creates the `rbd` pool and the `cephfs`
    /// file system. Blocks until everything is up (bounded).
    pub fn start() -> Result<Self, String> {
        sweep_stale();
        let t0 = Instant::now();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{stamp}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        fs::write(dir.join("owner.pid"), std::process::id().to_string())
            .map_err(|e| e.to_string())?;
        let mut cluster = CephCluster {
            conf: dir.join("ceph.conf"),
            dir,
            mon_port: free_port(),
            mon_port_v1: free_port(),
            daemons: Vec::new(),
            mounts: Vec::new(),
            start_time: Duration::ZERO,
            stages: Vec::new(),
            rbd_pool: "rbd".into(),
            fs_name: "cephfs".into(),
        };
        if let Err(e) = cluster.bootstrap(t0) {
            return Err(format!("{e}\n{}", cluster.log_tails()));
        }
        cluster.start_time = t0.elapsed();
        let stages: Vec<String> = cluster
            .stages
            .iter()
            .map(|(what, at)| format!("{what} {:.1} s", at.as_secs_f64()))
            .collect();
        eprintln!(
            "ceph cluster up in {:.1} s ({}; mon 127.0.0.1:{}, dir {})",
            cluster.start_time.as_secs_f64(),
            stages.join(", "),
            cluster.mon_port,
            cluster.dir.display()
        );
        Ok(cluster)
    }

    fn bootstrap(&mut self, t0: Instant) -> Result<(), String> {
        let d = self.dir.clone();
        for sub in [
            "run",
            "log",
            "mon",
            "osd/ceph-0",
            "mgr/ceph-x",
            "mds/ceph-a",
        ] {
            fs::create_dir_all(d.join(sub)).map_err(|e| e.to_string())?;
        }
        let fsid = uuid();
        fs::write(&self.conf, self.conf_text(&fsid)).map_err(|e| e.to_string())?;
        let t = Duration::from_secs(30);
        let path = |name: &str| d.join(name).to_string_lossy().into_owned();
        let keyring = |entity: &str| path(&format!("ceph.{entity}.keyring"));

        // Keys: the mon's, then admin, mgr and mds imported into the mon's initial keyring
        // (mkfs loads them into the auth database).
        run_bounded(
            "ceph-authtool",
            &[
                "--create-keyring",
                &keyring("mon."),
                "--gen-key",
                "-n",
                "mon.",
                "--cap",
                "mon",
                "allow *",
            ],
            t,
        )?;
        let entities: [(&str, &[&str]); 3] = [
            (
                "client.admin",
                &[
                    "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mds",
                    "allow *", "--cap", "mgr", "allow *",
                ],
            ),
            (
                "mgr.x",
                &[
                    "--cap",
                    "mon",
                    "allow profile mgr",
                    "--cap",
                    "osd",
                    "allow *",
                    "--cap",
                    "mds",
                    "allow *",
                ],
            ),
            (
                "mds.a",
                &[
                    "--cap",
                    "mon",
                    "allow profile mds",
                    "--cap",
                    "osd",
                    "allow *",
                    "--cap",
                    "mds",
                    "allow",
                    "--cap",
                    "mgr",
                    "allow profile mds",
                ],
            ),
        ];
        for (entity, caps) in entities {
            let file = keyring(entity);
            let mut args = vec!["--create-keyring", &file, "--gen-key", "-n", entity];
            args.extend_from_slice(caps);
            run_bounded("ceph-authtool", &args, t)?;
            run_bounded(
                "ceph-authtool",
                &[&keyring("mon."), "--import-keyring", &keyring(entity)],
                t,
            )?;
        }
        let monmap = path("monmap");
        let addr = format!(
            "[v2:127.0.0.1:{},v1:127.0.0.1:{}]",
            self.mon_port, self.mon_port_v1
        );
        run_bounded(
            "monmaptool",
            &["--create", "--addv", "a", &addr, "--fsid", &fsid, &monmap],
            t,
        )?;
        let conf = self.conf.to_string_lossy().into_owned();
        run_bounded(
            "ceph-mon",
            &[
                "-c",
                &conf,
                "--mkfs",
                "-i",
                "a",
                "--monmap",
                &monmap,
                "--keyring",
                &keyring("mon."),
            ],
            t,
        )?;
        self.spawn("mon.a", "ceph-mon", &["-c", &conf, "-i", "a", "-f"])?;
        self.spawn("mgr.x", "ceph-mgr", &["-c", &conf, "-i", "x", "-f"])?;

        // The OSD: register it (with its cephx secret) and build its bluestore.
        let osd_uuid = uuid();
        let osd_key = run_bounded("ceph-authtool", &["--gen-print-key"], t)?
            .trim()
            .to_owned();
        fs::write(keyring("osd.0"), format!("[osd.0]\n\tkey = {osd_key}\n"))
            .map_err(|e| e.to_string())?;
        let secrets = path("osd-secrets.json");
        fs::write(&secrets, format!("{{\"cephx_secret\": \"{osd_key}\"}}"))
            .map_err(|e| e.to_string())?;
        let id = self.ceph(&["osd", "new", &osd_uuid, "-i", &secrets])?;
        if id.trim() != "0" {
            return Err(format!("`ceph osd new` gave id {id:?}, expected 0"));
        }
        run_bounded(
            "ceph-osd",
            &["-c", &conf, "-i", "0", "--mkfs", "--osd-uuid", &osd_uuid],
            Duration::from_secs(60),
        )?;
        self.spawn("osd.0", "ceph-osd", &["-c", &conf, "-i", "0", "-f"])?;
        self.spawn("mds.a", "ceph-mds", &["-c", &conf, "-i", "a", "-f"])?;

        wait_for("osd.0 up", Duration::from_secs(60), || {
            self.ceph(&["osd", "stat"])
                .map(|s| s.contains("1 up"))
                .unwrap_or(false)
        })?;
        self.stages.push(("mon+osd up", t0.elapsed()));
        // Pools: RBD, and CephFS with its metadata and data pools.
        let pool = self.rbd_pool.clone();
        self.ceph(&["osd", "pool", "create", &pool, "8", "8"])?;
        self.ceph(&["osd", "pool", "application", "enable", &pool, "rbd"])?;
        self.ceph(&["osd", "pool", "create", "cephfs_metadata", "8", "8"])?;
        self.ceph(&["osd", "pool", "create", "cephfs_data", "8", "8"])?;
        let fs_name = self.fs_name.clone();
        self.ceph(&["fs", "new", &fs_name, "cephfs_metadata", "cephfs_data"])?;
        wait_for("all PGs active", Duration::from_secs(60), || {
            self.ceph(&["pg", "stat"])
                .map(|s| pgs_all_active(&s))
                .unwrap_or(false)
        })?;
        self.stages.push(("pools and PGs active", t0.elapsed()));
        wait_for("mgr active", Duration::from_secs(90), || {
            self.ceph(&["mgr", "stat"])
                .map(|s| s.contains("\"available\": true"))
                .unwrap_or(false)
        })?;
        self.stages.push(("mgr active", t0.elapsed()));
        wait_for("mds active", Duration::from_secs(60), || {
            self.ceph(&["fs", "status", &fs_name])
                .map(|s| s.contains("active"))
                .unwrap_or(false)
        })?;
        self.stages.push(("mds active", t0.elapsed()));
        Ok(())
    }

    fn conf_text(&self, fsid: &str) -> String {
        let d = self.dir.display();
        let mut s = String::new();
        let _ = write!(
            s,
            "[global]
fsid = {fsid}
mon_host = [v2:127.0.0.1:{port},v1:127.0.0.1:{port_v1}]
public_addr = 127.0.0.1
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
ms_bind_msgr1 = true
ms_bind_msgr2 = true
run_dir = {d}/run
admin_socket = {d}/run/$cluster-$name.$pid.asok
log_file = {d}/log/$cluster-$name.log
keyring = {d}/$cluster.$name.keyring
mon_data = {d}/mon/$cluster-$id
osd_data = {d}/osd/$cluster-$id
mgr_data = {d}/mgr/$cluster-$id
mds_data = {d}/mds/$cluster-$id
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
auth_allow_insecure_global_id_reclaim = false
osd_objectstore = bluestore
bluestore_block_path = {d}/osd-0.block
bluestore_block_create = true
bluestore_block_size = {BLOCK_SIZE}
bluestore_block_db_create = false
bluestore_block_wal_create = false
bluestore_fsck_on_mount = false
osd_memory_target = 1073741824
# Above objecter_timeout (10 s) + objecter_tick_interval (5 s): a laggy op makes the
# client fetch a new OSD map (e.g. after an OSD restart) before librados gives up on it.
rados_osd_op_timeout = 30
rados_mon_op_timeout = 30
client_mount_timeout = 10
",
            port = self.mon_port,
            port_v1 = self.mon_port_v1,
        );
        s
    }

    fn spawn(&mut self, name: &str, program: &str, args: &[&str]) -> Result<(), String> {
        let log = |ext: &str| {
            fs::File::create(self.dir.join("log").join(format!("{name}.{ext}")))
                .map_err(|e| e.to_string())
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log("out")?)
            .stderr(log("err")?)
            .spawn()
            .map_err(|e| format!("spawn {program}: {e}"))?;
        self.daemons.push(Daemon {
            name: name.to_owned(),
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child,
        });
        self.record_pids();
        Ok(())
    }

    fn record_pids(&self) {
        let pids: Vec<String> = self
            .daemons
            .iter()
            .map(|d| d.child.id().to_string())
            .collect();
        let _ = fs::write(self.dir.join("daemons.pids"), pids.join("\n"));
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|m| m.display().to_string())
            .collect();
        let _ = fs::write(self.dir.join("mounts"), mounts.join("\n"));
    }

    /// The cluster's `ceph.conf` (its `keyring` line finds `client.admin`'s key).
    pub fn conf_path(&self) -> &Path {
        &self.conf
    }

    /// The cluster's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ceph -c CONF ARGS...`, bounded by 30 s.
    pub fn ceph(&self, args: &[&str]) -> Result<String, String> {
        let conf = self.conf.to_string_lossy();
        let mut all = vec!["-c", &conf, "--connect-timeout", "15"];
        all.extend_from_slice(args);
        run_bounded("ceph", &all, Duration::from_secs(30))
    }

    /// `rbd -c CONF ARGS...`, bounded by 60 s.
    pub fn rbd(&self, args: &[&str]) -> Result<String, String> {
        let conf = self.conf.to_string_lossy();
        let mut all = vec!["-c", &conf];
        all.extend_from_slice(args);
        run_bounded("rbd", &all, Duration::from_secs(60))
    }

    /// Mounts `root` of the CephFS with ceph-fuse (in the foreground, as a child) and
    /// returns the mount point; it is unmounted on drop.
    pub fn mount_cephfs(&mut self, root: &str) -> Result<PathBuf, String> {
        let mnt = self.dir.join(format!("mnt-{}", self.mounts.len()));
        fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        let conf = self.conf.to_string_lossy().into_owned();
        let m = mnt.to_string_lossy().into_owned();
        self.spawn(
            &format!("fuse-{}", self.mounts.len()),
            "ceph-fuse",
            &["-f", "-c", &conf, "-n", "client.admin", "-r", root, &m],
        )?;
        self.mounts.push(mnt.clone());
        self.record_pids();
        wait_for("ceph-fuse mount", Duration::from_secs(30), || {
            is_mounted(&mnt)
        })?;
        Ok(mnt)
    }

    /// Starts nfs-ganesha in the foreground on 127.0.0.1:`port` with the given main
    /// config (written by the caller); returns its pid file. Killed on drop.
    pub fn start_ganesha(&mut self, config: &Path, port: u16) -> Result<PathBuf, String> {
        let pid_file = self.dir.join("run/ganesha.pid");
        let log = self.dir.join("log/ganesha.log");
        let (c, l, p) = (
            config.to_string_lossy(),
            log.to_string_lossy(),
            pid_file.to_string_lossy(),
        );
        self.spawn(
            "ganesha",
            "ganesha.nfsd",
            &["-F", "-f", &c, "-L", &l, "-p", &p, "-N", "NIV_EVENT"],
        )?;
        wait_for("nfs-ganesha listening", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && pid_file.exists()
        })?;
        Ok(pid_file)
    }

    /// Kills one daemon (e.g. `"osd.0"`), to simulate a failure.
    pub fn kill(&mut self, name: &str) {
        if let Some(pos) = self.daemons.iter().position(|d| d.name == name) {
            let mut d = self.daemons.remove(pos);
            let _ = d.child.kill();
            let _ = d.child.wait();
            self.record_pids();
        }
    }

    /// Kills a daemon (SIGKILL) and starts it again with the same arguments.
    pub fn restart(&mut self, name: &str) -> Result<(), String> {
        let pos = self
            .daemons
            .iter()
            .position(|d| d.name == name)
            .ok_or(format!("no daemon {name}"))?;
        let mut d = self.daemons.remove(pos);
        let _ = d.child.kill();
        let _ = d.child.wait();
        let args: Vec<&str> = d.args.iter().map(String::as_str).collect();
        self.spawn(&d.name, &d.program, &args)
    }

    /// Kills a daemon (SIGKILL) but keeps it listed, so that [`CephCluster::restart`]
    /// starts it again.
    pub fn pause(&mut self, name: &str) {
        if let Some(d) = self.daemons.iter_mut().find(|d| d.name == name) {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }

    /// The monitor's msgr v1 address (`127.0.0.1:port`), what qemu/libvirt hosts use.
    pub fn mon_v1_addr(&self) -> String {
        format!("127.0.0.1:{}", self.mon_port_v1)
    }

    /// Kills every daemon (Ceph down) but keeps the directory.
    pub fn kill_all(&mut self) {
        for m in std::mem::take(&mut self.mounts) {
            unmount(&m);
        }
        for mut d in self.daemons.drain(..).rev() {
            terminate(&mut d.child);
        }
        self.record_pids();
    }

    /// The last lines of every log, for failure messages (no keys are logged by Ceph).
    pub fn log_tails(&self) -> String {
        let mut s = String::new();
        if let Ok(entries) = fs::read_dir(self.dir.join("log")) {
            for e in entries.flatten() {
                let text = fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(8)..];
                if !tail.is_empty() {
                    let _ = writeln!(s, "--- {}:\n{}", e.path().display(), tail.join("\n"));
                }
            }
        }
        s
    }
}

impl Drop for CephCluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::env::var_os("KOWABUNGA_KEEP_CEPH").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn terminate(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn is_mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    fs::read_to_string("/proc/mounts")
        .map(|m| m.lines().any(|l| l.split(' ').nth(1) == Some(&*p)))
        .unwrap_or(false)
}

fn unmount(path: &Path) {
    if is_mounted(path) {
        let p = path.to_string_lossy();
        if run_bounded("umount", &[&p], Duration::from_secs(10)).is_err() {
            let _ = run_bounded("umount", &["-l", &p], Duration::from_secs(10));
        }
    }
}

fn pgs_all_active(stat: &str) -> bool {
    // "25 pgs: 25 active+clean; ..."
    let Some((total, rest)) = stat.split_once(" pgs: ") else {
        return false;
    };
    let states = rest.split(';').next().unwrap_or("");
    let active: u32 = states
        .split(',')
        .filter_map(|s| {
            let (n, state) = s.trim().split_once(' ')?;
            state
                .starts_with("active")
                .then(|| n.parse::<u32>().ok())
                .flatten()
        })
        .sum();
    total
        .trim()
        .parse::<u32>()
        .map(|t| t > 0 && t == active)
        .unwrap_or(false)
}

fn uuid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .expect("kernel uuid")
}

/// Kills the daemons of clusters whose test process is gone and removes their directories.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = e.path();
        let owner = fs::read_to_string(dir.join("owner.pid")).unwrap_or_default();
        if owner.trim().is_empty() || Path::new(&format!("/proc/{}", owner.trim())).exists() {
            continue;
        }
        for m in fs::read_to_string(dir.join("mounts"))
            .unwrap_or_default()
            .lines()
        {
            unmount(Path::new(m));
        }
        let dir_s = dir.to_string_lossy().into_owned();
        for pid in fs::read_to_string(dir.join("daemons.pids"))
            .unwrap_or_default()
            .lines()
        {
            let Ok(pid) = pid.trim().parse::<i32>() else {
                continue;
            };
            // Only kill a process that still refers to this cluster's directory.
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&dir_s) {
                // SAFETY: kill(2) with a pid checked to be one of that cluster's daemons.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        sleep(Duration::from_millis(200));
        let _ = fs::remove_dir_all(&dir);
        eprintln!("swept a stale ceph test cluster: {dir_s}");
    }
}

#[test]
fn pg_stat_parsing() {
    assert!(pgs_all_active("25 pgs: 25 active+clean; 2.3 KiB data"));
    assert!(pgs_all_active(
        "25 pgs: 20 active+clean, 5 active+clean+scrubbing; x"
    ));
    assert!(!pgs_all_active(
        "25 pgs: 16 unknown, 9 active+clean; 0 B data"
    ));
    assert!(!pgs_all_active("0 pgs: ; 0 B"));
}
