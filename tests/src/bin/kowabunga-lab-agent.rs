//! `kowabunga-lab-agent`: bounded TCP/UDP servers and clients for the namespace labs.
//!
//! Run inside a namespace with `ip netns exec NS kowabunga-lab-agent SUBCOMMAND ...`;
//! see [`kowabunga_tests::lab::agent`] for the subcommands.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(kowabunga_tests::lab::agent::main(&args));
}
