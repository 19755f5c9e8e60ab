//! Kylo file shares: NFSv4 exports reachable from a project's subnet only.
//!
//! [`FileShares`] is the backend trait, chosen at runtime; the `ceph`
//! feature provides a CephFS subvolume exported by nfs-ganesha
//! (`kylo::ceph_nfs`). [`MemoryShares`] is an in-process bookkeeping backend
//! for tests and for services that only need the model.

#[cfg(feature = "ceph")]
pub mod ceph_nfs;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;

/// What a Kylo share is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRequest {
    /// Share name, unique in the backend (e.g. `acme-nfs`).
    pub name: String,
    /// Owning project.
    pub project: String,
    /// The only networks allowed to mount it (the project's subnets).
    pub clients: Vec<IpNet>,
    /// Optional size limit, bytes (`None`: as big as the cluster).
    pub quota_bytes: Option<u64>,
}

/// A share as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Share name.
    pub name: String,
    /// Owning project.
    pub project: String,
    /// NFS server address (`host` or `host:port`).
    pub server: String,
    /// NFSv4 export path (pseudo path) to mount.
    pub export_path: String,
    /// Networks allowed to mount it.
    pub clients: Vec<IpNet>,
}

/// Errors of file share backends.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// No such share.
    #[error("share {0:?} not found")]
    NotFound(String),
    /// A share of that name exists.
    #[error("share {0:?} already exists")]
    AlreadyExists(String),
    /// A share must be restricted to at least one client network.
    #[error("share {0:?} has no client network")]
    NoClients(String),
    /// The backend cannot be reached (e.g. Ceph down).
    #[error("{backend} file shares unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: String,
        /// The bound that was hit.
        after: Duration,
    },
    /// A helper program failed.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A local I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An error code from a backend library.
    #[error("{op}: {message} (code {code})")]
    Backend {
        /// The call that failed.
        op: String,
        /// Its error code.
        code: i32,
        /// Human readable message.
        message: String,
    },
}

/// A file share backend. Every method blocks; call it from
/// `spawn_blocking` in async code.
pub trait FileShares: Send + Sync {
    /// Short backend name (`ceph-nfs`, `memory`).
    fn backend(&self) -> &'static str;
    /// Creates a share exported to `request.clients` only.
    fn create(&self, request: &ShareRequest) -> Result<Share, ShareError>;
    /// Looks a share up.
    fn get(&self, name: &str) -> Result<Option<Share>, ShareError>;
    /// Removes a share and its data.
    fn remove(&self, name: &str) -> Result<(), ShareError>;
    /// All shares.
    fn list(&self) -> Result<Vec<Share>, ShareError>;
}

/// Bookkeeping-only [`FileShares`]: records shares without serving them.
#[derive(Debug)]
pub struct MemoryShares {
    server: String,
    shares: Mutex<BTreeMap<String, Share>>,
}

impl MemoryShares {
    /// A backend that reports `server` as the NFS server of its shares.
    pub fn new(server: impl Into<String>) -> Self {
        MemoryShares {
            server: server.into(),
            shares: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Share>> {
        self.shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FileShares for MemoryShares {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn create(&self, request: &ShareRequest) -> Result<Share, ShareError> {
        if request.clients.is_empty() {
            return Err(ShareError::NoClients(request.name.clone()));
        }
        let mut shares = self.lock();
        if shares.contains_key(&request.name) {
            return Err(ShareError::AlreadyExists(request.name.clone()));
        }
        let share = Share {
            name: request.name.clone(),
            project: request.project.clone(),
            server: self.server.clone(),
            export_path: format!("/{}", request.name),
            clients: request.clients.clone(),
        };
        shares.insert(request.name.clone(), share.clone());
        Ok(share)
    }

    fn get(&self, name: &str) -> Result<Option<Share>, ShareError> {
        Ok(self.lock().get(name).cloned())
    }

    fn remove(&self, name: &str) -> Result<(), ShareError> {
        self.lock()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| ShareError::NotFound(name.to_owned()))
    }

    fn list(&self) -> Result<Vec<Share>, ShareError> {
        Ok(self.lock().values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_shares_bookkeeping() {
        let b = MemoryShares::new("10.0.0.5");
        let req = ShareRequest {
            name: "acme-nfs".into(),
            project: "acme".into(),
            clients: vec!["10.0.0.0/25".parse().expect("net")],
            quota_bytes: None,
        };
        let s = b.create(&req).expect("create");
        assert_eq!(s.export_path, "/acme-nfs");
        assert!(matches!(b.create(&req), Err(ShareError::AlreadyExists(_))));
        assert_eq!(b.list().expect("list").len(), 1);
        b.remove("acme-nfs").expect("remove");
        assert!(b.get("acme-nfs").expect("get").is_none());
        assert!(matches!(b.remove("acme-nfs"), Err(ShareError::NotFound(_))));
        let none = ShareRequest {
            clients: vec![],
            ..req
        };
        assert!(matches!(b.create(&none), Err(ShareError::NoClients(_))));
    }
}
