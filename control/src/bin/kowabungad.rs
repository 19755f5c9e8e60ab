//! `kowabungad`: the Kowabunga node daemon. See [`kowabunga_control::daemon`].

use std::process::ExitCode;

use clap::Parser as _;
use kowabunga_control::daemon::{run, Args};

fn main() -> ExitCode {
    run(Args::parse())
}
