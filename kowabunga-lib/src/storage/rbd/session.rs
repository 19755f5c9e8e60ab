//! A librados connection owned by one thread, driven with timeouts.
//!
//! `ceph::ceph::Rados` is not `Send`, an `IoCtx` that outlives its `Rados` crashes, and
//! calling `disconnect_from_ceph()` before dropping `Rados` shuts librados down twice and
//! hangs. So the connection is created, used and dropped on one dedicated thread: callers
//! send it closures and wait for the answer with a deadline. A call that does not answer in
//! time (librados blocks while no OSD or monitor answers) gives [`CephError::Timeout`] to the
//! caller; the thread goes on with the next call once librados gives up (the `rados_*_op_timeout`
//! options, set on the connection), and makes the connection anew after such a failure (a
//! client whose OSD restarted at the same address may otherwise never find it again).
//! Calls run in the order they were sent, which lets a caller queue the undo of an
//! operation that timed out behind it.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use ceph::ceph::{IoCtx, Rados};

use super::{errno_error, ffi, CephError};

/// The connection as seen from inside the owner thread.
pub(crate) struct Conn {
    // Declared before `rados` so that they are dropped first; `Drop` also clears them first.
    ioctxs: HashMap<String, IoCtx>,
    rados: Rados,
    /// Set when librados gave up on a call: the connection is made anew before the next.
    broken: bool,
}

impl Conn {
    /// The I/O context of `pool`, opened on first use and kept.
    pub(crate) fn ioctx(&mut self, pool: &str) -> Result<&IoCtx, CephError> {
        if !self.ioctxs.contains_key(pool) {
            let io = self.rados.get_rados_ioctx(pool).map_err(|e| {
                let text = e.to_string();
                if text.contains("ENOENT") || text.contains("No such file") {
                    CephError::PoolNotFound(pool.to_owned())
                } else {
                    CephError::Rados {
                        op: "ioctx_create",
                        detail: text,
                    }
                }
            })?;
            self.ioctxs.insert(pool.to_owned(), io);
        }
        Ok(&self.ioctxs[pool])
    }

    /// Sends one JSON command to the active ceph-mgr; returns its output buffer.
    pub(crate) fn mgr_command(&self, op: &'static str, json: &str) -> Result<String, CephError> {
        let cmd = CString::new(json).map_err(|_| CephError::InvalidName(json.to_owned()))?;
        let mut cmds = [cmd.as_ptr()];
        let (mut outbuf, mut outbuf_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        let (mut outs, mut outs_len): (*mut c_char, usize) = (std::ptr::null_mut(), 0);
        // SAFETY: the rados handle is connected and owned by this thread; `cmds` holds one
        // valid C string that outlives the call; librados allocates the output buffers.
        let ret = unsafe {
            ffi::rados_mgr_command(
                *self.rados.inner(),
                cmds.as_mut_ptr(),
                1,
                std::ptr::null(),
                0,
                &mut outbuf,
                &mut outbuf_len,
                &mut outs,
                &mut outs_len,
            )
        };
        let take = |p: *mut c_char, len: usize| -> String {
            if p.is_null() {
                return String::new();
            }
            // SAFETY: librados returned `len` readable bytes at `p` (not NUL-terminated).
            let s = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
            let s = String::from_utf8_lossy(s).into_owned();
            // SAFETY: `p` was allocated by librados for this call and is freed once.
            unsafe { ceph::rados::rados_buffer_free(p) };
            s
        };
        let out = take(outbuf, outbuf_len);
        let status = take(outs, outs_len);
        if ret < 0 {
            return Err(match errno_error(op, json, ret) {
                CephError::Rbd { op, name, source } => CephError::Command {
                    op,
                    detail: format!("{name}: {source}: {}", status.trim()),
                },
                other => other,
            });
        }
        Ok(out)
    }

    fn set_option(&self, name: &str, value: &str) {
        let (Ok(n), Ok(v)) = (CString::new(name), CString::new(value)) else {
            return;
        };
        // SAFETY: valid handle and C strings; setting an option is allowed after connect.
        let ret =
            unsafe { ceph::rados::rados_conf_set(*self.rados.inner(), n.as_ptr(), v.as_ptr()) };
        if ret < 0 {
            tracing::debug!(option = name, ret, "rados_conf_set refused");
        }
    }

    /// The value of a configuration option (e.g. `mon_host`).
    pub(crate) fn config(&self, name: &str) -> Option<String> {
        self.rados.config_get(name).ok()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Every IoCtx before the Rados (whose own Drop calls rados_shutdown once).
        self.ioctxs.clear();
    }
}

/// A call for the owner thread; `None` when the connection is down and could not be
/// made again.
type Job = Box<dyn FnOnce(Option<&mut Conn>) + Send>;

/// Connection parameters of a [`CephSession`].
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub conf: PathBuf,
    pub user: String,
    pub connect_timeout: Duration,
    pub op_timeout: Duration,
}

