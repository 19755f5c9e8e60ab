//! Which build of the eBPF programs a daemon loads.
//!
//! Every build embeds two compilations of `kawaii.c` and `konvey.c`: the
//! normal one, and `-mcpu=v2` (same sources, maps and behaviour, other
//! instructions, so another program tag). The second exists for one job:
//! proving that an upgrade to a daemon whose program differs swaps the
//! program inside the pinned XDP link (`BPF_LINK_UPDATE`) and reuses the
//! pinned maps without a gap. It is selected by the hidden, test-only
//! environment variable [`ENV`]`=v2`; anything else but unset or `default`
//! is refused with [`Error::Unknown`], before any map is touched.
//!
//! ```
//! use kowabunga_dataplane::variant::{Variant, ENV};
//! assert_eq!(Variant::parse(None), Ok(Variant::Default));
//! assert_eq!(Variant::parse(Some("v2")), Ok(Variant::McpuV2));
//! assert!(Variant::parse(Some("v3")).is_err());
//! # let _ = ENV;
//! ```

use tracing::warn;

/// The environment variable that selects the build (`v2`; unset: default).
pub const ENV: &str = "KOWABUNGA_BPF_VARIANT";

/// `kawaii.c` compiled with `-mcpu=v2`.
static KAWAII_V2: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kawaii-v2.o"));
/// `konvey.c` compiled with `-mcpu=v2`.
static KONVEY_V2: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/konvey-v2.o"));

/// `konvey.c` without its per-backend counters (`-DKV_NO_BACKEND_STATS`):
/// the TEST_RUN bench's baseline for their cost.
static KONVEY_NOSTATS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/konvey-nostats.o"));

/// `kawaii.c` without the flow cache (`-DKW_NO_FCACHE`): every packet
/// takes the slow path, the benches' baseline for the cache.
static KAWAII_NOFCACHE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kawaii-nofcache.o"));
/// `konvey.c` without the flow cache (`-DKW_NO_FCACHE`).
static KONVEY_NOFCACHE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/konvey-nofcache.o"));

/// Errors of this module.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// [`ENV`] names no build of this daemon.
    #[error("{ENV}={0:?}: unknown program build (known: default, v2, nostats, nofcache)")]
    Unknown(String),
}

/// A build of the programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The normal build (clang's default CPU).
    Default,
    /// The same sources compiled with `-mcpu=v2` (test upgrades only).
    McpuV2,
    /// Konvey without its per-backend counters (the bench's baseline;
    /// Kawaii has none: its default build).
    NoBackendStats,
    /// Both programs without the flow cache (the benches' baseline for it).
    NoFlowCache,
}

impl Variant {
    /// The build named by a value of [`ENV`] (`None`: unset).
    ///
    /// # Errors
    /// [`Error::Unknown`] for any other value than `default` or `v2`.
    pub fn parse(value: Option<&str>) -> Result<Self, Error> {
        match value {
            None | Some("" | "default") => Ok(Variant::Default),
            Some("v2") => Ok(Variant::McpuV2),
            Some("nostats") => Ok(Variant::NoBackendStats),
            Some("nofcache") => Ok(Variant::NoFlowCache),
            Some(other) => Err(Error::Unknown(other.to_owned())),
        }
    }

    /// The build the environment asks for.
    ///
    /// # Errors
    /// [`Error::Unknown`], see [`Variant::parse`].
    pub fn from_env() -> Result<Self, Error> {
        let value = std::env::var(ENV).ok();
        let variant = Self::parse(value.as_deref())?;
        if variant != Variant::Default {
            warn!(
                "{ENV}={}: loading the test build of the programs",
                value.unwrap_or_default()
            );
        }
        Ok(variant)
    }

    /// The Kawaii object of this build (`default` is `kawaii`'s own).
    pub fn kawaii(self, default: &'static [u8]) -> &'static [u8] {
        match self {
            Variant::Default | Variant::NoBackendStats => default,
            Variant::McpuV2 => KAWAII_V2,
            Variant::NoFlowCache => KAWAII_NOFCACHE,
        }
    }

    /// The Konvey object of this build (`default` is `konvey`'s own).
    pub fn konvey(self, default: &'static [u8]) -> &'static [u8] {
        match self {
            Variant::Default => default,
            Variant::McpuV2 => KONVEY_V2,
            Variant::NoBackendStats => KONVEY_NOSTATS,
            Variant::NoFlowCache => KONVEY_NOFCACHE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_builds_are_refused_with_the_variable_name() {
        let e = Variant::parse(Some("v9")).expect_err("must fail");
        assert_eq!(
            e.to_string(),
            "KOWABUNGA_BPF_VARIANT=\"v9\": unknown program build (known: default, v2, nostats, nofcache)"
        );
        assert_eq!(Variant::parse(Some("default")), Ok(Variant::Default));
    }

    #[test]
    fn the_v2_build_differs_from_the_default() {
        let default = crate::kawaii::KAWAII_OBJECT;
        assert_ne!(Variant::McpuV2.kawaii(default), default);
        assert_eq!(Variant::Default.kawaii(default), default);
        let default = crate::konvey::KONVEY_OBJECT;
        assert_ne!(Variant::McpuV2.konvey(default), default);
        assert_ne!(Variant::NoBackendStats.konvey(default), default);
        assert_eq!(Variant::parse(Some("nostats")), Ok(Variant::NoBackendStats));
        assert_ne!(Variant::NoFlowCache.konvey(default), default);
        assert_eq!(Variant::parse(Some("nofcache")), Ok(Variant::NoFlowCache));
        let default = crate::kawaii::KAWAII_OBJECT;
        assert_ne!(Variant::NoFlowCache.kawaii(default), default);
    }
}
