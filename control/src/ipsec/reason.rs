//! Why a tunnel is not up, in a network engineer's words, read from the
//! lines charon logs while it negotiates (VICI `log` and `control-log`
//! events). Pure: the patterns are strongSwan 5.9's messages.

use std::fmt;

/// The cause of a tunnel's last failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The peer accepted none of our proposals, or we none of its.
    ProposalMismatch(String),
    /// The pre-shared keys (or identities) do not match.
    AuthenticationFailed(String),
    /// No answer from the peer (initiation or dead peer detection).
    PeerUnreachable(String),
    /// The peer refused our subnets (traffic selectors).
    SubnetMismatch(String),
    /// The peer deleted the SA.
    ClosedByPeer,
    /// charon is not running (or its VICI socket is not reachable).
    CharonUnreachable(String),
    /// charon refused a command.
    Refused(String),
    /// This node is not the zone's master: the VIP lives elsewhere.
    NotMaster,
    /// Not started yet (`start_action: none` waits for the peer).
    WaitingForPeer,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ProposalMismatch(d) => write!(f, "proposal mismatch ({d})"),
            Reason::AuthenticationFailed(d) => write!(f, "authentication failed ({d})"),
            Reason::PeerUnreachable(d) => write!(f, "peer unreachable ({d})"),
            Reason::SubnetMismatch(d) => write!(f, "subnet mismatch ({d})"),
            Reason::ClosedByPeer => f.write_str("closed by the peer"),
            Reason::CharonUnreachable(d) => write!(f, "charon unreachable ({d})"),
            Reason::Refused(d) => write!(f, "refused by charon ({d})"),
            Reason::NotMaster => f.write_str("standby: the zone's VIP is on another node"),
            Reason::WaitingForPeer => f.write_str("waiting for the peer to initiate"),
        }
    }
}

/// The failure a charon log line reports, if it reports one.
///
/// ```
/// use kowabunga_control::ipsec::reason::{classify, Reason};
/// let r = classify("received NO_PROPOSAL_CHOSEN notify error").unwrap();
/// assert!(matches!(r, Reason::ProposalMismatch(_)));
/// assert_eq!(classify("CHILD_SA kw-a{1} established"), None);
/// ```
pub fn classify(msg: &str) -> Option<Reason> {
    let m = msg.trim();
    let detail = |s: &str| s.to_owned();
    if m.contains("NO_PROPOSAL_CHOSEN") {
        return Some(Reason::ProposalMismatch(detail(
            "the peer chose none of our proposals",
        )));
    }
    if m.contains("no acceptable proposal found") || m.contains("INVALID_KE_PAYLOAD") {
        return Some(Reason::ProposalMismatch(detail(
            "none of the peer's proposals is ours",
        )));
    }
    if m.contains("AUTHENTICATION_FAILED") {
        return Some(Reason::AuthenticationFailed(detail(
            "the peer rejected our pre-shared key",
        )));
    }
    if m.contains("MAC mismatched") || m.contains("verification of") {
        return Some(Reason::AuthenticationFailed(detail(
            "the peer's pre-shared key does not match ours",
        )));
    }
    if m.contains("no shared key found") || m.contains("no matching peer config found") {
        return Some(Reason::AuthenticationFailed(detail(
            "no key or identity matches the peer's",
        )));
    }
    if m.contains("TS_UNACCEPTABLE") || m.contains("no acceptable traffic selectors") {
        return Some(Reason::SubnetMismatch(detail(
            "the peer does not route our project subnet to its remote subnet",
        )));
    }
    if m.starts_with("giving up after") {
        return Some(Reason::PeerUnreachable(m.to_owned()));
    }
    if m.starts_with("received DELETE for IKE_SA") {
        return Some(Reason::ClosedByPeer);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charon_lines_are_named() {
        let cases = [
            (
                "received NO_PROPOSAL_CHOSEN notify error",
                "proposal mismatch",
            ),
            ("no acceptable proposal found", "proposal mismatch"),
            (
                "received INVALID_KE_PAYLOAD notify error",
                "proposal mismatch",
            ),
            (
                "received AUTHENTICATION_FAILED notify error",
                "authentication failed",
            ),
            (
                "tried 1 shared key for '1.2.3.4' - '5.6.7.8', but MAC mismatched",
                "authentication failed",
            ),
            (
                "received TS_UNACCEPTABLE notify, no CHILD_SA built",
                "subnet mismatch",
            ),
            (
                "giving up after 2 retransmits",
                "peer unreachable (giving up after 2 retransmits)",
            ),
            ("received DELETE for IKE_SA kw-a[3]", "closed by the peer"),
        ];
        for (line, want) in cases {
            let got = classify(line).map(|r| r.to_string()).unwrap_or_default();
            assert!(got.starts_with(want), "{line}: {got}");
        }
        for quiet in [
            "IKE_SA kw-a[1] established between 1.1.1.1[1.1.1.1]...2.2.2.2[2.2.2.2]",
            "sending DPD request",
            "",
        ] {
            assert_eq!(classify(quiet), None, "{quiet}");
        }
    }
}