/// A handle on the owner thread (`Send + Sync`). Dropping it ends the thread once its
/// current call returns, which then drops the connection in order.
#[derive(Debug)]
pub(crate) struct CephSession {
    tx: mpsc::Sender<Job>,
    op_timeout: Duration,
}

impl CephSession {
    /// Starts the owner thread and connects, waiting at most `connect_timeout`.
    pub(crate) fn connect(cfg: &SessionConfig) -> Result<Self, CephError> {
        check_conf(&cfg.conf)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let (conf, user) = (cfg.conf.to_string_lossy().into_owned(), cfg.user.clone());
        // librados' own bound must exceed objecter_timeout (10 s) + objecter_tick_interval
        // (5 s): only an op that lives that long makes the client fetch a new OSD map (an
        // OSD restarted at the same address is otherwise never found again).
        let op_secs = cfg.op_timeout.as_secs().max(30).to_string();
        std::thread::Builder::new()
            .name("kowabunga-ceph".into())
            .spawn(move || {
                let open = || -> Result<Conn, String> {
                    let rados =
                        ceph::ceph::connect_to_ceph(&user, &conf).map_err(|e| e.to_string())?;
                    let conn = Conn {
                        ioctxs: HashMap::new(),
                        rados,
                        broken: false,
                    };
                    // Bound librados' own waits so that this thread comes back after a
                    // caller's timeout, unless the operator's ceph.conf chose a bound.
                    for opt in ["rados_osd_op_timeout", "rados_mon_op_timeout"] {
                        if conn.config(opt).is_none_or(|v| v.trim() == "0") {
                            conn.set_option(opt, &op_secs);
                        }
                    }
                    Ok(conn)
                };
                let mut conn = match open() {
                    Ok(c) => Some(c),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_err() {
                    return; // the caller gave up; drop the connection
                }
                while let Ok(job) = rx.recv() {
                    if conn.as_ref().is_none_or(|c| c.broken) {
                        // Drop the old connection (IoCtxs, then Rados) before a new one.
                        conn = None;
                        match open() {
                            Ok(c) => conn = Some(c),
                            Err(e) => tracing::warn!(error = %e, "ceph reconnect failed"),
                        }
                    }
                    let _ = catch_unwind(AssertUnwindSafe(|| job(conn.as_mut())));
                }
                drop(conn);
            })
            .map_err(|e| CephError::CephDown(format!("cannot start the ceph thread: {e}")))?;
        match ready_rx.recv_timeout(cfg.connect_timeout) {
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CephError::CephDown(format!(
                "no answer from the monitors of {} within {:?}",
                cfg.conf.display(),
                cfg.connect_timeout
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CephError::CephDown(
                "the ceph thread ended while connecting".into(),
            )),
            Ok(Err(e)) => Err(CephError::CephDown(format!(
                "connect as client.{}: {e}",
                cfg.user
            ))),
            Ok(Ok(())) => Ok(CephSession {
                tx,
                op_timeout: cfg.op_timeout,
            }),
        }
    }

    /// Runs `f` on the owner thread, waiting at most the operation timeout.
    pub(crate) fn call<R, F>(&self, op: &'static str, f: F) -> Result<R, CephError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, CephError> + Send + 'static,
    {
        self.call_within(op, self.op_timeout, f)
    }

    /// [`Self::call`] with an explicit deadline (bulk writes need more than one op's time).
    pub(crate) fn call_within<R, F>(
        &self,
        op: &'static str,
        limit: Duration,
        f: F,
    ) -> Result<R, CephError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Conn) -> Result<R, CephError> + Send + 'static,
    {
        let (otx, orx) = mpsc::sync_channel(1);
        self.send(Box::new(move |c: Option<&mut Conn>| {
            let result = match c {
                None => Err(CephError::CephDown(
                    "not connected (reconnecting failed)".into(),
                )),
                Some(c) => {
                    let r = f(c);
                    if matches!(r, Err(CephError::CephDown(_))) {
                        c.broken = true;
                    }
                    r
                }
            };
            let _ = otx.send(result);
        }))?;
        match orx.recv_timeout(limit) {
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CephError::Timeout { op, after: limit }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(CephError::CephDown(format!(
                "{op}: the call panicked in the ceph thread"
            ))),
            Ok(r) => r,
        }
    }

    /// Queues `f` without waiting (used to undo an operation whose caller timed out: it
    /// runs after that operation, whenever librados lets it finish).
    pub(crate) fn queue<F>(&self, f: F)
    where
        F: FnOnce(&mut Conn) + Send + 'static,
    {
        let _ = self.send(Box::new(move |c: Option<&mut Conn>| {
            if let Some(c) = c {
                f(c);
            }
        }));
    }

    fn send(&self, job: Job) -> Result<(), CephError> {
        self.tx
            .send(job)
            .map_err(|_| CephError::CephDown("the ceph thread is gone".into()))
    }
}

/// A missing or unreadable ceph.conf is a configuration error, not a down cluster.
fn check_conf(conf: &Path) -> Result<(), CephError> {
    std::fs::metadata(conf)
        .map(|_| ())
        .map_err(|e| CephError::Config(format!("{}: {e}", conf.display())))
}
