//! The daemon's configuration: file model, port lists, validation, and the
//! compilation into BPF map contents.
//!
//! Pipeline: YAML text --[`model`]--> [`model::Config`]
//! --[`validate`] (and [`konvey`])--> [`ValidConfig`] --[`compile`]-->
//! [`compile::Compiled`] (Kawaii); Konvey's rotations are computed by
//! [`crate::konvey::reconcile`].
//! Nothing touches the kernel before the last step succeeded.
//!
//! ```
//! use kowabunga_control::config;
//!
//! let err = config::parse_str("node: {zone: a}\nkawaii: {}\n").unwrap_err();
//! assert!(err.to_string().starts_with("node: missing field `interfaces`"));
//! ```

pub mod compile;
pub mod konvey;
pub mod model;
pub mod ports;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use validate::{ValidConfig, ValidationError};

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
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Parse(e) => Some(e),
            ConfigError::Invalid(e) => Some(e),
        }
    }
}

impl From<ValidationError> for ConfigError {
    fn from(e: ValidationError) -> Self {
        ConfigError::Invalid(e)
    }
}

fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses and validates configuration text.
///
/// # Errors
/// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
pub fn parse_str(text: &str) -> Result<ValidConfig, ConfigError> {
    let config: model::Config = serde_norway::from_str(text).map_err(ConfigError::Parse)?;
    Ok(validate::validate(&config)?)
}

/// Reads, parses and validates a configuration file.
///
/// # Errors
/// Any [`ConfigError`].
pub fn load(path: &Path) -> Result<ValidConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(&text)
}
