//! The wire format of the operator socket: one JSON object per line each
//! way, every message carrying the protocol version `v`.
//!
//! ```text
//! -> {"v":1,"request":"status"}
//! <- {"v":1,"ok":{"status":{...}}}
//! -> {"v":1,"request":"reload"}
//! <- {"v":1,"err":{"kind":"config_refused","message":"konvey.endpoints[0].port: ..."}}
//! ```
//!
//! A message of another version is refused with [`WireError::Version`]
//! (both versions named), before its body is looked at.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// The protocol version this build speaks.
pub const API_VERSION: u32 = 1;

/// Errors of decoding a message.
#[derive(Debug, Error)]
pub enum WireError {
    /// The line is not JSON, or not a message of this version's shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message has no `v` field.
    #[error("message without a protocol version (\"v\")")]
    NoVersion,
    /// The peer speaks another version.
    #[error("protocol version {found} is not supported: this build speaks version {expected} (kowabunga and kowabungad must come from the same release)")]
    Version {
        /// The version in the message.
        found: u64,
        /// [`API_VERSION`].
        expected: u32,
    },
}

/// What the CLI asks the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
pub enum Request {
    /// Node, roles, programs, configuration, counts.
    Status,
    /// The last sampled drop events the daemon read.
    DropEvents,
    /// Konvey services, rotations and backend health.
    Backends,
    /// VRRP instances.
    Vrrp,
    /// IPsec tunnels.
    Ipsec,
    /// Kiwi zones and counters.
    Dns,
    /// Re-read and apply the configuration file (as `SIGHUP`).
    Reload,
    /// The Prometheus page (the metrics listener asks it; so may the CLI).
    Metrics,
}

/// Why the daemon could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request could not be decoded (or another version).
    BadRequest,
    /// The configuration was refused; the running one stays.
    ConfigRefused,
    /// The node does not run the role the request is about.
    NoRole,
    /// Anything else.
    Runtime,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Its class (chooses the CLI's exit code).
    pub kind: ErrorKind,
    /// One line, for the operator.
    pub message: String,
}

/// One XDP program attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// The role that owns it.
    pub role: String,
    /// The interface.
    pub interface: String,
    /// The program (`kawaii_public`, `konvey`, ...).
    pub program: String,
    /// `driver`, `generic` or `inherited` (a pinned link reused).
    pub mode: String,
}

/// The answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Host name.
    pub node: String,
    /// `node.zone`.
    pub zone: String,
    /// The daemon's version.
    pub version: String,
    /// Roles in start order.
    pub roles: Vec<String>,
    /// XDP attachments.
    pub programs: Vec<Program>,
    /// The configuration file.
    pub config_file: String,
    /// The applied configuration's generation: 1 at start, +1 per
    /// successful reload.
    pub generation: u64,
    /// Reloads applied / refused since start.
    pub reloads_ok: u64,
    /// Reloads refused since start.
    pub reloads_failed: u64,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// The pin directory (`node.bpffs`).
    pub bpffs: String,
    /// VRRP instances and their state.
    pub vrrp: Vec<VrrpInstance>,
    /// Conntrack entries (both tables) at the last sweep, per role.
    pub conntrack_entries: Vec<(String, u64)>,
    /// Konvey services.
    pub services: usize,
    /// Konvey backends (configured and draining).
    pub backends: usize,
    /// Status lines of the other roles (IPsec, Kiwi).
    pub other: Vec<String>,
}

/// One VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpInstance {
    /// Its name.
    pub name: String,
    /// VRID.
    pub vrid: u8,
    /// Interface.
    pub interface: String,
    /// `initialize`, `backup`, `master`.
    pub state: String,
    /// Our priority.
    pub priority: u8,
    /// The master's address and priority, when known.
    pub master: Option<String>,
    /// Advertisements received.
    pub adverts_rx: u64,
    /// Advertisements sent.
    pub adverts_tx: u64,
    /// Times this node became master.
    pub became_master: u64,
    /// Times it became backup.
    pub became_backup: u64,
}

