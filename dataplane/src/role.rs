//! Interface roles: which Kawaii entry point runs on an interface.

use std::{fmt, str::FromStr};

use kowabunga_bindings::kw_role;

/// The role of an interface, which selects the XDP entry point attached to it.
///
/// The role is a compile-time constant of each entry point in `kawaii.o`, so
/// no per-packet lookup decides it.
///
/// ```
/// use kowabunga_dataplane::Role;
///
/// let role: Role = "public".parse()?;
/// assert_eq!(role.program_name(), "kawaii_public");
/// assert_eq!(role.to_string(), "public");
/// # Ok::<(), kowabunga_dataplane::role::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Internet side: the public VIPs live here.
    Public,
    /// Project subnet side.
    Private,
    /// A VPC peering link.
    Peering,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The string names no role.
    #[error("unknown interface role `{0}` (expected public, private or peering)")]
    UnknownName(String),
    /// The number is not a `kw_role` value.
    #[error("unknown kw_role value {0}")]
    UnknownValue(u32),
}

impl Role {
    /// Every role, in `kw_role` order.
    pub const ALL: [Role; 3] = [Role::Public, Role::Private, Role::Peering];

    /// Name of the XDP program of this role inside `kawaii.o`.
    pub const fn program_name(self) -> &'static str {
        match self {
            Role::Public => "kawaii_public",
            Role::Private => "kawaii_private",
            Role::Peering => "kawaii_peering",
        }
    }

    /// The `kw_role` constant of this role (as stored in `kw_ct_value::in_role`).
    pub const fn to_kw(self) -> kw_role::Type {
        match self {
            Role::Public => kw_role::KW_ROLE_PUBLIC,
            Role::Private => kw_role::KW_ROLE_PRIVATE,
            Role::Peering => kw_role::KW_ROLE_PEERING,
        }
    }

    /// The role of a `kw_role` value.
    pub fn from_kw(value: kw_role::Type) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.to_kw() == value)
            .ok_or(Error::UnknownValue(value))
    }

    /// Lower-case name used in configuration files and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Public => "public",
            Role::Private => "private",
            Role::Peering => "peering",
        }
    }
}

impl From<Role> for u8 {
    fn from(role: Role) -> u8 {
        // kw_role values are 1..=3.
        role.to_kw() as u8
    }
}

impl TryFrom<u32> for Role {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self, Error> {
        Role::from_kw(value)
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::UnknownName(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(Role::from_kw(role.to_kw()), Ok(role));
            assert_eq!(role.program_name(), format!("kawaii_{role}"));
        }
        assert_eq!(u8::from(Role::Peering), 3);
        assert!("wan".parse::<Role>().is_err());
        assert_eq!(Role::try_from(0), Err(Error::UnknownValue(0)));
    }
}
