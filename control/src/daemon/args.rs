//! `kowabungad`'s command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`,
    /// `fields.message`, ...), for log shippers.
    Json,
}

/// Command line of `kowabungad`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kowabungad",
    version,
    about = "Kowabunga node daemon (Kawaii XDP gateway, Konvey XDP load balancer)"
)]
pub struct Args {
    /// Configuration file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Validate the configuration, print "config OK" and exit; touches nothing.
    #[arg(long)]
    pub check: bool,
    /// Detach the XDP programs from the configured interfaces and remove the
    /// pinned maps and links under node.bpffs (conntrack is lost), then exit.
    #[arg(long, conflicts_with = "check")]
    pub detach: bool,
    /// Log format on stderr: `text`, or `json` (one object a line, for log
    /// shippers).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses() {
        let args = Args::try_parse_from(["kowabungad", "--config", "/etc/k.yaml", "--check"])
            .expect("args");
        assert_eq!(args.config, PathBuf::from("/etc/k.yaml"));
        assert!(args.check && !args.detach);
        assert!(Args::try_parse_from(["kowabungad"]).is_err());
        assert!(Args::try_parse_from(["kowabungad", "-c", "x", "--check", "--detach"]).is_err());
        assert_eq!(args.log_format, LogFormat::Text);
        let json =
            Args::try_parse_from(["kowabungad", "-c", "x", "--log-format", "json"]).expect("json");
        assert_eq!(json.log_format, LogFormat::Json);
        let e = Args::try_parse_from(["kowabungad", "-c", "x", "--log-format", "xml"])
            .expect_err("xml");
        assert!(e.to_string().contains("--log-format"), "{e}");
    }
}
