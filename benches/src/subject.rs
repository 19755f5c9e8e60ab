//! What a bench measures: a loaded program object behind one small trait,
//! implemented here for the Kawaii and Konvey fixture harnesses.

use std::time::Duration;

use anyhow::Result;
use kowabunga_dataplane::{Counters, Role};
use kowabunga_tests::harness::Harness;
use kowabunga_tests::harness_konvey::KonveyHarness;

/// A loaded program object whose frames are run through
/// `BPF_PROG_TEST_RUN` against its live maps.
pub trait Subject {
    /// Which program of the object a row runs: the [`Role`] for Kawaii,
    /// `()` for Konvey (one program).
    type Program: Copy;

    /// Name in benchmark ids and in the table (`kawaii`, `konvey`).
    const NAME: &'static str;

    /// Runs `frame` once; the verdict.
    fn run(&self, program: Self::Program, frame: &[u8]) -> Result<u32>;

    /// Runs `frame` `repeat` times in the kernel; the kernel's mean time of
    /// one run.
    fn run_repeat(&self, program: Self::Program, frame: &[u8], repeat: u32) -> Result<Duration>;

    /// The object's counters, summed over CPUs.
    fn counters(&self) -> Result<Counters>;
}

impl Subject for Harness {
    type Program = Role;
    const NAME: &'static str = "kawaii";

    fn run(&self, role: Role, frame: &[u8]) -> Result<u32> {
        Ok(self.kawaii.run(role, frame)?.verdict)
    }

    fn run_repeat(&self, role: Role, frame: &[u8], repeat: u32) -> Result<Duration> {
        Ok(self.kawaii.run_repeat(role, frame, repeat)?)
    }

    fn counters(&self) -> Result<Counters> {
        Harness::counters(self)
    }
}

impl Subject for KonveyHarness {
    type Program = ();
    const NAME: &'static str = "konvey";

    fn run(&self, (): (), frame: &[u8]) -> Result<u32> {
        Ok(self.konvey.run(frame)?.verdict)
    }

    fn run_repeat(&self, (): (), frame: &[u8], repeat: u32) -> Result<Duration> {
        Ok(self.konvey.run_repeat(frame, repeat)?)
    }

    fn counters(&self) -> Result<Counters> {
        KonveyHarness::counters(self)
    }
}
