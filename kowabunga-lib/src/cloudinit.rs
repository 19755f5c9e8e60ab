//! cloud-init NoCloud seeds: an ISO 9660 image labelled `cidata` holding
//! `meta-data`, `user-data` (bootstrap user, SSH key, passwords) and
//! `network-config` (v2: the private NIC by MAC, its address and weighted
//! default routes through the project's gateways).
//!
//! ```
//! use kowabunga::cloudinit::{NicConfig, Route, Seed};
//! use kowabunga::model::Secret;
//!
//! let seed = Seed {
//!     instance_id: "acme-server".into(),
//!     hostname: "acme-server".into(),
//!     fqdn: Some("acme-server.acme.local".into()),
//!     bootstrap_user: "kowabunga".into(),
//!     ssh_keys: vec!["ssh-ed25519 AAAA... admin".into()],
//!     password: Secret::new("s3cret"),
//!     nics: vec![NicConfig {
//!         name: "ens4".into(),
//!         mac: "da:1e:70:00:00:01".parse().unwrap(),
//!         address: "10.0.0.5/25".parse().unwrap(),
//!         routes: vec![Route::default_via("10.0.0.2".parse().unwrap(), 100)],
//!         nameservers: vec!["10.0.0.1".parse().unwrap()],
//!         search: vec!["acme.local".into()],
//!     }],
//! };
//! let net = seed.network_config();
//! assert!(net.contains("via: 10.0.0.2"));
//! assert!(net.contains("- acme.local"));
//! assert!(!format!("{seed:?}").contains("s3cret"));
//! ```

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::alloc::MacAddr;
use crate::model::Secret;
use crate::process::{run, RunError};

/// Volume label cloud-init's NoCloud datasource looks for.
pub const SEED_LABEL: &str = "cidata";

/// Bound on building a seed image.
const BUILD: Duration = Duration::from_secs(60);

/// Everything an instance is bootstrapped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// `instance-id` (changing it makes cloud-init run again).
    pub instance_id: String,
    /// Host name.
    pub hostname: String,
    /// Fully qualified name, when the project has a domain.
    pub fqdn: Option<String>,
    /// User created with sudo rights.
    pub bootstrap_user: String,
    /// SSH public keys of the bootstrap user.
    pub ssh_keys: Vec<String>,
    /// Password of root and of the bootstrap user (`Debug` prints `***`).
    pub password: Secret,
    /// Network interfaces.
    pub nics: Vec<NicConfig>,
}

/// One statically configured NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    /// Name given to the interface (`ens4`).
    pub name: String,
    /// Its MAC (how the NIC is matched).
    pub mac: MacAddr,
    /// Address and prefix.
    pub address: Ipv4Net,
    /// Routes through this NIC.
    pub routes: Vec<Route>,
    /// DNS servers (the region's Kiwi).
    pub nameservers: Vec<Ipv4Addr>,
    /// DNS search domains (the project's domain).
    pub search: Vec<String>,
}

/// A route with a metric (lower wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub to: Ipv4Net,
    /// Next hop.
    pub via: Ipv4Addr,
    /// Metric.
    pub metric: u32,
}

impl Route {
    /// A default route.
    pub fn default_via(via: Ipv4Addr, metric: u32) -> Self {
        Route {
            to: Ipv4Net::default(),
            via,
            metric,
        }
    }
}

/// Errors building a seed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A local I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// genisoimage failed or hung.
    #[error("genisoimage: {0}")]
    Image(String),
    /// The YAML could not be produced.
    #[error("cannot serialize {file}: {message}")]
    Yaml {
        /// Which seed file.
        file: &'static str,
        /// Serializer's message.
        message: String,
    },
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

#[derive(Serialize)]
struct UserData<'a> {
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fqdn: Option<&'a str>,
    users: Vec<UserEntry<'a>>,
    chpasswd: Chpasswd<'a>,
    ssh_pwauth: bool,
}

#[derive(Serialize)]
struct UserEntry<'a> {
    name: &'a str,
    sudo: &'static str,
    shell: &'static str,
    lock_passwd: bool,
    ssh_authorized_keys: &'a [String],
}

#[derive(Serialize)]
struct Chpasswd<'a> {
    expire: bool,
    users: Vec<PasswordEntry<'a>>,
}

