//! Test-only API (cargo feature `test-util`): running the programs on packets
//! with `BPF_PROG_TEST_RUN` (aya [`TestRun`]) for fixtures and for the
//! per-packet cost in benchmarks, the `xdp_pass` baseline, and a check of
//! pinned maps. Daemons do not enable the feature; tests and benches do.

use std::{path::Path, time::Duration};

use aya::{
    maps::MapInfo,
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfError,
};

use crate::{kawaii, Kawaii, Role};

/// The compiled `ebpf/xdp_pass.o`, embedded at build time.
pub static XDP_PASS_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_pass.o"));

/// `XDP_ABORTED`: program error, the packet is dropped.
pub const XDP_ABORTED: u32 = 0;
/// `XDP_DROP`.
pub const XDP_DROP: u32 = 1;
/// `XDP_PASS`: to the kernel stack.
pub const XDP_PASS: u32 = 2;
/// `XDP_TX`: back out of the receiving interface.
pub const XDP_TX: u32 = 3;
/// `XDP_REDIRECT`: to another interface (`bpf_redirect`).
pub const XDP_REDIRECT: u32 = 4;

/// Headroom added to the output buffer: a program may grow the packet.
const OUT_SLACK: usize = 256;

/// An XDP verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Verdict {
    /// `XDP_ABORTED`.
    Aborted = XDP_ABORTED,
    /// `XDP_DROP`.
    Drop = XDP_DROP,
    /// `XDP_PASS`.
    Pass = XDP_PASS,
    /// `XDP_TX`.
    Tx = XDP_TX,
    /// `XDP_REDIRECT`.
    Redirect = XDP_REDIRECT,
}

impl TryFrom<u32> for Verdict {
    type Error = u32;

    /// The verdict of a return value; the value itself when it is none.
    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            XDP_ABORTED => Verdict::Aborted,
            XDP_DROP => Verdict::Drop,
            XDP_PASS => Verdict::Pass,
            XDP_TX => Verdict::Tx,
            XDP_REDIRECT => Verdict::Redirect,
            other => return Err(other),
        })
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be found.
    #[error(transparent)]
    Program(#[from] kawaii::Error),
    /// `BPF_PROG_TEST_RUN` failed.
    #[error("BPF_PROG_TEST_RUN of {program} failed")]
    Run {
        /// The program.
        program: &'static str,
        /// Why.
        #[source]
        source: ProgramError,
    },
    /// `xdp_pass.o` could not be loaded.
    #[error("cannot load xdp_pass.o")]
    Baseline(#[source] EbpfError),
    /// The baseline program could not be loaded.
    #[error("cannot load program xdp_pass")]
    BaselineProgram(#[source] ProgramError),
}

/// What one test run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value, an `XDP_*` verdict.
    pub verdict: u32,
    /// The packet as the program left it.
    pub data: Vec<u8>,
}

impl TestRunOutput {
    /// The verdict as an enum (`Err` with the raw value when it is none).
    pub fn verdict(&self) -> Result<Verdict, u32> {
        Verdict::try_from(self.verdict)
    }
}

pub(crate) fn run_once(
    program: &Xdp,
    name: &'static str,
    packet: &[u8],
) -> Result<TestRunOutput, Error> {
    let mut out = vec![0u8; packet.len() + OUT_SLACK];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        })
        .map_err(|source| Error::Run {
            program: name,
            source,
        })?;
    out.truncate(result.data_size_out as usize);
    Ok(TestRunOutput {
        verdict: result.return_value,
        data: out,
    })
}

pub(crate) fn run_repeat_on(
    program: &Xdp,
    name: &'static str,
    packet: &[u8],
    repeat: u32,
) -> Result<Duration, Error> {
    let mut out = vec![0u8; packet.len() + OUT_SLACK];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            repeat: repeat.max(1),
            ..TestRunOptions::new()
        })
        .map_err(|source| Error::Run {
            program: name,
            source,
        })?;
    // The kernel reports the mean duration of one run.
    Ok(result.duration)
}

