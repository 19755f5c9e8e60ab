//! Attaching the program of a [`Role`] to network interfaces, with pinned links.
//!
//! # Restarts without a traffic gap
//!
//! With a pin directory, every attachment is a BPF link pinned at
//! `pin_dir/links/<ifname>`: the link, and so the program, stays attached
//! while the daemon is down. When a new daemon attaches the same interface,
//! it opens that pinned link and swaps the program inside it atomically with
//! `BPF_LINK_UPDATE` (aya's [`Xdp::attach_to_link`]); packets see the old
//! program or the new one, never none. If the pinned link is stale (its
//! interface was deleted: `ENOLINK`) or unusable, its pin is removed and a
//! fresh link is created, with a warning.
//!
//! Without a pin directory the links belong to the [`Kawaii`] value and are
//! detached when it is dropped.
//!
//! On kernels without XDP links (before 5.9) aya falls back to a netlink
//! attachment: such an attachment cannot be pinned, is kept in memory only and
//! outlives the process until [`Kawaii::detach`] or `ip link set dev X xdp off`.

use std::{collections::HashMap, fs, io, path::PathBuf};

use aya::programs::{
    links::{FdLink, LinkError, PinnedLink},
    xdp::XdpLink,
    ProgramError, Xdp, XdpMode,
};
use tracing::{info, warn};

use crate::{kawaii, Kawaii, Role};

/// The links of one loaded object (Kawaii or Konvey), by interface name,
/// and where they are pinned.
///
/// `R` labels what runs on an interface: a [`Role`] for Kawaii, the program
/// name for Konvey.
#[derive(Debug)]
pub(crate) struct Links<R> {
    pub(crate) links: HashMap<String, Attachment<R>>,
    pub(crate) pin_dir: Option<PathBuf>,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be found.
    #[error(transparent)]
    Program(#[from] kawaii::Error),
    /// The interface name cannot be a file name (empty, `/`, `.`, `..`).
    #[error("invalid interface name `{0}`")]
    InvalidInterface(String),
    /// Both native and generic XDP attachments failed.
    #[error(
        "cannot attach {program} to {ifname}: native XDP failed ({native}), generic XDP failed"
    )]
    Attach {
        /// The interface.
        ifname: String,
        /// The program.
        program: &'static str,
        /// Why native mode failed.
        native: Box<ProgramError>,
        /// Why generic mode failed.
        #[source]
        source: Box<ProgramError>,
    },
    /// Swapping the program inside an existing link failed.
    #[error("cannot replace the program attached to {ifname}")]
    Replace {
        /// The interface.
        ifname: String,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// The link could not be pinned.
    #[error("cannot pin the link of {ifname} at {path}")]
    Pin {
        /// The interface.
        ifname: String,
        /// The pin path.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::pin::PinError,
    },
    /// A filesystem operation on a link pin failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The XDP mode a link runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Native (driver) XDP.
    Driver,
    /// Generic (SKB) XDP: the driver has no native support.
    Generic,
    /// An existing pinned link was reused; it keeps the mode it was created with.
    Inherited,
}

/// What [`Kawaii::attach`] (or `Konvey::attach`) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached<R = Role> {
    /// What now runs on the interface: the [`Role`] for Kawaii, the
    /// program name for Konvey.
    pub role: R,
    /// The XDP mode of the link.
    pub mode: Mode,
    /// Whether the program was swapped into an existing link (no traffic gap).
    pub replaced: bool,
    /// Whether the link is pinned (survives the process).
    pub pinned: bool,
}

/// A link owned by [`Kawaii`].
#[derive(Debug)]
pub(crate) struct Attachment<R> {
    role: R,
    mode: Mode,
    link: Handle,
}

#[derive(Debug)]
enum Handle {
    /// Pinned at `path`: detached only when the pin is removed and the fd closed.
    Pinned { link: FdLink, path: PathBuf },
    /// Detached when dropped.
    Owned(XdpLink),
    /// A netlink attachment that could not be pinned: it stays on the
    /// interface after this process (see the module docs).
    Netlink,
}

/// Swaps `program` into `link`, returning the link to own.
fn replace(program: &mut Xdp, link: XdpLink) -> Result<XdpLink, ProgramError> {
    let id = program.attach_to_link(link)?;
    program.take_link(id)
}

