//! Konvey's programming as Rust types: a service key `(VIP, protocol,
//! port)`, its backends, the node-wide settings, and their ABI forms (byte
//! order handled here).

use std::fmt;
use std::net::Ipv4Addr;

use kowabunga_bindings::{kv_backend, kv_config, kv_service, kv_service_key};

use super::{Error, MAX_BACKENDS, MAX_SOURCES};

/// Transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// The protocol of an IP protocol number, for TCP and UDP.
    pub const fn from_number(n: u8) -> Option<Self> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// `"tcp"` or `"udp"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service: what clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// TCP or UDP.
    pub proto: Proto,
    /// The service port on the VIP.
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.vip, self.port, self.proto)
    }
}

impl ServiceKey {
    /// The map key.
    pub fn to_kv(self) -> kv_service_key {
        kv_service_key {
            vip: u32::from_ne_bytes(self.vip.octets()),
            port: self.port.to_be(),
            proto: self.proto.number(),
            _pad: 0,
        }
    }

    /// The service of a map key.
    ///
    /// # Errors
    /// [`Error::BadProtocol`] for a protocol other than TCP or UDP.
    pub fn from_kv(k: &kv_service_key) -> Result<Self, Error> {
        Ok(ServiceKey {
            vip: Ipv4Addr::from(k.vip.to_ne_bytes()),
            proto: Proto::from_number(k.proto).ok_or(Error::BadProtocol(k.proto))?,
            port: u16::from_be(k.port),
        })
    }
}

/// A backend: where a flow is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// Its address.
    pub addr: Ipv4Addr,
    /// The port the service is translated to (`backend_port`).
    pub port: u16,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

impl Backend {
    /// The map value.
    pub fn to_kv(self) -> kv_backend {
        kv_backend {
            addr: u32::from_ne_bytes(self.addr.octets()),
            port: self.port.to_be(),
            slot: 0,
        }
    }

    /// The backend of a map value.
    pub fn from_kv(b: &kv_backend) -> Self {
        Backend {
            addr: Ipv4Addr::from(b.addr.to_ne_bytes()),
            port: u16::from_be(b.port),
        }
    }
}

/// Node-wide settings of the balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KonveyConfig {
    /// The balancer's own addresses (1 to [`MAX_SOURCES`], no duplicates):
    /// the sources of translated flows, where backends send their replies.
    /// A new flow takes the one a hash of its tuple points at, or the next
    /// whose ports towards its backend are not all taken: each address
    /// brings a whole port range per backend.
    pub sources: Vec<Ipv4Addr>,
    /// First source port of translated flows (host order, > 0).
    pub port_min: u16,
    /// Last source port (inclusive). Keep the range clear of
    /// `net.ipv4.ip_local_port_range`, or the host's own connections to a
    /// backend (health checks) may meet a translated flow's tuple.
    pub port_max: u16,
    /// Drop events: one in `2^sample_shift` per reason and CPU.
    pub sample_shift: u8,
}

impl KonveyConfig {
    /// The map value.
    ///
    /// # Errors
    /// [`Error::PortRange`] or [`Error::UnspecifiedSource`].
    pub fn to_kv(&self) -> Result<kv_config, Error> {
        if self.port_min == 0 || self.port_max < self.port_min {
            return Err(Error::PortRange {
                min: self.port_min,
                max: self.port_max,
            });
        }
        if self.sources.is_empty() || self.sources.len() > MAX_SOURCES {
            return Err(Error::SourceCount(self.sources.len()));
        }
        let mut snat_ips = [0u32; MAX_SOURCES];
        for (i, source) in self.sources.iter().enumerate() {
            if source.is_unspecified() {
                return Err(Error::UnspecifiedSource);
            }
            if self.sources[..i].contains(source) {
                return Err(Error::DuplicateSource(*source));
            }
            snat_ips[i] = u32::from_ne_bytes(source.octets());
        }
        Ok(kv_config {
            snat_ips,
            port_min: self.port_min,
            port_max: self.port_max,
            sample_shift: self.sample_shift,
            configured: 1,
            // at most MAX_SOURCES (8): fits
            snat_count: self.sources.len() as u8,
            _pad: 0,
        })
    }
}

/// The packed map value of a rotation.
///
/// # Errors
/// [`Error::TooManyBackends`].
pub fn pack_service(key: ServiceKey, id: u32, rotation: &[Backend]) -> Result<kv_service, Error> {
    if rotation.len() > MAX_BACKENDS {
        return Err(Error::TooManyBackends {
            service: key,
            count: rotation.len(),
        });
    }
    let mut value = kv_service {
        id,
        count: rotation.len() as u32,
        ..Default::default()
    };
    let (slots, _) = super::assign_slots(id, None, rotation);
    for ((packed, b), slot) in value.backends.iter_mut().zip(rotation).zip(slots) {
        *packed = b.to_kv();
        packed.slot = slot;
    }
    Ok(value)
}
