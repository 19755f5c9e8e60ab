//! `kowabunga`: the operator's command line of a Kowabunga node. See
//! [`kowabunga_control::cli`].

use std::process::ExitCode;

use clap::Parser as _;
use kowabunga_control::cli::{run, Cli};

fn main() -> ExitCode {
    run(Cli::parse())
}
