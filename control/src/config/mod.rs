//! The daemon's configuration file: its schema, the `node` section and the
//! validators every section shares. Each role validates its own section
//! (`crate::<role>::config`).
//!
//! Pipeline: YAML text --[`model`]--> [`model::Config`] --[`validate`]--> [`ValidConfig`]
//! (the `node` section by [`node`], `kawaii` by [`crate::kawaii::config`],
//! `konvey` by [`crate::konvey::config`], `node.vrrp` by
//! [`crate::vrrp::config`]); then each role compiles or reconciles its part
//! into its dataplane. Nothing touches the kernel before validation
//! succeeded.
//!
//! | file | job |
//! |---|---|
//! | [`model`] | the file schema (serde), field names of Kowabunga's API |
//! | [`node`] | the `node` section validated |
//! | [`fields`] | shared validators: addresses, prefixes, protocols, port lists, names |
//! | [`ports`] | the port-list syntax (`"80,3000-3005"`) |
//! | [`error`] | [`ValidationError`]: field path + what is wrong with the value |
//! | [`limits`] | bounds checked before parsing: [`MAX_CONFIG_BYTES`], [`MAX_FLOW_DEPTH`] |
//!
//! Bounds: the text is at most [`MAX_CONFIG_BYTES`] (16 MiB) with flow
//! collections nested at most [`MAX_FLOW_DEPTH`] (64) deep ([`limits`]); the
//! parser refuses values nested deeper than 128 and bounds alias expansion
//! (the schema has no recursive type, so aliases cannot grow a value
//! exponentially); list sizes are bounded by each section's validation (e.g.
//! the dataplane's rule tables); an error line quotes at most
//! [`error::MAX_QUOTED`] characters of a value and is at most
//! [`MAX_ERROR_LINE`] long.
//!
//! ```
//! use kowabunga_control::config;
//!
//! let err = config::parse_str("node: {zone: a}\nkawaii: {}\n").unwrap_err();
//! assert!(err.to_string().starts_with("node: missing field `interfaces`"));
//! ```

pub mod error;
pub mod fields;
pub mod limits;
pub mod model;
pub mod node;
pub mod ports;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use error::{ErrorKind, ValidationError};
pub use limits::{LimitError, MAX_CONFIG_BYTES, MAX_FLOW_DEPTH};
pub use node::ValidNode;

use crate::kawaii::config::{validate_kawaii, ValidKawaii};
use crate::kiwi::config::{validate_kiwi, ValidKiwi};
use crate::konvey::config::{validate_konvey, ValidKonvey};

/// A configuration that passed validation: every role can compile or
/// reconcile its part without failing on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    /// Node settings.
    pub node: ValidNode,
    /// Kawaii settings, if this node is a Kawaii gateway.
    pub kawaii: Option<ValidKawaii>,
    /// Konvey settings, if this node is a Konvey load balancer.
    pub konvey: Option<ValidKonvey>,
    /// Kiwi settings, if this node is the region's DNS server.
    pub kiwi: Option<ValidKiwi>,
}

/// Validates a parsed configuration; returns the first problem found.
///
/// ```
/// use kowabunga_control::config::{model::Config, validate};
///
/// let yaml = r#"
/// node: {zone: a, interfaces: {public: eth0, private: eth1}}
/// kawaii:
///   public_ips: [203.0.113.10]
///   private_subnet: 10.0.0.0/33
/// "#;
/// let config: Config = serde_norway::from_str(yaml).unwrap();
/// let err = validate(&config).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"kawaii.private_subnet: "10.0.0.0/33" is not an IPv4 subnet (a.b.c.d/len)"#
/// );
/// ```
///
/// # Errors
/// A [`ValidationError`] naming the field path and its value.
pub fn validate(config: &model::Config) -> Result<ValidConfig, ValidationError> {
    let node = node::validate_node(config)?;
    let kawaii = match &config.kawaii {
        Some(k) => Some(validate_kawaii(&node, k)?),
        None => None,
    };
    let konvey = match &config.konvey {
        Some(k) => Some(validate_konvey(&node, k)?),
        None => None,
    };
    let kiwi = config.kiwi.as_ref().map(validate_kiwi).transpose()?;
    Ok(ValidConfig {
        node,
        kawaii,
        konvey,
        kiwi,
    })
}

/// Why a configuration file could not be used. `Display` is one line.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the schema (syntax, unknown or missing
    /// field, wrong type).
    Parse(serde_norway::Error),
    /// A value is wrong.
    Invalid(ValidationError),
    /// The text exceeds a bound of [`limits`] (nothing was parsed).
    Limit(LimitError),
    /// The file is longer than [`MAX_CONFIG_BYTES`] (read no further).
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes, when known (`None`: a stream that did not end).
        size: Option<u64>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "{}: {}", path.display(), source)
            }
            // serde_norway already prefixes the field path ("kawaii.dnat[0]:
            // unknown field ..."); keep it on one line whatever it says.
            ConfigError::Parse(e) => f.write_str(&one_line(&e.to_string())),
            ConfigError::Invalid(e) => f.write_str(&one_line(&e.to_string())),
            ConfigError::Limit(e) => write!(f, "{e}"),
            ConfigError::FileTooLarge { path, size } => {
                write!(f, "{}: ", path.display())?;
                match size {
                    Some(size) => write!(f, "{size} bytes")?,
                    None => write!(f, "more than {MAX_CONFIG_BYTES} bytes")?,
                }
                write!(
                    f,
                    ": a configuration is at most {MAX_CONFIG_BYTES} bytes (16 MiB)"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse(e) => Some(e),
            ConfigError::Invalid(e) => Some(e),
            ConfigError::Limit(e) => Some(e),
            ConfigError::FileTooLarge { .. } => None,
        }
    }
}

impl From<ValidationError> for ConfigError {
    fn from(e: ValidationError) -> Self {
        ConfigError::Invalid(e)
    }
}

/// Longest error line, in characters: values are quoted up to
/// [`error::MAX_QUOTED`] characters, and whatever a parser echoes is cut
/// here (the field path comes first, so it is never cut).
pub const MAX_ERROR_LINE: usize = 1024;

fn one_line(text: &str) -> String {
    let line = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match line.char_indices().nth(MAX_ERROR_LINE) {
        None => line,
        Some((cut, _)) => format!("{}... ({} more bytes)", &line[..cut], line.len() - cut),
    }
}

/// Parses and validates configuration text.
///
/// ```
/// use kowabunga_control::config::{parse_str, ConfigError, MAX_CONFIG_BYTES};
///
/// let huge = "#".repeat(MAX_CONFIG_BYTES + 1);
/// assert!(matches!(parse_str(&huge), Err(ConfigError::Limit(_))));
/// ```
///
/// # Errors
/// [`ConfigError::Limit`], [`ConfigError::Parse`] or [`ConfigError::Invalid`].
pub fn parse_str(text: &str) -> Result<ValidConfig, ConfigError> {
    limits::check_text(text).map_err(ConfigError::Limit)?;
    let config: model::Config = serde_norway::from_str(text).map_err(ConfigError::Parse)?;
    Ok(validate(&config)?)
}

/// Reads, parses and validates a configuration file (at most
/// [`MAX_CONFIG_BYTES`] of it).
///
/// # Errors
/// Any [`ConfigError`].
pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
    use std::io::Read as _;

    let read_err = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file
        .metadata()
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let too_large = |size| ConfigError::FileTooLarge {
        path: path.to_owned(),
        size,
    };
    if size.is_some_and(|s| s > MAX_CONFIG_BYTES as u64) {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(too_large(None));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })?;
    parse_str(&text)
}
