//! [`Hypervisor`] over libvirt, with the `virt` crate (feature `libvirt`).
//!
//! Every call blocks; async code runs them in `spawn_blocking` (the
//! [`Cloud`](crate::cloud::Cloud) facade does). The connection is closed by
//! hand on drop, so a failing close is logged instead of panicking as
//! `virt::connect::Connect`'s own `Drop` does.
//!
//! ```no_run
//! use kowabunga::hypervisor::{libvirt::LibvirtHypervisor, Hypervisor};
//!
//! let hv = LibvirtHypervisor::connect("test:///default")?;
//! assert!(hv.list()?.contains(&"test".to_string()));
//! # Ok::<(), kowabunga::hypervisor::HypervisorError>(())
//! ```

use std::mem::ManuallyDrop;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::{Error, ErrorNumber};

use crate::model::Secret;

use super::{kvm, DomainSpec, DomainState, DomainType, Hypervisor, HypervisorError};

/// A libvirt connection used as a hypervisor.
pub struct LibvirtHypervisor {
    name: String,
    uri: String,
    conn: ManuallyDrop<Connect>,
    domain_type: DomainType,
    unsafe_migration: bool,
}

impl std::fmt::Debug for LibvirtHypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibvirtHypervisor")
            .field("name", &self.name)
            .field("uri", &self.uri)
            .field("domain_type", &self.domain_type)
            .field("unsafe_migration", &self.unsafe_migration)
            .finish()
    }
}

impl LibvirtHypervisor {
    /// Connects to `uri` (e.g. `qemu:///system`, `test:///default`). The
    /// domain type is `test` for the test driver; for a local daemon
    /// [`kvm::detect_domain_type`] decides (`kvm` only if KVM can really run
    /// guests here and libvirt offers it); for a remote one, whether its
    /// libvirt offers `kvm`. The hypervisor's name is the host name.
    pub fn connect(uri: &str) -> Result<Self, HypervisorError> {
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| HypervisorError::Connection {
            uri: uri.to_owned(),
            message: e.message().to_owned(),
        })?;
        let conn = ManuallyDrop::new(conn);
        let libvirt_offers_kvm = || {
            conn.domain_capabilities(None, Some("x86_64"), None, Some("kvm"), 0)
                .is_ok()
        };
        let domain_type = if uri.starts_with("test:") {
            DomainType::Test
        } else if !uri.contains(":///") {
            // A remote host (`qemu+ssh://host/system`): the local probe says
            // nothing about it; trust its libvirt (override with
            // `with_domain_type` on restricted KVM hosts).
            if libvirt_offers_kvm() {
                DomainType::Kvm
            } else {
                DomainType::Qemu
            }
        } else {
            match kvm::detect_domain_type() {
                DomainType::Kvm if libvirt_offers_kvm() => DomainType::Kvm,
                _ => DomainType::Qemu,
            }
        };
        let name = conn.hostname().unwrap_or_else(|_| uri.to_owned());
        Ok(LibvirtHypervisor {
            name,
            uri: uri.to_owned(),
            conn,
            domain_type,
            unsafe_migration: false,
        })
    }

    /// Names this hypervisor (placement key).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Overrides the detected domain type.
    pub fn with_domain_type(mut self, domain_type: DomainType) -> Self {
        self.domain_type = domain_type;
        self
    }

    /// Lets live migration proceed although libvirt cannot prove the disks
    /// are shared (`VIR_MIGRATE_UNSAFE`): for local files that both hosts
    /// see at the same path (one host, or a shared file system libvirt does
    /// not recognise). RBD disks never need it.
    pub fn with_unsafe_migration(mut self, allow: bool) -> Self {
        self.unsafe_migration = allow;
        self
    }

    /// The live XML of a domain, as libvirt holds it.
    pub fn domain_xml(&self, name: &str) -> Result<String, HypervisorError> {
        let dom = self.lookup("dumpxml", name)?;
        dom.xml_desc(0).map_err(|e| map_err("dumpxml", name, e))
    }

    /// Defines (or updates) the libvirt `ceph` secret of cephx user
    /// `username` (usage `client.<username> secret`) with `key`, the base64
    /// key of a Ceph keyring, and returns its UUID for
    /// [`RbdAuth::secret_uuid`](crate::storage::RbdAuth). The key is never
    /// logged; libvirt keeps it private (not readable back through the API).
    pub fn set_ceph_secret(&self, username: &str, key: &Secret) -> Result<String, HypervisorError> {
        let usage = format!("client.{username} secret");
        let bytes =
            decode_base64(key.expose()).ok_or_else(|| HypervisorError::InvalidDefinition {
                name: usage.clone(),
                message: "the Ceph key is not base64".into(),
            })?;
        let secret = match self
            .conn
            .lookup_secret_by_usage(virt::sys::VIR_SECRET_USAGE_TYPE_CEPH as i32, &usage)
        {
            Ok(s) => s,
            Err(_) => {
                let xml = format!(
                    "<secret ephemeral='no' private='yes'><usage type='ceph'><name>{}</name></usage></secret>",
                    super::xml::escape(&usage)
                );
                self.conn
                    .define_secret_xml(&xml, 0)
                    .map_err(|e| map_err("define", &usage, e))?
            }
        };
        secret
            .set_value(&bytes, 0)
            .map_err(|e| map_err("secret", &usage, e))?;
        secret
            .uuid_string()
            .map_err(|e| map_err("secret", &usage, e))
    }

    /// The persistent definition of a domain (what its next boot uses).
    pub fn defined_xml(&self, name: &str) -> Result<String, HypervisorError> {
        let dom = self.lookup("dumpxml", name)?;
        dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| map_err("dumpxml", name, e))
    }

    fn lookup(&self, op: &'static str, name: &str) -> Result<Domain, HypervisorError> {
        self.conn
            .lookup_domain_by_name(name)
            .map_err(|e| map_err(op, name, e))
    }
}

