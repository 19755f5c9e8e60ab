//! Templates, volumes and Kompute virtual machines.

use serde::{Deserialize, Serialize};

use super::{validate_name, validate_ref, ValidationError};

/// Largest disk size accepted, GiB (64 TiB).
pub const MAX_DISK_GB: u64 = 64 * 1024;
/// Largest memory accepted, GiB.
pub const MAX_MEM_GB: u64 = 4096;
/// Largest vCPU count accepted.
pub const MAX_VCPUS: u32 = 512;

/// An OS template: the base image Kompute OS disks are cloned from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Template name, e.g. `ubuntu-cloudimg-generic-24-04`.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// Operating system family (`linux` or `windows`).
    #[serde(default = "linux")]
    pub os: String,
    /// Where the image comes from (a local path for the qcow2 backend).
    #[serde(default)]
    pub source: String,
    /// Whether this is the default template of its zone.
    #[serde(default)]
    pub default: bool,
}

fn linux() -> String {
    "linux".to_owned()
}

impl Template {
    /// Checks the name (dots are allowed in template names) and the OS.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_ref("name", &self.name)?;
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ValidationError::invalid(
                "name",
                &self.name,
                "a template name of [A-Za-z0-9._-]",
            ));
        }
        if !matches!(self.os.as_str(), "linux" | "windows") {
            return Err(ValidationError::invalid("os", &self.os, "linux or windows"));
        }
        Ok(())
    }
}

/// The kind of a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// An OS disk, cloned from a template.
    Os,
    /// A raw data disk.
    #[default]
    Raw,
    /// A read-only ISO image.
    Iso,
}

/// A block volume of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// Owning project.
    pub project: String,
    /// Kind of volume.
    #[serde(default, rename = "type")]
    pub kind: VolumeType,
    /// Size in GiB.
    pub size: u64,
    /// Template an OS volume is cloned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

impl Volume {
    /// Checks name, project, size and the template of OS volumes.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        validate_ref("project", &self.project)?;
        if !(1..=MAX_DISK_GB).contains(&self.size) {
            return Err(ValidationError::range("size", self.size, 1, MAX_DISK_GB));
        }
        if self.kind == VolumeType::Os && self.template.as_deref().unwrap_or("").is_empty() {
            return Err(ValidationError::empty("template"));
        }
        Ok(())
    }
}

/// A Kompute virtual machine (guide section 2.2).
///
/// ```
/// use kowabunga::model::Kompute;
///
/// let k: Kompute = serde_norway::from_str(r#"
/// project: acme
/// name: acme-server
/// disk: 64
/// extra_disk: 128
/// mem: 16
/// vcpus: 8
/// zone: eu-west-a
/// template: ubuntu-cloudimg-generic-24.04
/// "#).unwrap();
/// k.validate().unwrap();
/// assert_eq!(k.storage_gb(), 192);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kompute {
    /// Instance name (also its host name and DNS name).
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// Owning project.
    pub project: String,
    /// Number of virtual CPUs.
    pub vcpus: u32,
    /// Memory, GiB.
    pub mem: u64,
    /// OS disk size, GiB.
    pub disk: u64,
    /// Data disk size, GiB (0: no data disk).
    #[serde(default)]
    pub extra_disk: u64,
    /// Zone the instance lives in.
    pub zone: String,
    /// Template the OS disk is cloned from.
    pub template: String,
    /// Whether the instance gets a public address.
    #[serde(default)]
    pub public: bool,
}

impl Kompute {
    /// Total storage (OS + data disk), GiB, as counted by the storage quota.
    pub fn storage_gb(&self) -> u64 {
        self.disk.saturating_add(self.extra_disk)
    }

    /// Checks the name, references and sizes.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        validate_ref("project", &self.project)?;
        validate_ref("zone", &self.zone)?;
        validate_ref("template", &self.template)?;
        if !(1..=MAX_VCPUS).contains(&self.vcpus) {
            return Err(ValidationError::range(
                "vcpus",
                self.vcpus.into(),
                1,
                MAX_VCPUS.into(),
            ));
        }
        if !(1..=MAX_MEM_GB).contains(&self.mem) {
            return Err(ValidationError::range("mem", self.mem, 1, MAX_MEM_GB));
        }
        if !(1..=MAX_DISK_GB).contains(&self.disk) {
            return Err(ValidationError::range("disk", self.disk, 1, MAX_DISK_GB));
        }
        if self.extra_disk > MAX_DISK_GB {
            return Err(ValidationError::range(
                "extra_disk",
                self.extra_disk,
                0,
                MAX_DISK_GB,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Kompute {
        Kompute {
            name: "acme-server".into(),
            desc: String::new(),
            project: "acme".into(),
            vcpus: 8,
            mem: 16,
            disk: 64,
            extra_disk: 128,
            zone: "eu-west-a".into(),
            template: "ubuntu".into(),
            public: false,
        }
    }

    #[test]
    fn kompute_ranges() {
        server().validate().expect("valid");
        for (f, k) in [
            (
                "vcpus",
                Kompute {
                    vcpus: 0,
                    ..server()
                },
            ),
            ("mem", Kompute { mem: 0, ..server() }),
            (
                "disk",
                Kompute {
                    disk: MAX_DISK_GB + 1,
                    ..server()
                },
            ),
            (
                "extra_disk",
                Kompute {
                    extra_disk: u64::MAX,
                    ..server()
                },
            ),
            (
                "name",
                Kompute {
                    name: "Acme Server".into(),
                    ..server()
                },
            ),
            (
                "zone",
                Kompute {
                    zone: String::new(),
                    ..server()
                },
            ),
        ] {
            assert_eq!(k.validate().expect_err(f).field(), f);
        }
    }

    #[test]
    fn volume_os_needs_template() {
        let v: Volume =
            serde_norway::from_str("name: os\nproject: acme\ntype: os\nsize: 10\n").expect("vol");
        assert_eq!(v.validate().expect_err("template").field(), "template");
        let v: Volume =
            serde_norway::from_str("name: data\nproject: acme\nsize: 10\n").expect("vol");
        assert_eq!(v.kind, VolumeType::Raw);
        v.validate().expect("valid");
    }

    #[test]
    fn template_names_may_have_dots() {
        let t: Template =
            serde_norway::from_str("name: ubuntu-cloudimg-generic-24.04\n").expect("tpl");
        t.validate().expect("valid");
        assert_eq!(t.os, "linux");
    }
}