fn check_ifname(ifname: &str) -> Result<(), Error> {
    if ifname.is_empty() || ifname == "." || ifname == ".." || ifname.contains(['/', '\0']) {
        return Err(Error::InvalidInterface(ifname.to_owned()));
    }
    Ok(())
}

impl Kawaii {
    /// Runs the program of `role` on `ifname`.
    ///
    /// Native XDP is tried first, then generic XDP with a warning. With a pin
    /// directory the link is pinned at `pin_dir/links/<ifname>`; an existing
    /// pin (from a previous daemon) or an attachment made earlier by this
    /// value is reused by swapping the program atomically (see the module
    /// docs), so traffic never stops.
    ///
    /// ```no_run
    /// # let mut kawaii = kowabunga_dataplane::Kawaii::load(&Default::default())?;
    /// use kowabunga_dataplane::Role;
    /// kawaii.attach(Role::Public, "eth0")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attach(&mut self, role: Role, ifname: &str) -> Result<Attached, Error> {
        let name = role.program_name();
        let program = kawaii::xdp_mut(&mut self.ebpf, name)?;
        self.links.attach(program, name, role, ifname)
    }

    /// Detaches whatever this crate attached to `ifname`, and removes its
    /// pinned link (also one left by a previous daemon). Returns whether
    /// anything was detached.
    pub fn detach(&mut self, ifname: &str) -> Result<bool, Error> {
        self.links.detach(ifname)
    }

    /// Interfaces attached through this value, with their role and mode.
    pub fn attachments(&self) -> impl Iterator<Item = (&str, Role, Mode)> + '_ {
        self.links.attachments()
    }
}

impl<R: Copy + std::fmt::Display + std::fmt::Debug> Links<R> {
    /// Path of the pinned link of `ifname`, when pinning.
    fn link_pin(&self, ifname: &str) -> Option<PathBuf> {
        self.pin_dir
            .as_ref()
            .map(|dir| dir.join("links").join(ifname))
    }

    /// Runs `program` (the one of `role`) on `ifname`; see [`Kawaii::attach`].
    pub(crate) fn attach(
        &mut self,
        program: &mut Xdp,
        program_name: &'static str,
        role: R,
        ifname: &str,
    ) -> Result<Attached<R>, Error> {
        check_ifname(ifname)?;
        let pin = self.link_pin(ifname);

        // 1. Already attached by us: swap the program in place.
        if let Some(current) = self.links.remove(ifname) {
            let mode = current.mode;

            let replaced =
                replace_handle(program, current.link).map_err(|source| Error::Replace {
                    ifname: ifname.to_owned(),
                    source,
                })?;
            if let Some(link) = replaced {
                let pinned = matches!(link, Handle::Pinned { .. });
                self.links
                    .insert(ifname.to_owned(), Attachment { role, mode, link });
                info!(%ifname, %role, "XDP program replaced");
                return Ok(Attached {
                    role,
                    mode,
                    replaced: true,
                    pinned,
                });
            }
        }

        // 2. A pinned link left by a previous daemon: reuse it.
        if let Some(path) = pin.as_ref().filter(|p| fs::symlink_metadata(p).is_ok()) {
            match reuse_pinned(program, path.clone()) {
                Ok(link) => {
                    self.links.insert(
                        ifname.to_owned(),
                        Attachment {
                            role,
                            mode: Mode::Inherited,
                            link,
                        },
                    );
                    info!(%ifname, %role, pin = %path.display(), "pinned XDP link reused");
                    return Ok(Attached {
                        role,
                        mode: Mode::Inherited,
                        replaced: true,
                        pinned: true,
                    });
                }
                Err(e) => {
                    warn!(%ifname, pin = %path.display(), error = %e,
                        "stale pinned XDP link, replacing it");
                    remove_pin(path)?;
                }
            }
        }

        // 3. A fresh link.

        let (id, mode) = match program.attach(ifname, XdpMode::Driver) {
            Ok(id) => (id, Mode::Driver),
            Err(native) => {
                warn!(%ifname, error = %native,
                    "native XDP unavailable, falling back to generic (SKB) mode");
                match program.attach(ifname, XdpMode::Skb) {
                    Ok(id) => (id, Mode::Generic),
                    Err(source) => {
                        return Err(Error::Attach {
                            ifname: ifname.to_owned(),
                            program: program_name,
                            native: Box::new(native),
                            source: Box::new(source),
                        })
                    }
                }
            }
        };
        let link = program.take_link(id).map_err(|source| Error::Replace {
            ifname: ifname.to_owned(),
            source,
        })?;
        let handle = match pin {
            None => Handle::Owned(link),
            Some(path) => self.pin_link(ifname, link, path)?,
        };
        let pinned = matches!(handle, Handle::Pinned { .. });
        self.links.insert(
            ifname.to_owned(),
            Attachment {
                role,
                mode,
                link: handle,
            },
        );
        info!(%ifname, %role, ?mode, pinned, "XDP program attached");
        Ok(Attached {
            role,
            mode,
            replaced: false,
            pinned,
        })
    }

