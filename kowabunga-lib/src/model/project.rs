//! Projects and their quotas.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{validate_name, validate_ref, Secret, ValidationError};

/// Bootstrap user created by cloud-init when a project does not name one.
pub const DEFAULT_BOOTSTRAP_USER: &str = "kowabunga";

/// Smallest accepted `subnet_size` (prefix length): a /16.
pub const MIN_SUBNET_SIZE: u8 = 16;
/// Largest accepted `subnet_size`: a /29 (8 addresses, 5 usable for instances
/// after network, broadcast and the gateway pool).
pub const MAX_SUBNET_SIZE: u8 = 29;

/// A project: the virtual environment all resources are created in.
///
/// A project spans one or more regions (each gets a private subnet of at
/// least `subnet_size`), is administered by teams and bounded by quotas
/// (0 = unlimited). `root_password` is set by cloud-init on every instance;
/// when absent, a random one is generated at each instance creation
/// ([`Project::root_password_or_generate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Project name, e.g. `acme`.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// Regions the project spans.
    pub regions: Vec<String>,
    /// Teams administering the project.
    #[serde(default)]
    pub teams: Vec<String>,
    /// DNS domain of the project's instances, e.g. `acme.local`.
    #[serde(default)]
    pub domain: String,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form key/value metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Maximum number of instances (0 = unlimited).
    #[serde(default)]
    pub max_instances: u32,
    /// Maximum memory over all instances, GiB (0 = unlimited).
    #[serde(default)]
    pub max_memory: u64,
    /// Maximum vCPUs over all instances (0 = unlimited).
    #[serde(default)]
    pub max_vcpus: u32,
    /// Maximum storage over all volumes, GiB (0 = unlimited).
    #[serde(default)]
    pub max_storage: u64,
    /// Requested private subnet prefix length, per region (at least that big).
    #[serde(default = "default_subnet_size")]
    pub subnet_size: u8,
    /// User created by cloud-init on every instance.
    #[serde(default = "default_bootstrap_user")]
    pub bootstrap_user: String,
    /// SSH public key of the bootstrap user (empty: the infrastructure's).
    #[serde(default)]
    pub bootstrap_pubkey: String,
    /// Root / bootstrap password; never printed. Generated per instance when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password: Option<Secret>,
}

fn default_subnet_size() -> u8 {
    26
}

fn default_bootstrap_user() -> String {
    DEFAULT_BOOTSTRAP_USER.to_owned()
}

/// The quotas of a project; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Maximum number of instances.
    pub instances: u32,
    /// Maximum memory, GiB.
    pub memory: u64,
    /// Maximum vCPUs.
    pub vcpus: u32,
    /// Maximum storage, GiB.
    pub storage: u64,
}

impl Quotas {
    /// Whether every quota is unlimited.
    pub fn is_unlimited(&self) -> bool {
        *self == Quotas::default()
    }
}

impl Project {
    /// The quotas as one value.
    pub fn quotas(&self) -> Quotas {
        Quotas {
            instances: self.max_instances,
            memory: self.max_memory,
            vcpus: self.max_vcpus,
            storage: self.max_storage,
        }
    }

    /// The configured root password, or a freshly generated one.
    pub fn root_password_or_generate(&self) -> Secret {
        match &self.root_password {
            Some(p) if !p.is_empty() => p.clone(),
            _ => generate_password(),
        }
    }

    /// Checks names, references, the subnet size and the bootstrap key.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        if self.regions.is_empty() {
            return Err(ValidationError::empty("regions"));
        }
        for (i, r) in self.regions.iter().enumerate() {
            validate_ref(&format!("regions[{i}]"), r)?;
        }
        for (i, t) in self.teams.iter().enumerate() {
            validate_ref(&format!("teams[{i}]"), t)?;
        }
        if !self.domain.is_empty() {
            for label in self.domain.split('.') {
                validate_name("domain", label).map_err(|_| {
                    ValidationError::invalid("domain", &self.domain, "a DNS domain")
                })?;
            }
        }
        if !(MIN_SUBNET_SIZE..=MAX_SUBNET_SIZE).contains(&self.subnet_size) {
            return Err(ValidationError::range(
                "subnet_size",
                self.subnet_size.into(),
                MIN_SUBNET_SIZE.into(),
                MAX_SUBNET_SIZE.into(),
            ));
        }
        validate_name("bootstrap_user", &self.bootstrap_user)?;
        if !self.bootstrap_pubkey.is_empty() {
            let mut words = self.bootstrap_pubkey.split_whitespace();
            let ok = matches!(
                (words.next(), words.next()),
                (Some(kind), Some(_)) if kind.starts_with("ssh-") || kind.starts_with("ecdsa-")
            );
            if !ok || self.bootstrap_pubkey.contains('\n') {
                return Err(ValidationError::invalid(
                    "bootstrap_pubkey",
                    &self.bootstrap_pubkey,
                    "one OpenSSH public key line",
                ));
            }
        }
        Ok(())
    }
}

/// A random 20-character alphanumeric password.
pub fn generate_password() -> Secret {
    let s: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    Secret::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Project {
        serde_norway::from_str("name: acme\nregions: [eu-west]\n").expect("project")
    }

    #[test]
    fn defaults() {
        let p = acme();
        assert_eq!(p.subnet_size, 26);
        assert_eq!(p.bootstrap_user, DEFAULT_BOOTSTRAP_USER);
        assert!(p.quotas().is_unlimited());
        assert!(p.root_password.is_none());
        p.validate().expect("valid");
    }

    #[test]
    fn password_generated_when_absent_and_never_printed() {
        let p = acme();
        let a = p.root_password_or_generate();
        let b = p.root_password_or_generate();
        assert_eq!(a.expose().len(), 20);
        assert_ne!(a.expose(), b.expose(), "a new password per call");
        let mut p = acme();
        p.root_password = Some(Secret::new("s3cret-pass"));
        assert_eq!(p.root_password_or_generate().expose(), "s3cret-pass");
        assert!(!format!("{p:?}").contains("s3cret-pass"));
    }

    #[test]
    fn validation_names_fields() {
        let mut p = acme();
        p.subnet_size = 30;
        let err = p.validate().expect_err("subnet");
        assert_eq!(err.field(), "subnet_size");
        assert!(err.to_string().contains("30"), "{err}");

        let mut p = acme();
        p.regions.clear();
        assert_eq!(p.validate().expect_err("regions").field(), "regions");

        let mut p = acme();
        p.bootstrap_pubkey = "not a key".into();
        assert_eq!(p.validate().expect_err("key").field(), "bootstrap_pubkey");

        let mut p = acme();
        p.domain = "acme..local".into();
        assert_eq!(p.validate().expect_err("domain").field(), "domain");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_norway::from_str::<Project>("name: a\nregions: [r]\nmax_cpus: 3\n")
            .expect_err("typo");
        assert!(err.to_string().contains("max_cpus"), "{err}");
    }
}
