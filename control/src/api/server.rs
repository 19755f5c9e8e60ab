//! The daemon's side of the socket: a task accepting connections on a
//! [`UnixListener`] (mode 0600, root only), decoding one request per line
//! and handing it to the daemon's loop through an [`Inbox`]; the loop
//! answers with the daemon in hand (see [`super::handle`]), so a request
//! never races a reload.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::wire::{self, ErrorKind, Request, RequestMsg, ResponseMsg};
use super::ApiError;

/// Longest request line accepted.
const MAX_LINE: usize = 4096;
/// Requests waiting for the loop.
const QUEUE: usize = 16;

/// A request with where its answer goes.
pub type Pending = (Request, oneshot::Sender<ResponseMsg>);

/// The loop's end: requests to answer.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Pending>,
    tx: mpsc::Sender<Pending>,
    path: Option<PathBuf>,
}

impl Inbox {
    /// The next request.
    pub async fn recv(&mut self) -> Pending {
        match self.rx.recv().await {
            Some(p) => p,
            None => std::future::pending().await,
        }
    }

    /// An inbox no request ever reaches (the socket could not be bound:
    /// the daemon runs on without it).
    pub fn closed() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Inbox { rx, tx, path: None }
    }

    /// Another way in (the metrics listener asks through it).
    pub fn sender(&self) -> mpsc::Sender<Pending> {
        self.tx.clone()
    }

    /// The socket's path (`None` for [`Inbox::closed`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds `path` (its directory created 0700 if missing, a stale socket
/// replaced), makes it 0600 and starts the accept task (call inside a
/// runtime).
///
/// # Errors
/// [`ApiError::Bind`].
pub fn start(path: &Path) -> Result<Inbox, ApiError> {
    let bind_err = |source| ApiError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(bind_err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(bind_err)?;
        }
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ApiError::InUse(path.to_owned()));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(accept_loop(listener, tx.clone()));
    Ok(Inbox {
        rx,
        tx,
        path: Some(path.to_owned()),
    })
}

async fn accept_loop(listener: UnixListener, tx: mpsc::Sender<Pending>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, tx.clone()));
            }
            Err(e) => {
                warn!("operator socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers the requests of one connection, in order, until it closes.
async fn serve(stream: UnixStream, tx: mpsc::Sender<Pending>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut lines)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await
        {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                debug!("operator socket: read failed: {e}");
                return;
            }
        }
        let response = if !line.ends_with('\n') {
            ResponseMsg::err(ErrorKind::BadRequest, "request line too long")
        } else {
            match wire::decode::<RequestMsg>(&line) {
                Err(e) => ResponseMsg::err(ErrorKind::BadRequest, e.to_string()),
                Ok(msg) => ask(&tx, msg.request).await,
            }
        };
        let too_long = !line.ends_with('\n');
        if write
            .write_all(wire::encode(&response).as_bytes())
            .await
            .is_err()
            || too_long
        {
            return;
        }
    }
}

async fn ask(tx: &mpsc::Sender<Pending>, request: Request) -> ResponseMsg {
    let (reply, answer) = oneshot::channel();
    if tx.send((request, reply)).await.is_err() {
        return ResponseMsg::err(ErrorKind::Runtime, "the daemon is shutting down");
    }
    answer
        .await
        .unwrap_or_else(|_| ResponseMsg::err(ErrorKind::Runtime, "the daemon dropped the request"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::client;
    use crate::api::wire::{Answer, ReloadDone};
    use std::io::{BufRead as _, Write as _};

    fn temp_socket(tag: &str) -> PathBuf {
        std::env::temp_dir()
            .join(format!("kw-api-{tag}-{}", std::process::id()))
            .join("kowabungad.sock")
    }

    /// A loop that answers every request with a reload of generation 7.
    async fn answer_all(mut inbox: Inbox) {
        loop {
            let (request, reply) = inbox.recv().await;
            let answer = match request {
                Request::Reload => ResponseMsg::ok(Answer::Reload(ReloadDone {
                    generation: 7,
                    changed: vec![],
                })),
                _ => ResponseMsg::err(ErrorKind::NoRole, "this node does not run it"),
            };
            let _ = reply.send(answer);
        }
    }

    #[test]
    fn the_socket_is_root_only_and_answers_versioned_lines() -> anyhow::Result<()> {
        let path = temp_socket("rt");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let inbox = rt.block_on(async { start(&path) })?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().expect("a parent"))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        // a second daemon on the same path is refused, the first keeps it
        assert!(matches!(
            rt.block_on(async { start(&path) }),
            Err(ApiError::InUse(_))
        ));
        rt.spawn(answer_all(inbox));

        // the CLI's client, twice on fresh connections
        for _ in 0..2 {
            match client::ask(&path, Request::Reload) {
                Ok(Answer::Reload(r)) => assert_eq!(r.generation, 7),
                other => panic!("unexpected {other:?}"),
            }
        }
        match client::ask(&path, Request::Vrrp) {
            Err(ApiError::Daemon(e)) => assert_eq!(e.kind, ErrorKind::NoRole),
            other => panic!("unexpected {other:?}"),
        }

        // raw lines: another version and garbage get clear errors, the
        // connection stays usable
        let stream = std::os::unix::net::UnixStream::connect(&path)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut reader = std::io::BufReader::new(stream.try_clone()?);
        let mut ask_raw = |line: &str| -> anyhow::Result<String> {
            (&stream).write_all(line.as_bytes())?;
            let mut answer = String::new();
            reader.read_line(&mut answer)?;
            Ok(answer)
        };
        let answer = ask_raw("{\"v\":2,\"request\":\"status\"}\n")?;
        assert!(answer.contains("\"bad_request\""), "{answer}");
        assert!(
            answer.contains("protocol version 2 is not supported"),
            "{answer}"
        );
        let answer = ask_raw("hello\n")?;
        assert!(answer.contains("malformed message"), "{answer}");
        let answer = ask_raw("{\"v\":1,\"request\":\"reload\"}\n")?;
        assert!(answer.contains("\"generation\":7"), "{answer}");

        drop(rt);
        let _ = std::fs::remove_dir_all(path.parent().expect("a parent"));
        Ok(())
    }

    #[test]
    fn no_daemon_is_unreachable() {
        let path = temp_socket("none");
        assert!(matches!(
            client::ask(&path, Request::Status),
            Err(ApiError::Unreachable { .. })
        ));
    }
}
