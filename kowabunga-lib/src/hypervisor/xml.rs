//! libvirt domain XML generated from a typed [`DomainSpec`].
//!
//! Text and attribute values are escaped; nothing is spliced in raw.
//!
//! ```
//! use kowabunga::hypervisor::{DomainSpec, DomainType};
//!
//! let spec = DomainSpec {
//!     name: "acme-server".into(),
//!     uuid: None,
//!     description: "project acme".into(),
//!     domain_type: DomainType::Qemu,
//!     vcpus: 2,
//!     memory_mib: 2048,
//!     disks: vec![],
//!     nics: vec![],
//!     direct_boot: None,
//!     serial_log: None,
//! };
//! let xml = spec.to_libvirt_xml();
//! assert!(xml.starts_with("<domain type='qemu'>"));
//! assert!(xml.contains("<vcpu placement='static'>2</vcpu>"));
//! ```

use std::fmt::Write;

use super::{DiskDevice, DomainSpec, DomainType};
use crate::storage::DiskSource;

/// Escapes text for XML content and single- or double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl DomainSpec {
    /// The libvirt domain XML of this spec: virtio disks (qcow2/raw files or
    /// RBD), a SATA CD-ROM for the seed, virtio NICs on bridges, a serial
    /// console (to a file when `serial_log` is set), and for qemu/kvm a
    /// guest-agent channel and a virtio RNG; `host-passthrough` CPU with KVM.
    pub fn to_libvirt_xml(&self) -> String {
        let e = escape;
        let mut x = String::new();
        // `write!` into a String cannot fail.
        let _ = writeln!(x, "<domain type='{}'>", self.domain_type.as_str());
        let _ = writeln!(x, "  <name>{}</name>", e(&self.name));
        if let Some(uuid) = &self.uuid {
            let _ = writeln!(x, "  <uuid>{}</uuid>", e(uuid));
        }
        if !self.description.is_empty() {
            let _ = writeln!(x, "  <description>{}</description>", e(&self.description));
        }
        let _ = writeln!(x, "  <memory unit='MiB'>{}</memory>", self.memory_mib);
        let _ = writeln!(
            x,
            "  <currentMemory unit='MiB'>{}</currentMemory>",
            self.memory_mib
        );
        let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", self.vcpus);
        x.push_str("  <os>\n    <type arch='x86_64'>hvm</type>\n");
        match &self.direct_boot {
            Some(boot) => {
                let _ = writeln!(
                    x,
                    "    <kernel>{}</kernel>",
                    e(&boot.kernel.to_string_lossy())
                );
                if let Some(initrd) = &boot.initrd {
                    let _ = writeln!(x, "    <initrd>{}</initrd>", e(&initrd.to_string_lossy()));
                }
                let _ = writeln!(x, "    <cmdline>{}</cmdline>", e(&boot.cmdline));
            }
            None => x.push_str("    <boot dev='hd'/>\n"),
        }
        x.push_str("  </os>\n  <features>\n    <acpi/>\n    <apic/>\n  </features>\n");
        if self.domain_type == DomainType::Kvm {
            x.push_str("  <cpu mode='host-passthrough'/>\n");
        }
        x.push_str("  <clock offset='utc'/>\n");
        x.push_str("  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n");
        x.push_str("  <devices>\n");
        for d in &self.disks {
            let (device, bus) = match d.device {
                DiskDevice::Disk => ("disk", "virtio"),
                DiskDevice::Cdrom => ("cdrom", "sata"),
            };
            match &d.source {
                DiskSource::File { path, format } => {
                    let _ = writeln!(x, "    <disk type='file' device='{device}'>");
                    let _ = writeln!(x, "      <driver name='qemu' type='{}'/>", format.as_str());
                    let _ = writeln!(x, "      <source file='{}'/>", e(&path.to_string_lossy()));
                }
                DiskSource::Rbd {
                    pool,
                    image,
                    monitors,
                    auth,
                } => {
                    let _ = writeln!(x, "    <disk type='network' device='{device}'>");
                    x.push_str("      <driver name='qemu' type='raw'/>\n");
                    if let Some(a) = auth {
                        let _ = writeln!(x, "      <auth username='{}'>", e(&a.username));
                        let _ = writeln!(
                            x,
                            "        <secret type='ceph' uuid='{}'/>",
                            e(&a.secret_uuid)
                        );
                        x.push_str("      </auth>\n");
                    }
                    let _ = writeln!(
                        x,
                        "      <source protocol='rbd' name='{}/{}'>",
                        e(pool),
                        e(image)
                    );
                    for m in monitors {
                        let (host, port) = match m.rsplit_once(':') {
                            Some((h, p)) if p.parse::<u16>().is_ok() => (h, p),
                            _ => (m.as_str(), "6789"),
                        };
                        let host = host.trim_start_matches('[').trim_end_matches(']');
                        let _ =
                            writeln!(x, "        <host name='{}' port='{}'/>", e(host), e(port));
                    }
                    x.push_str("      </source>\n");
                }
            }
            let _ = writeln!(x, "      <target dev='{}' bus='{bus}'/>", e(&d.target));
            if d.device == DiskDevice::Cdrom {
                x.push_str("      <readonly/>\n");
            }
            x.push_str("    </disk>\n");
        }
        for n in &self.nics {
            x.push_str("    <interface type='bridge'>\n");
            let _ = writeln!(x, "      <mac address='{}'/>", n.mac);
            let _ = writeln!(x, "      <source bridge='{}'/>", e(&n.bridge));
            x.push_str("      <model type='virtio'/>\n    </interface>\n");
        }
        match &self.serial_log {
            Some(path) => {
                x.push_str("    <serial type='file'>\n");
                let _ = writeln!(x, "      <source path='{}'/>", e(&path.to_string_lossy()));
                x.push_str("      <target port='0'/>\n    </serial>\n");
            }
            None => {
                x.push_str("    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n")
            }
        }
        if self.domain_type != DomainType::Test {
            x.push_str("    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n    </channel>\n");
            x.push_str("    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n");
        }
        x.push_str("  </devices>\n</domain>\n");
        x
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::hypervisor::{DirectBoot, DiskSpec, NicSpec};
    use crate::storage::{DiskFormat, RbdAuth};

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "acme-<server>".into(),
            uuid: Some("4dea22b3-1d52-d8f3-2516-782e98ab3fa0".into()),
            description: "project 'acme' & co".into(),
            domain_type: DomainType::Kvm,
            vcpus: 8,
            memory_mib: 16384,
            disks: vec![
                DiskSpec {
                    source: DiskSource::File {
                        path: PathBuf::from("/pool/volumes/acme-server-os.qcow2"),
                        format: DiskFormat::Qcow2,
                    },
                    target: "vda".into(),
                    device: DiskDevice::Disk,
                },
                DiskSpec {
                    source: DiskSource::Rbd {
                        pool: "rbd".into(),
                        image: "acme-server-data".into(),
                        monitors: vec!["127.0.0.1:3300".into(), "10.0.0.9".into()],
                        auth: Some(RbdAuth {
                            username: "libvirt".into(),
                            secret_uuid: "a5d0dd94-57c4-ae55-ffe0-7e3732a24455".into(),
                        }),
                    },
                    target: "vdb".into(),
                    device: DiskDevice::Disk,
                },
                DiskSpec {
                    source: DiskSource::File {
                        path: PathBuf::from("/seeds/acme-server.iso"),
                        format: DiskFormat::Raw,
                    },
                    target: "sda".into(),
                    device: DiskDevice::Cdrom,
                },
            ],
            nics: vec![NicSpec {
                mac: "da:1e:70:00:00:2a".parse().expect("mac"),
                bridge: "br-acme".into(),
            }],
            direct_boot: None,
            serial_log: Some(PathBuf::from("/var/log/acme-server.log")),
        }
    }

    #[test]
    fn full_domain() {
        let x = spec().to_libvirt_xml();
        for needle in [
            "<domain type='kvm'>",
            "<name>acme-&lt;server&gt;</name>",
            "<description>project &apos;acme&apos; &amp; co</description>",
            "<memory unit='MiB'>16384</memory>",
            "<vcpu placement='static'>8</vcpu>",
            "<cpu mode='host-passthrough'/>",
            "<boot dev='hd'/>",
            "<driver name='qemu' type='qcow2'/>",
            "<source file='/pool/volumes/acme-server-os.qcow2'/>",
            "<target dev='vda' bus='virtio'/>",
            "<source protocol='rbd' name='rbd/acme-server-data'>",
            "<host name='127.0.0.1' port='3300'/>",
            "<host name='10.0.0.9' port='6789'/>",
            "<secret type='ceph' uuid='a5d0dd94-57c4-ae55-ffe0-7e3732a24455'/>",
            "<disk type='file' device='cdrom'>",
            "<target dev='sda' bus='sata'/>",
            "<readonly/>",
            "<mac address='da:1e:70:00:00:2a'/>",
            "<source bridge='br-acme'/>",
            "<model type='virtio'/>",
            "<source path='/var/log/acme-server.log'/>",
            "org.qemu.guest_agent.0",
            "<rng model='virtio'>",
        ] {
            assert!(x.contains(needle), "missing {needle} in\n{x}");
        }
        assert_eq!(x.matches("<disk ").count(), 3);
        assert_eq!(x.matches("</disk>").count(), 3);
    }

    #[test]
    fn direct_boot_and_tcg() {
        let mut s = spec();
        s.domain_type = DomainType::Qemu;
        s.direct_boot = Some(DirectBoot {
            kernel: PathBuf::from("/boot/vmlinuz"),
            initrd: Some(PathBuf::from("/tmp/initrd.img")),
            cmdline: "console=ttyS0 panic=-1 a<b".into(),
        });
        let x = s.to_libvirt_xml();
        assert!(x.contains("<domain type='qemu'>"));
        assert!(!x.contains("host-passthrough"), "no host CPU under TCG");
        assert!(x.contains("<kernel>/boot/vmlinuz</kernel>"));
        assert!(x.contains("<initrd>/tmp/initrd.img</initrd>"));
        assert!(x.contains("<cmdline>console=ttyS0 panic=-1 a&lt;b</cmdline>"));
        assert!(!x.contains("<boot dev="));
    }

    #[test]
    fn test_driver_gets_no_qemu_only_devices() {
        let mut s = spec();
        s.domain_type = DomainType::Test;
        let x = s.to_libvirt_xml();
        assert!(!x.contains("guest_agent") && !x.contains("<rng"));
    }
}