#[derive(Serialize)]
struct PasswordEntry<'a> {
    name: &'a str,
    password: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct NetworkConfig {
    version: u8,
    ethernets: std::collections::BTreeMap<String, Ethernet>,
}

#[derive(Serialize)]
struct Ethernet {
    #[serde(rename = "match")]
    matching: MacMatch,
    #[serde(rename = "set-name")]
    set_name: String,
    dhcp4: bool,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<RouteEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct MacMatch {
    macaddress: String,
}

#[derive(Serialize)]
struct RouteEntry {
    to: String,
    via: String,
    metric: u32,
}

#[derive(Serialize)]
struct Nameservers {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    search: Vec<String>,
}

fn yaml<T: Serialize>(file: &'static str, value: &T) -> Result<String, SeedError> {
    serde_norway::to_string(value).map_err(|e| SeedError::Yaml {
        file,
        message: e.to_string(),
    })
}

impl Seed {
    /// The `meta-data` file.
    pub fn meta_data(&self) -> String {
        yaml(
            "meta-data",
            &MetaData {
                instance_id: &self.instance_id,
                local_hostname: &self.hostname,
            },
        )
        .unwrap_or_default()
    }

    /// The `user-data` file (`#cloud-config`); contains the password.
    pub fn user_data(&self) -> String {
        let data = UserData {
            hostname: &self.hostname,
            fqdn: self.fqdn.as_deref(),
            users: vec![UserEntry {
                name: &self.bootstrap_user,
                sudo: "ALL=(ALL) NOPASSWD:ALL",
                shell: "/bin/bash",
                lock_passwd: false,
                ssh_authorized_keys: &self.ssh_keys,
            }],
            chpasswd: Chpasswd {
                expire: false,
                users: vec![
                    PasswordEntry {
                        name: "root",
                        password: self.password.expose(),
                        kind: "text",
                    },
                    PasswordEntry {
                        name: &self.bootstrap_user,
                        password: self.password.expose(),
                        kind: "text",
                    },
                ],
            },
            ssh_pwauth: false,
        };
        format!(
            "#cloud-config\n{}",
            yaml("user-data", &data).unwrap_or_default()
        )
    }

    /// The `network-config` file (version 2).
    pub fn network_config(&self) -> String {
        let ethernets = self
            .nics
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    Ethernet {
                        matching: MacMatch {
                            macaddress: n.mac.to_string(),
                        },
                        set_name: n.name.clone(),
                        dhcp4: false,
                        addresses: vec![n.address.to_string()],
                        routes: n
                            .routes
                            .iter()
                            .map(|r| RouteEntry {
                                to: if r.to.prefix_len() == 0 {
                                    "default".into()
                                } else {
                                    r.to.to_string()
                                },
                                via: r.via.to_string(),
                                metric: r.metric,
                            })
                            .collect(),
                        nameservers: (!n.nameservers.is_empty() || !n.search.is_empty()).then(
                            || Nameservers {
                                addresses: n.nameservers.iter().map(|a| a.to_string()).collect(),
                                search: n.search.clone(),
                            },
                        ),
                    },
                )
            })
            .collect();
        yaml(
            "network-config",
            &NetworkConfig {
                version: 2,
                ethernets,
            },
        )
        .unwrap_or_default()
    }

    /// Writes the seed ISO (label `cidata`) to `iso` with mode 0600, using
    /// `genisoimage`. The staging files are removed whatever happens.
    pub fn write_iso(&self, iso: &Path) -> Result<(), SeedError> {
        let staging = staging_dir(iso);
        let _ = fs::remove_dir_all(&staging);
        let result = self.write_iso_from(&staging, iso);
        let _ = fs::remove_dir_all(&staging);
        if result.is_err() {
            let _ = fs::remove_file(iso);
        }
        result
    }

    fn write_iso_from(&self, staging: &Path, iso: &Path) -> Result<(), SeedError> {
        let io = |context: String| move |source| SeedError::Io { context, source };
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(staging)
            .map_err(io(format!("create {}", staging.display())))?;
        for (name, text) in [
            ("meta-data", self.meta_data()),
            ("user-data", self.user_data()),
            ("network-config", self.network_config()),
        ] {
            let path = staging.join(name);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io(format!("create {}", path.display())))?;
            f.write_all(text.as_bytes())
                .map_err(io(format!("write {}", path.display())))?;
        }
        // Create the ISO with 0600 before genisoimage writes the password in.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(iso)
            .map_err(io(format!("create {}", iso.display())))?;
        let (iso_s, dir_s) = match (iso.to_str(), staging.to_str()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(SeedError::Image("non UTF-8 path".into())),
        };
        run(
            "genisoimage",
            &[
                "-quiet", "-output", iso_s, "-volid", SEED_LABEL, "-joliet", "-rock", dir_s,
            ],
            BUILD,
        )
        .map(|_| ())
        .map_err(|e| {
            SeedError::Image(match e {
                RunError::Spawn(e) => format!("cannot run genisoimage (package genisoimage): {e}"),
                RunError::Timeout(t) => format!("timed out after {t:?}"),
                RunError::Failed { status, stderr } => format!("{status}: {stderr}"),
            })
        })
    }
}

