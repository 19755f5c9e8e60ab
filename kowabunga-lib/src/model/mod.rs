//! The resource model of Kowabunga's user guide, with its field names.
//!
//! Every resource derives serde's `Serialize` / `Deserialize` with the guide's
//! (and Kowabunga API's) snake_case field names, rejects unknown fields, and
//! has a `validate()` method whose [`ValidationError`] names the offending
//! field and value. Sizes follow the guide: `mem`, `disk`, `extra_disk` and
//! the `max_memory` / `max_storage` quotas are in GiB; a quota of 0 means
//! unlimited.
//!
//! ```
//! use kowabunga::model::Project;
//!
//! let yaml = r#"
//! name: acme
//! desc: ACME project
//! regions: [eu-west]
//! teams: [admin]
//! domain: acme.local
//! tags: [acme, production]
//! metadata: {owner: Kowabunga Admin}
//! max_instances: 0
//! max_memory: 0
//! max_vcpus: 0
//! max_storage: 0
//! subnet_size: 25
//! "#;
//! let project: Project = serde_norway::from_str(yaml).unwrap();
//! project.validate().unwrap();
//! assert!(project.quotas().is_unlimited());
//! ```

pub mod kawaii;
pub mod kiwi;
mod kompute;
pub mod konvey;
mod org;
mod project;
mod services;

pub use kawaii::{Kawaii, Secret};
pub use kiwi::{Kiwi, KiwiRecord, KiwiZone};
pub use kompute::{Kompute, Template, Volume, VolumeType};
pub use konvey::{Konvey, KonveyEndpoint};
pub use org::{Region, Role, Team, User, Zone};
pub use project::{generate_password, Project, Quotas, DEFAULT_BOOTSTRAP_USER};
pub use services::{DnsRecord, Kylo};

/// A resource field that failed validation; [`field`](Self::field) is the
/// path of the field as written (e.g. `endpoints[0].port`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A required field is empty.
    #[error("{field}: must not be empty")]
    Empty {
        /// Path of the field.
        field: String,
    },
    /// A field does not have the expected shape.
    #[error("{field}: {value:?} is not {expected}")]
    Invalid {
        /// Path of the field.
        field: String,
        /// The value as written (never a secret).
        value: String,
        /// What was expected.
        expected: String,
    },
    /// A number out of its range.
    #[error("{field}: {value} is out of range {min}..={max}")]
    OutOfRange {
        /// Path of the field.
        field: String,
        /// The value as written.
        value: u64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
}

impl ValidationError {
    /// The path of the field that failed.
    pub fn field(&self) -> &str {
        match self {
            ValidationError::Empty { field }
            | ValidationError::Invalid { field, .. }
            | ValidationError::OutOfRange { field, .. } => field,
        }
    }

    pub(crate) fn empty(field: impl Into<String>) -> Self {
        ValidationError::Empty {
            field: field.into(),
        }
    }

    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        ValidationError::Invalid {
            field: field.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }

    pub(crate) fn range(field: impl Into<String>, value: u64, min: u64, max: u64) -> Self {
        ValidationError::OutOfRange {
            field: field.into(),
            value,
            min,
            max,
        }
    }
}

/// Checks a resource name: 1 to 63 characters of `[a-z0-9-]`, starting and
/// ending with a letter or digit (a DNS label, since names become host names,
/// libvirt domain names and volume names).
pub fn validate_name(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::empty(field));
    }
    let ok = value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::invalid(
            field,
            value,
            "a name of 1-63 characters [a-z0-9-] that starts and ends with a letter or digit",
        ))
    }
}

/// Checks a reference to another resource (by name): not empty.
pub(crate) fn validate_ref(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        Err(ValidationError::empty(field))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        validate_name("name", "acme-server-1").expect("valid");
        assert_eq!(
            validate_name("name", "").expect_err("empty"),
            ValidationError::empty("name")
        );
        for bad in ["Acme", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            let err = validate_name("kompute.name", bad).expect_err(bad);
            assert_eq!(err.field(), "kompute.name");
        }
    }
}
