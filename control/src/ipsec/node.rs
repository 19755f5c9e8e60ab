//! `node.ipsec`: how this node reaches its IKE daemon.
//!
//! ```
//! use kowabunga_control::ipsec::node::NodeIpsec;
//!
//! let n: NodeIpsec = serde_norway::from_str("{}").unwrap();
//! assert_eq!(n.vici_socket.to_str(), Some("/var/run/charon.vici"));
//! assert!(!n.userspace_esp);
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::error::{err, ErrorKind, ValidationError};

/// Default VICI socket of charon (strongSwan's own default).
pub const DEFAULT_VICI_SOCKET: &str = "/var/run/charon.vici";

/// The `node.ipsec` key, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIpsec {
    /// charon's VICI socket (default `/var/run/charon.vici`).
    #[serde(default = "default_socket")]
    pub vici_socket: PathBuf,
    /// charon runs ESP in userspace (its `kernel-libipsec` plugin, for a
    /// kernel without ESP): every tunnel is UDP-encapsulated (`encap`),
    /// since libipsec cannot receive raw ESP. Default `false` (the kernel's
    /// XFRM).
    #[serde(default)]
    pub userspace_esp: bool,
}

impl Default for NodeIpsec {
    fn default() -> Self {
        NodeIpsec {
            vici_socket: default_socket(),
            userspace_esp: false,
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_VICI_SOCKET)
}

/// Validates `node.ipsec`.
///
/// # Errors
/// A relative socket path.
pub fn validate_node_ipsec(n: &NodeIpsec) -> Result<NodeIpsec, ValidationError> {
    if !n.vici_socket.is_absolute() {
        return err(
            "node.ipsec.vici_socket",
            ErrorKind::NotAbsolute(n.vici_socket.display().to_string()),
        );
    }
    Ok(n.clone())
}