impl Kawaii {
    /// Runs the program of `role` once on `packet` (an Ethernet frame).
    ///
    /// Maps are the live ones: conntrack entries and counters change as they
    /// would for a received packet. `XDP_REDIRECT` is returned without any
    /// packet leaving.
    ///
    /// ```no_run
    /// # let kawaii = kowabunga_dataplane::Kawaii::load(&Default::default())?;
    /// use kowabunga_dataplane::{test_run::XDP_PASS, Role};
    /// let frame = [0u8; 60];
    /// let out = kawaii.run(Role::Private, &frame)?;
    /// println!("verdict {} ({} bytes)", out.verdict, out.data.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, role: Role, packet: &[u8]) -> Result<TestRunOutput, Error> {
        run_once(self.program(role)?, role.program_name(), packet)
    }

    /// Runs the program of `role` `repeat` times on `packet` in the kernel
    /// and returns the mean time of one run.
    pub fn run_repeat(&self, role: Role, packet: &[u8], repeat: u32) -> Result<Duration, Error> {
        run_repeat_on(self.program(role)?, role.program_name(), packet, repeat)
    }
}

/// The benchmark baseline: `xdp_pass.o`, a program that returns `XDP_PASS`.
#[derive(Debug)]
pub struct Baseline {
    ebpf: Ebpf,
}

impl Baseline {
    /// Name of the program inside `xdp_pass.o`.
    pub const PROGRAM: &'static str = "xdp_pass";

    /// Loads `xdp_pass.o` into the kernel.
    pub fn load() -> Result<Self, Error> {
        let mut ebpf = Ebpf::load(XDP_PASS_OBJECT).map_err(Error::Baseline)?;
        let program: &mut Xdp = ebpf
            .program_mut(Self::PROGRAM)
            .ok_or(Error::BaselineProgram(ProgramError::NotLoaded))?
            .try_into()
            .map_err(Error::BaselineProgram)?;
        program.load().map_err(Error::BaselineProgram)?;
        Ok(Self { ebpf })
    }

    fn program(&self) -> Result<&Xdp, Error> {
        self.ebpf
            .program(Self::PROGRAM)
            .ok_or(Error::BaselineProgram(ProgramError::NotLoaded))?
            .try_into()
            .map_err(Error::BaselineProgram)
    }

    /// Runs the baseline once on `packet`.
    pub fn run(&self, packet: &[u8]) -> Result<TestRunOutput, Error> {
        run_once(self.program()?, Self::PROGRAM, packet)
    }

    /// Runs the baseline `repeat` times and returns the mean time of one run.
    pub fn run_repeat(&self, packet: &[u8], repeat: u32) -> Result<Duration, Error> {
        run_repeat_on(self.program()?, Self::PROGRAM, packet, repeat)
    }
}

/// How each map pinned under `pin_dir` differs from what this build of
/// `kawaii.o` expects with `ct_entries` conntrack entries: one
/// `(map, difference)` per map of [`kawaii::MAP_NAMES`], in that order, with
/// `None` when the pin matches. A pin that cannot be read is a difference.
///
/// ```no_run
/// use kowabunga_dataplane::{test_run::kawaii_pin_mismatches, Kawaii, LoadOptions};
/// let dir = std::path::Path::new("/sys/fs/bpf/kowabunga");
/// Kawaii::load(&LoadOptions { pin_dir: Some(dir.into()), ct_entries: Some(4096) })?;
/// for (map, difference) in kawaii_pin_mismatches(dir, 4096) {
///     assert_eq!(difference, None, "{map}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn kawaii_pin_mismatches(
    pin_dir: &Path,
    ct_entries: u32,
) -> Vec<(&'static str, Option<String>)> {
    kawaii::map_specs(ct_entries)
        .iter()
        .map(|spec| {
            let difference = match MapInfo::from_pin(pin_dir.join(spec.name)) {
                Ok(info) => kawaii::spec_mismatch(spec, &info),
                Err(e) => Some(format!("cannot read the pin: {e}")),
            };
            (spec.name, difference)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_round_trip() {
        for v in 0..5 {
            assert_eq!(Verdict::try_from(v).map(|v| v as u32), Ok(v));
        }
        assert_eq!(Verdict::try_from(5), Err(5));
        assert!(XDP_PASS_OBJECT.starts_with(b"\x7fELF"));
    }
}