    fn pin_link(&self, ifname: &str, link: XdpLink, path: PathBuf) -> Result<Handle, Error> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: "create",
                path: dir.to_owned(),
                source,
            })?;
        }
        match FdLink::try_from(link) {
            Ok(fd) => {
                let pinned = fd.pin(&path).map_err(|source| Error::Pin {
                    ifname: ifname.to_owned(),
                    path: path.clone(),
                    source,
                })?;
                Ok(Handle::Pinned {
                    link: FdLink::from(pinned),
                    path,
                })
            }
            Err(_) => {
                // A netlink attachment (kernel without XDP links): it stays on
                // the interface by itself and cannot be pinned.
                warn!(%ifname, "XDP attached through netlink (no BPF links on this kernel): \
                    not pinned; remove it with `ip link set dev {ifname} xdp off`");
                Ok(Handle::Netlink)
            }
        }
    }

    /// Detaches `ifname`; see [`Kawaii::detach`].
    pub(crate) fn detach(&mut self, ifname: &str) -> Result<bool, Error> {
        check_ifname(ifname)?;
        let mut detached = false;
        if let Some(current) = self.links.remove(ifname) {
            match current.link {
                Handle::Pinned { link, path } => {
                    remove_pin(&path)?;
                    drop(link);
                }
                Handle::Owned(link) => drop(link),
                Handle::Netlink => warn!(%ifname,
                    "netlink XDP attachment left in place: `ip link set dev {ifname} xdp off`"),
            }
            detached = true;
        }
        if let Some(path) = self.link_pin(ifname) {
            if fs::symlink_metadata(&path).is_ok() {
                remove_pin(&path)?;
                detached = true;
            }
        }
        if detached {
            info!(%ifname, "XDP program detached");
        }
        Ok(detached)
    }

    /// Attached interfaces with their role and mode.
    pub(crate) fn attachments(&self) -> impl Iterator<Item = (&str, R, Mode)> + '_ {
        self.links
            .iter()
            .map(|(name, a)| (name.as_str(), a.role, a.mode))
    }
}

/// Swaps `program` into the link of `handle`; `None` for a netlink
/// attachment, which has no link to update.
fn replace_handle(program: &mut Xdp, handle: Handle) -> Result<Option<Handle>, ProgramError> {
    Ok(match handle {
        Handle::Owned(link) => Some(Handle::Owned(replace(program, link)?)),
        Handle::Pinned { link, path } => {
            let link = XdpLink::try_from(link).map_err(link_error)?;
            let link = replace(program, link)?;
            Some(Handle::Pinned {
                link: fd_link(link).map_err(link_error)?,
                path,
            })
        }
        Handle::Netlink => None,
    })
}

/// Opens the pinned link at `path` and swaps `program` into it.
fn reuse_pinned(program: &mut Xdp, path: PathBuf) -> Result<Handle, ProgramError> {
    let pinned = PinnedLink::from_pin(&path).map_err(link_error)?;
    // Converting keeps the pin on disk; only the fd moves.
    let link = XdpLink::try_from(FdLink::from(pinned)).map_err(link_error)?;
    let link = replace(program, link)?;
    Ok(Handle::Pinned {
        link: fd_link(link).map_err(link_error)?,
        path,
    })
}

fn fd_link(link: XdpLink) -> Result<FdLink, LinkError> {
    FdLink::try_from(link)
}

fn link_error(e: LinkError) -> ProgramError {
    match e {
        LinkError::SyscallError(s) => ProgramError::SyscallError(s),
        other => ProgramError::IOError(io::Error::other(other.to_string())),
    }
}

fn remove_pin(path: &std::path::Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            what: "remove",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_file_names() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("veth-kw.1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