impl Drop for LibvirtHypervisor {
    fn drop(&mut self) {
        // SAFETY: the connection is closed exactly once, here, and never used
        // afterwards; `ManuallyDrop` keeps virt's panicking `Drop` from also
        // closing it.
        let rc = unsafe { virt::sys::virConnectClose(self.conn.as_ptr()) };
        if rc < 0 {
            tracing::warn!(uri = %self.uri, "closing the libvirt connection failed");
        }
    }
}

/// Decodes standard base64 (with or without padding); `None` if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding of less than one byte.
    (bits < 6 && acc == 0 && !out.is_empty()).then_some(out)
}

/// Maps a libvirt error to a [`HypervisorError`].
fn map_err(op: &'static str, name: &str, e: Error) -> HypervisorError {
    let code = e.code();
    if code.is(ErrorNumber::NoDomain) {
        return HypervisorError::NotFound(name.to_owned());
    }
    if code.is(ErrorNumber::DomExist) {
        return HypervisorError::AlreadyExists(name.to_owned());
    }
    // Whatever makes libvirt refuse a definition (XML, unsupported or
    // inconsistent configuration, reported as an internal error too) means
    // the spec is not acceptable to this hypervisor.
    let config = code.is_any(vec![
        ErrorNumber::XmlError,
        ErrorNumber::XmlDetail,
        ErrorNumber::XmlInvalidSchema,
        ErrorNumber::ConfigUnsupported,
        ErrorNumber::InvalidArg,
    ]);
    if op == "define" || (op == "start" && config) {
        return HypervisorError::InvalidDefinition {
            name: name.to_owned(),
            message: e.message().to_owned(),
        };
    }
    if code.is_any(vec![
        ErrorNumber::NoSupport,
        ErrorNumber::OperationUnsupported,
    ]) {
        return HypervisorError::Unsupported {
            op,
            message: e.message().to_owned(),
        };
    }
    HypervisorError::Backend {
        op,
        name: name.to_owned(),
        code: code.to_raw() as i32,
        message: e.message().to_owned(),
    }
}