/// The last probe of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Whether it succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took, in microseconds.
    pub latency_us: u64,
    /// How long ago it ended, in milliseconds.
    pub age_ms: u64,
}

/// One backend of a service (or a draining one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// The endpoint name (`None`: draining).
    pub endpoint: Option<String>,
    /// `vip:port/proto` (`None`: draining).
    pub service: Option<String>,
    /// `addr:port`.
    pub backend: String,
    /// `up`, `down`, `draining`.
    pub state: String,
    /// Milliseconds in this state.
    pub since_ms: Option<u64>,
    /// The last probe.
    pub last_probe: Option<Probe>,
    /// Conntrack flows to it now (entries of both tables, per flow).
    pub active_flows: Option<u64>,
    /// New flows since the counters exist (dataplane counter).
    pub total_flows: Option<u64>,
}

/// One service and its rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// The endpoint name.
    pub endpoint: String,
    /// `vip:port/proto`.
    pub service: String,
    /// The rotation programmed (backends in the order of the maps).
    pub rotation: Vec<String>,
}

/// The answer to [`Request::Backends`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backends {
    /// Services with their programmed rotation.
    pub services: Vec<ServiceInfo>,
    /// Backends, configured then draining.
    pub backends: Vec<BackendInfo>,
}

/// One sampled drop event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropSample {
    /// The role whose program dropped it.
    pub role: String,
    /// CLOCK_MONOTONIC of the drop, nanoseconds.
    pub ts_ns: u64,
    /// The reason (`drop_ingress_denied`, ...).
    pub reason: String,
    /// The description (`tcp 198.51.100.1:40000 -> 203.0.113.10:23 ifindex 3`).
    pub packet: String,
}

/// One IPsec tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    /// The configured name.
    pub name: String,
    /// The remote subnet.
    pub remote_subnet: String,
    /// Its state.
    pub state: String,
    /// Seconds in this state.
    pub since_s: u64,
    /// The last failure, kept after the tunnel came back.
    pub last_failure: Option<String>,
}

/// The answer to [`Request::Reload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadDone {
    /// The generation now applied.
    pub generation: u64,
    /// What changed, one line per section (empty: nothing).
    pub changed: Vec<String>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// To [`Request::Status`].
    Status(Box<Status>),
    /// To [`Request::DropEvents`].
    DropEvents(Vec<DropSample>),
    /// To [`Request::Backends`].
    Backends(Backends),
    /// To [`Request::Vrrp`].
    Vrrp(Vec<VrrpInstance>),
    /// To [`Request::Ipsec`].
    Ipsec(Vec<Tunnel>),
    /// To [`Request::Dns`]: status lines.
    Dns(Vec<String>),
    /// To [`Request::Reload`].
    Reload(ReloadDone),
    /// To [`Request::Metrics`]: the OpenMetrics text.
    Metrics(String),
}

/// A request on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMsg {
    /// [`API_VERSION`].
    pub v: u32,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// A response on the wire: `ok` or `err`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMsg {
    /// [`API_VERSION`].
    pub v: u32,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Answer>,
    /// The error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<ApiError>,
}

impl ResponseMsg {
    /// A successful response.
    pub fn ok(answer: Answer) -> Self {
        ResponseMsg {
            v: API_VERSION,
            ok: Some(answer),
            err: None,
        }
    }

    /// An error response.
    pub fn err(kind: ErrorKind, message: impl Into<String>) -> Self {
        ResponseMsg {
            v: API_VERSION,
            ok: None,
            err: Some(ApiError {
                kind,
                message: message.into(),
            }),
        }
    }

    /// The answer or the error.
    pub fn into_result(self) -> Result<Answer, ApiError> {
        match (self.ok, self.err) {
            (Some(answer), _) => Ok(answer),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ApiError {
                kind: ErrorKind::Runtime,
                message: "empty response".into(),
            }),
        }
    }
}