fn staging_dir(iso: &Path) -> PathBuf {
    let mut name = iso
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".staging");
    iso.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed {
            instance_id: "i-1".into(),
            hostname: "acme-server".into(),
            fqdn: Some("acme-server.acme.local".into()),
            bootstrap_user: "kowabunga".into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3 admin@acme".into()],
            password: Secret::new("pa:ss 'word\""),
            nics: vec![NicConfig {
                name: "ens4".into(),
                mac: "da:1e:70:01:02:03".parse().expect("mac"),
                address: "10.0.0.5/25".parse().expect("addr"),
                routes: vec![
                    Route::default_via("10.0.0.2".parse().expect("gw"), 100),
                    Route::default_via("10.0.0.3".parse().expect("gw"), 200),
                ],
                nameservers: vec!["10.0.0.1".parse().expect("dns")],
                search: vec!["acme.local".into()],
            }],
        }
    }

    #[test]
    fn files_are_valid_yaml_with_the_values() {
        let s = seed();
        let meta: serde_norway::Value = serde_norway::from_str(&s.meta_data()).expect("meta");
        assert_eq!(meta["instance-id"].as_str(), Some("i-1"));
        assert_eq!(meta["local-hostname"].as_str(), Some("acme-server"));

        let ud = s.user_data();
        assert!(ud.starts_with("#cloud-config\n"));
        let user: serde_norway::Value = serde_norway::from_str(&ud).expect("user");
        assert_eq!(user["users"][0]["name"].as_str(), Some("kowabunga"));
        assert_eq!(
            user["users"][0]["ssh_authorized_keys"][0].as_str(),
            Some("ssh-ed25519 AAAAC3 admin@acme")
        );
        assert_eq!(
            user["chpasswd"]["users"][0]["password"].as_str(),
            Some("pa:ss 'word\""),
            "quoting survives"
        );
        assert_eq!(user["chpasswd"]["users"][0]["name"].as_str(), Some("root"));

        let net: serde_norway::Value = serde_norway::from_str(&s.network_config()).expect("net");
        let e = &net["ethernets"]["ens4"];
        assert_eq!(net["version"].as_u64(), Some(2));
        assert_eq!(e["match"]["macaddress"].as_str(), Some("da:1e:70:01:02:03"));
        assert_eq!(e["addresses"][0].as_str(), Some("10.0.0.5/25"));
        assert_eq!(e["routes"][0]["to"].as_str(), Some("default"));
        assert_eq!(e["routes"][0]["via"].as_str(), Some("10.0.0.2"));
        assert_eq!(e["routes"][0]["metric"].as_u64(), Some(100));
        assert_eq!(e["routes"][1]["metric"].as_u64(), Some(200));
        assert_eq!(e["nameservers"]["addresses"][0].as_str(), Some("10.0.0.1"));
        assert_eq!(e["nameservers"]["search"][0].as_str(), Some("acme.local"));
    }

    #[test]
    fn debug_hides_the_password() {
        let debug = format!("{:?}", seed());
        assert!(!debug.contains("pa:ss"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn iso_has_the_cidata_label_and_no_staging_left() {
        let dir = std::env::temp_dir().join(format!("kowabunga-seed-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let iso = dir.join("seed.iso");
        seed().write_iso(&iso).expect("iso (needs genisoimage)");
        let bytes = fs::read(&iso).expect("read iso");
        // Primary volume descriptor at 32 KiB: "CD001", volume id at +40.
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        assert_eq!(&bytes[0x8028..0x802e], b"cidata");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("instance-id: i-1"));
        let mode = fs::metadata(&iso).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(!staging_dir(&iso).exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
