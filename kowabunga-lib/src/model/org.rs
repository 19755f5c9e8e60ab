//! Regions, zones, teams and users.

use serde::{Deserialize, Serialize};

use super::{validate_name, validate_ref, ValidationError};

/// A region: a set of zones sharing a network backbone and storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Region name, e.g. `eu-west`.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
}

impl Region {
    /// Checks the name.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)
    }
}

/// An availability zone of a region, e.g. `eu-west-a`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Zone name.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// The region the zone belongs to.
    pub region: String,
}

impl Zone {
    /// Checks the name and the region reference.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        validate_ref("region", &self.region)
    }
}

/// A team of users; projects are administered by teams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// Team name, e.g. `admin`.
    pub name: String,
    /// Free-form description.
    #[serde(default, alias = "description")]
    pub desc: String,
    /// Names of the member users.
    #[serde(default)]
    pub users: Vec<String>,
}

impl Team {
    /// Checks the name and the member references.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_name("name", &self.name)?;
        for (i, u) in self.users.iter().enumerate() {
            validate_ref(&format!("users[{i}]"), u)?;
        }
        Ok(())
    }
}

/// The role of a user (guide: "different roles").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// God mode: manages the whole infrastructure and creates projects.
    SuperAdmin,
    /// Creates any kind of service resource in the projects of its teams.
    ProjectAdmin,
    /// Views and interacts with the resources of its projects.
    #[default]
    User,
}

impl Role {
    /// Whether this role may create projects.
    pub fn can_create_projects(self) -> bool {
        self == Role::SuperAdmin
    }

    /// Whether this role may create resources inside its projects.
    pub fn can_create_resources(self) -> bool {
        matches!(self, Role::SuperAdmin | Role::ProjectAdmin)
    }
}

/// A user of the cloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name.
    pub name: String,
    /// E-mail address (instance notifications go there).
    pub email: String,
    /// Role (`superAdmin`, `projectAdmin` or `user`).
    #[serde(default)]
    pub role: Role,
    /// Whether the user wants e-mail notifications.
    #[serde(default = "yes")]
    pub notifications: bool,
}

fn yes() -> bool {
    true
}

impl User {
    /// Checks the name and the e-mail address shape.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_ref("name", &self.name)?;
        let ok = self
            .email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'));
        if !ok {
            return Err(ValidationError::invalid(
                "email",
                &self.email,
                "an e-mail address",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_use_the_guide_spelling() {
        let u: User =
            serde_norway::from_str("name: bob\nemail: bob@acme.local\nrole: superAdmin\n")
                .expect("user");
        assert_eq!(u.role, Role::SuperAdmin);
        assert!(u.role.can_create_projects());
        let u: User =
            serde_norway::from_str("name: al\nemail: al@acme.local\nrole: projectAdmin\n")
                .expect("user");
        assert!(!u.role.can_create_projects() && u.role.can_create_resources());
        assert_eq!(
            serde_norway::to_string(&Role::User).expect("ser").trim(),
            "user"
        );
        assert!(serde_norway::from_str::<User>("name: x\nemail: x@y.z\nrole: root\n").is_err());
    }

    #[test]
    fn user_email_is_checked() {
        let u = User {
            name: "bob".into(),
            email: "bob".into(),
            role: Role::User,
            notifications: true,
        };
        assert_eq!(u.validate().expect_err("email").field(), "email");
    }

    #[test]
    fn zone_needs_region() {
        let z: Zone = serde_norway::from_str("name: eu-west-a\nregion: ''\n").expect("zone");
        assert_eq!(z.validate().expect_err("region").field(), "region");
    }
}