/// One message as a line (JSON, `\n` terminated).
pub fn encode<T: Serialize>(message: &T) -> String {
    // Our types always serialize (no maps with non-string keys).
    let mut line = serde_json::to_string(message).unwrap_or_else(|e| {
        format!("{{\"v\":{API_VERSION},\"err\":{{\"kind\":\"runtime\",\"message\":\"{e}\"}}}}")
    });
    line.push('\n');
    line
}

/// Decodes one line: the version is checked first.
///
/// # Errors
/// [`WireError`].
pub fn decode<T: DeserializeOwned>(line: &str) -> Result<T, WireError> {
    let value: serde_json::Value =
        serde_json::from_str(line.trim_end()).map_err(|e| WireError::Malformed(e.to_string()))?;
    let v = value.get("v").ok_or(WireError::NoVersion)?;
    let found = v.as_u64().ok_or(WireError::NoVersion)?;
    if found != u64::from(API_VERSION) {
        return Err(WireError::Version {
            found,
            expected: API_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| WireError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_look_as_documented() -> Result<(), WireError> {
        for request in [
            Request::Status,
            Request::DropEvents,
            Request::Backends,
            Request::Vrrp,
            Request::Ipsec,
            Request::Dns,
            Request::Reload,
            Request::Metrics,
        ] {
            let msg = RequestMsg {
                v: API_VERSION,
                request: request.clone(),
            };
            let line = encode(&msg);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(decode::<RequestMsg>(&line)?, msg);
        }
        assert_eq!(
            encode(&RequestMsg {
                v: 1,
                request: Request::Status
            }),
            "{\"v\":1,\"request\":\"status\"}\n"
        );
        Ok(())
    }

    #[test]
    fn responses_round_trip() -> Result<(), WireError> {
        let ok = ResponseMsg::ok(Answer::Reload(ReloadDone {
            generation: 3,
            changed: vec!["konvey: 2 endpoints".into()],
        }));
        let back: ResponseMsg = decode(&encode(&ok))?;
        assert_eq!(back, ok);
        assert!(matches!(back.into_result(), Ok(Answer::Reload(r)) if r.generation == 3));
        let err = ResponseMsg::err(ErrorKind::ConfigRefused, "node.zone: empty");
        let line = encode(&err);
        assert_eq!(
            line,
            "{\"v\":1,\"err\":{\"kind\":\"config_refused\",\"message\":\"node.zone: empty\"}}\n"
        );
        let back: ResponseMsg = decode(&line)?;
        assert_eq!(
            back.into_result(),
            Err(ApiError {
                kind: ErrorKind::ConfigRefused,
                message: "node.zone: empty".into()
            })
        );
        Ok(())
    }

    #[test]
    fn other_versions_and_garbage_get_clear_errors() {
        let e = decode::<RequestMsg>("{\"v\":2,\"request\":\"status\"}").expect_err("version 2");
        assert!(matches!(
            e,
            WireError::Version {
                found: 2,
                expected: 1
            }
        ));
        assert_eq!(
            e.to_string(),
            "protocol version 2 is not supported: this build speaks version 1 \
             (kowabunga and kowabungad must come from the same release)"
        );
        // the version is checked before the body: an unknown request of
        // another version is a version error
        assert!(matches!(
            decode::<RequestMsg>("{\"v\":9,\"request\":\"teleport\"}"),
            Err(WireError::Version { found: 9, .. })
        ));
        assert!(matches!(
            decode::<RequestMsg>("{\"request\":\"status\"}"),
            Err(WireError::NoVersion)
        ));
        assert!(matches!(
            decode::<RequestMsg>("{\"v\":1,\"request\":\"teleport\"}"),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode::<RequestMsg>("not json"),
            Err(WireError::Malformed(_))
        ));
    }
}