impl Hypervisor for LibvirtHypervisor {
    fn name(&self) -> &str {
        &self.name
    }

    fn uri(&self) -> &str {
        &self.uri
    }

    fn domain_type(&self) -> DomainType {
        self.domain_type
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        if self.conn.lookup_domain_by_name(&spec.name).is_ok() {
            return Err(HypervisorError::AlreadyExists(spec.name.clone()));
        }
        let xml = spec.to_libvirt_xml();
        self.conn
            .define_domain_xml(&xml)
            .map(drop)
            .map_err(|e| map_err("define", &spec.name, e))
    }

    fn update(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        let dom = self.lookup("update", &spec.name)?;
        // Same UUID, or libvirt sees a new domain clashing with the name.
        let mut spec = spec.clone();
        if spec.uuid.is_none() {
            spec.uuid = Some(
                dom.uuid_string()
                    .map_err(|e| map_err("update", &spec.name, e))?,
            );
        }
        self.conn
            .define_domain_xml(&spec.to_libvirt_xml())
            .map(drop)
            .map_err(|e| map_err("define", &spec.name, e))
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup("start", name)?
            .create()
            .map_err(|e| map_err("start", name, e))
    }

    fn shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup("shutdown", name)?
            .shutdown()
            .map_err(|e| map_err("shutdown", name, e))
    }

    fn stop(&self, name: &str) -> Result<(), HypervisorError> {
        let dom = self.lookup("stop", name)?;
        if dom.is_active().map_err(|e| map_err("stop", name, e))? {
            dom.destroy().map_err(|e| map_err("stop", name, e))?;
        }
        Ok(())
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.lookup("reboot", name)?
            .reboot(0)
            .map_err(|e| map_err("reboot", name, e))
    }

    fn delete(&self, name: &str) -> Result<(), HypervisorError> {
        let dom = self.lookup("delete", name)?;
        if dom.is_active().map_err(|e| map_err("delete", name, e))? {
            // It may stop on its own between the two calls.
            if let Err(e) = dom.destroy() {
                if dom.is_active().unwrap_or(true) {
                    return Err(map_err("delete", name, e));
                }
            }
        }
        if dom
            .is_persistent()
            .map_err(|e| map_err("delete", name, e))?
        {
            dom.undefine().map_err(|e| map_err("delete", name, e))?;
        }
        Ok(())
    }

    fn state(&self, name: &str) -> Result<DomainState, HypervisorError> {
        use virt::domain::DomainState as S;
        let (state, _) = self
            .lookup("state", name)?
            .state()
            .map_err(|e| map_err("state", name, e))?;
        Ok(match state.unwrap_or(S::NoState) {
            S::Running => DomainState::Running,
            S::Blocked => DomainState::Blocked,
            S::Paused => DomainState::Paused,
            S::Shutdown => DomainState::ShuttingDown,
            S::Shutoff => DomainState::Shutoff,
            S::Crashed => DomainState::Crashed,
            S::PMSuspended => DomainState::Suspended,
            S::NoState => DomainState::Unknown,
        })
    }

    fn exists(&self, name: &str) -> Result<bool, HypervisorError> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(_) => Ok(true),
            Err(e) if e.code().is(ErrorNumber::NoDomain) => Ok(false),
            Err(e) => Err(map_err("lookup", name, e)),
        }
    }

    fn list(&self) -> Result<Vec<String>, HypervisorError> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(|e| map_err("list", "", e))?;
        let mut names = doms
            .iter()
            .map(|d| d.name().map_err(|e| map_err("list", "", e)))
            .collect::<Result<Vec<_>, _>>()?;
        names.sort();
        Ok(names)
    }

    fn migrate(&self, name: &str, destination_uri: &str) -> Result<(), HypervisorError> {
        let dom = self.lookup("migrate", name)?;
        let dest = LibvirtHypervisor::connect(destination_uri)?;
        let mut flags = virt::sys::VIR_MIGRATE_LIVE
            | virt::sys::VIR_MIGRATE_PERSIST_DEST
            | virt::sys::VIR_MIGRATE_UNDEFINE_SOURCE;
        if self.unsafe_migration {
            flags |= virt::sys::VIR_MIGRATE_UNSAFE;
        }
        dom.migrate(&dest.conn, flags, None, None, 0)
            .map(drop)
            .map_err(|e| map_err("migrate", name, e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::hypervisor::{DiskDevice, DiskSpec, NicSpec};
    use crate::storage::{DiskFormat, DiskSource};

    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            uuid: None,
            description: "unit test".into(),
            domain_type: DomainType::Test,
            vcpus: 2,
            memory_mib: 512,
            disks: vec![DiskSpec {
                source: DiskSource::File {
                    path: PathBuf::from("/nonexistent/os.qcow2"),
                    format: DiskFormat::Qcow2,
                },
                target: "vda".into(),
                device: DiskDevice::Disk,
            }],
            nics: vec![NicSpec {
                mac: "da:1e:70:00:00:01".parse().expect("mac"),
                bridge: "br-test".into(),
            }],
            direct_boot: None,
            serial_log: None,
        }
    }

    #[test]
    fn lifecycle_on_the_test_driver() {
        let hv = LibvirtHypervisor::connect("test:///default").expect("test driver");
        assert_eq!(hv.domain_type(), DomainType::Test);
        assert!(!hv.exists("unit-a").expect("exists"));
        hv.define(&spec("unit-a")).expect("define");
        assert!(matches!(
            hv.define(&spec("unit-a")),
            Err(HypervisorError::AlreadyExists(_))
        ));
        assert_eq!(hv.state("unit-a").expect("state"), DomainState::Shutoff);
        hv.start("unit-a").expect("start");
        assert_eq!(hv.state("unit-a").expect("state"), DomainState::Running);
        let xml = hv.domain_xml("unit-a").expect("xml");
        assert!(xml.contains("da:1e:70:00:00:01"), "{xml}");
        let mut bigger = spec("unit-a");
        bigger.vcpus = 4;
        hv.update(&bigger).expect("update");
        assert!(matches!(
            hv.update(&spec("unit-none")),
            Err(HypervisorError::NotFound(_))
        ));
        hv.reboot("unit-a").expect("reboot");
        hv.stop("unit-a").expect("stop");
        assert_eq!(hv.state("unit-a").expect("state"), DomainState::Shutoff);
        hv.start("unit-a").expect("start again");
        hv.delete("unit-a").expect("delete");
        assert!(!hv.exists("unit-a").expect("exists"));
        assert!(matches!(
            hv.state("unit-a"),
            Err(HypervisorError::NotFound(_))
        ));
    }

    #[test]
    fn refused_definition_is_typed() {
        let hv = LibvirtHypervisor::connect("test:///default").expect("test driver");
        let mut zero = spec("unit-bad");
        zero.vcpus = 0;
        let slash = spec("unit/bad");
        for bad in [zero, slash] {
            match hv.define(&bad) {
                Err(HypervisorError::InvalidDefinition { name, message }) => {
                    assert_eq!(name, bad.name);
                    assert!(!message.is_empty());
                }
                other => panic!("expected InvalidDefinition, got {other:?}"),
            }
            assert!(!hv.exists(&bad.name).expect("exists"));
        }
    }

    #[test]
    fn base64_keys() {
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(
            decode_base64("AAEC/w==").as_deref(),
            Some(&[0, 1, 2, 255][..])
        );
        assert_eq!(decode_base64("not base64!"), None);
        assert_eq!(decode_base64(""), None);
        // A real cephx key is 16 bytes of header + 16 of secret.
        let key = "AQBk5Clm8rGwHhAAnqnHhoVfUCcVzT2WbNVhaA==";
        assert_eq!(decode_base64(key).map(|k| k.len()), Some(28));
    }

    #[test]
    fn bad_uri_is_a_connection_error() {
        assert!(matches!(
            LibvirtHypervisor::connect("bogus:///nowhere"),
            Err(HypervisorError::Connection { .. })
        ));
    }
}
