//! IPsec proposals: the guide's algorithm fields (DH group number,
//! integrity, encryption) validated and named as strongSwan names them.

use crate::config::error::{err, ErrorKind, ValidationError};

/// Diffie-Hellman groups accepted for IPsec (design section 4).
pub const DH_GROUPS: [u32; 21] = [
    2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
];

/// A validated Diffie-Hellman group number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhGroup(u32);

impl DhGroup {
    /// Accepts the groups of [`DH_GROUPS`] only.
    pub fn new(number: u32) -> Option<Self> {
        DH_GROUPS.contains(&number).then_some(DhGroup(number))
    }

    /// The group number.
    pub fn number(self) -> u32 {
        self.0
    }

    /// strongSwan's name of the group.
    ///
    /// ```
    /// use kowabunga_control::ipsec::proposal::DhGroup;
    /// assert_eq!(DhGroup::new(14).unwrap().strongswan_name(), "modp2048");
    /// assert_eq!(DhGroup::new(5).unwrap().strongswan_name(), "modp1536");
    /// ```
    pub fn strongswan_name(self) -> &'static str {
        dh_group_strongswan_name(self.0).unwrap_or("modp2048")
    }
}

/// strongSwan's name of a DH group number, `None` for unsupported groups.
pub fn dh_group_strongswan_name(number: u32) -> Option<&'static str> {
    Some(match number {
        2 => "modp1024",
        5 => "modp1536",
        14 => "modp2048",
        15 => "modp3072",
        16 => "modp4096",
        17 => "modp6144",
        18 => "modp8192",
        19 => "ecp256",
        20 => "ecp384",
        21 => "ecp521",
        22 => "modp1024s160",
        23 => "modp2048s224",
        24 => "modp2048s256",
        25 => "ecp192",
        26 => "ecp224",
        27 => "ecp224bp",
        28 => "ecp256bp",
        29 => "ecp384bp",
        30 => "ecp512bp",
        31 => "curve25519",
        32 => "curve448",
        _ => return None,
    })
}

/// IPsec integrity algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// SHA1 (HMAC-SHA1-96).
    Sha1,
    /// SHA256.
    Sha256,
    /// SHA384.
    Sha384,
    /// SHA512.
    Sha512,
}

impl Integrity {
    /// Parses `SHA1`, `SHA256`, `SHA384`, `SHA512` in any letter case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Integrity::Sha1),
            "SHA256" => Some(Integrity::Sha256),
            "SHA384" => Some(Integrity::Sha384),
            "SHA512" => Some(Integrity::Sha512),
            _ => None,
        }
    }

    /// strongSwan's name.
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Integrity::Sha1 => "sha1",
            Integrity::Sha256 => "sha256",
            Integrity::Sha384 => "sha384",
            Integrity::Sha512 => "sha512",
        }
    }
}

/// IPsec encryption algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// AES-CBC 128.
    Aes128,
    /// AES-CBC 256.
    Aes256,
    /// Camellia-CBC 128.
    Camellia128,
    /// Camellia-CBC 256.
    Camellia256,
}

impl Encryption {
    /// Parses `AES128`, `AES256`, `CAMELLIA128`, `CAMELLIA256` in any case.
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "AES128" => Some(Encryption::Aes128),
            "AES256" => Some(Encryption::Aes256),
            "CAMELLIA128" => Some(Encryption::Camellia128),
            "CAMELLIA256" => Some(Encryption::Camellia256),
            _ => None,
        }
    }

    /// strongSwan's name.
    pub fn strongswan_name(self) -> &'static str {
        match self {
            Encryption::Aes128 => "aes128",
            Encryption::Aes256 => "aes256",
            Encryption::Camellia128 => "camellia128",
            Encryption::Camellia256 => "camellia256",
        }
    }
}

/// One IPsec phase: DH group, integrity, encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Diffie-Hellman group.
    pub dh_group: DhGroup,
    /// Integrity algorithm.
    pub integrity: Integrity,
    /// Encryption algorithm.
    pub encryption: Encryption,
}

impl Proposal {
    /// strongSwan proposal string `<enc>-<integ>-<dh>`, e.g.
    /// `aes256-sha512-modp2048`.
    pub fn strongswan(&self) -> String {
        format!(
            "{}-{}-{}",
            self.encryption.strongswan_name(),
            self.integrity.strongswan_name(),
            self.dh_group.strongswan_name()
        )
    }
}

/// The proposal of phase `phase` (1 or 2) of the connection at `path`.
///
/// # Errors
/// An unsupported group or algorithm, naming its field.
pub fn validate_proposal(
    path: &str,
    phase: u8,
    dh: u32,
    integrity: &str,
    encryption: &str,
) -> Result<Proposal, ValidationError> {
    let Some(dh_group) = DhGroup::new(dh) else {
        return err(
            format!("{path}.phase{phase}_dh_group_number"),
            ErrorKind::DhGroup(dh),
        );
    };
    let Some(integrity_alg) = Integrity::parse(integrity.trim()) else {
        return err(
            format!("{path}.phase{phase}_integrity_algorithm"),
            ErrorKind::Integrity(integrity.to_owned()),
        );
    };
    let Some(encryption_alg) = Encryption::parse(encryption.trim()) else {
        return err(
            format!("{path}.phase{phase}_encryption_algorithm"),
            ErrorKind::Encryption(encryption.to_owned()),
        );
    };
    Ok(Proposal {
        dh_group,
        integrity: integrity_alg,
        encryption: encryption_alg,
    })
}
