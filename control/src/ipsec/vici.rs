//! A VICI session with charon (crate `rsvici`): every command's `success`
//! is checked here, so a refused command is an error with charon's own
//! message, never a silent no-op. Messages carrying a key are never
//! formatted into errors or logs.

use std::collections::HashMap;
use std::path::Path;

use futures_util::{pin_mut, Stream, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::charon::{LoadConn, LoadShared};
use super::tunnel::IkeSa;

/// Errors of a VICI session.
#[derive(Debug, Error)]
pub enum ViciError {
    /// The socket could not be reached.
    #[error("cannot connect to charon at {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The session broke or a message could not be read.
    #[error("VICI {cmd}: {source}")]
    Session {
        /// The command.
        cmd: &'static str,
        /// Why.
        #[source]
        source: rsvici::Error,
    },
    /// charon did not answer in time (it died, or hangs).
    #[error("VICI {cmd}: no answer within {secs} s")]
    Timeout {
        /// The command.
        cmd: &'static str,
        /// The limit.
        secs: u64,
    },
    /// charon answered `success = no`.
    #[error("charon refused {cmd} {name}: {errmsg}")]
    Refused {
        /// The command.
        cmd: &'static str,
        /// The connection (never the key).
        name: String,
        /// charon's message.
        errmsg: String,
    },
}

/// A command's reply.
#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    errmsg: Option<String>,
}

/// A charon log line (`log` and `control-log` events).
#[derive(Debug, Clone, Deserialize)]
pub struct LogLine {
    /// Subsystem (`IKE`, `CFG`, `NET`, ...).
    #[serde(default)]
    pub group: String,
    /// The message.
    #[serde(default)]
    pub msg: String,
    /// The IKE SA's connection, when the line is about one.
    #[serde(rename = "ikesa-name", default)]
    pub ikesa_name: Option<String>,
}

#[derive(Serialize)]
struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Id<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct Initiate<'a> {
    child: &'a str,
    ike: &'a str,
    timeout: u32,
    #[serde(rename = "init-limits")]
    init_limits: bool,
    loglevel: u32,
}

#[derive(Serialize)]
struct Terminate<'a> {
    ike: &'a str,
    force: bool,
    timeout: i32,
    loglevel: i32,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct TrapFilter {
    trap: bool,
}

/// How long charon may take to answer a command before the session is
/// given up (the driver bounds each of its rounds with it too).
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One VICI session.
pub struct Vici {
    client: rsvici::Client,
}

impl std::fmt::Debug for Vici {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vici")
    }
}

fn check(cmd: &'static str, name: &str, reply: Reply) -> Result<(), ViciError> {
    match reply.success {
        Some(true) => Ok(()),
        _ => Err(ViciError::Refused {
            cmd,
            name: name.to_owned(),
            errmsg: reply
                .errmsg
                .unwrap_or_else(|| "no success in the reply".to_owned()),
        }),
    }
}

impl Vici {
    /// Connects to charon's socket.
    ///
    /// # Errors
    /// [`ViciError::Connect`].
    pub async fn connect(path: &Path) -> Result<Self, ViciError> {
        let client = rsvici::unix::connect(path)
            .await
            .map_err(|source| ViciError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Vici { client })
    }

    async fn command<T: Serialize>(
        &mut self,
        cmd: &'static str,
        name: &str,
        msg: T,
    ) -> Result<(), ViciError> {
        let reply: Reply = self
            .client
            .request(cmd, msg)
            .await
            .map_err(|source| ViciError::Session { cmd, source })?;
        check(cmd, name, reply)
    }

    /// `version`: whether charon answers.
    ///
    /// # Errors
    /// The session is broken.
    pub async fn ping(&mut self) -> Result<(), ViciError> {
        let _: HashMap<String, String> =
            self.client
                .request("version", Empty {})
                .await
                .map_err(|source| ViciError::Session {
                    cmd: "version",
                    source,
                })?;
        Ok(())
    }

    /// `load-conn`.
    ///
    /// # Errors
    /// Refused or broken.
    pub async fn load_conn(&mut self, conn: &LoadConn) -> Result<(), ViciError> {
        let name = conn.keys().next().cloned().unwrap_or_default();
        self.command("load-conn", &name, conn).await
    }

    /// `load-shared` (the key goes to charon only).
    ///
    /// # Errors
    /// Refused or broken.
    pub async fn load_shared(&mut self, key: &LoadShared) -> Result<(), ViciError> {
        let id = key.id.clone();
        self.command("load-shared", &id, key).await
    }

    /// `unload-conn`.
    ///
    /// # Errors
    /// Refused or broken.
    pub async fn unload_conn(&mut self, name: &str) -> Result<(), ViciError> {
        self.command("unload-conn", name, Name { name }).await
    }

    /// `unload-shared`.
    ///
    /// # Errors
    /// Refused or broken.
    pub async fn unload_shared(&mut self, id: &str) -> Result<(), ViciError> {
        self.command("unload-shared", id, Id { id }).await
    }

    /// `initiate` of the child `name` (and its IKE SA); waits up to
    /// `timeout_ms` and returns charon's log lines of the attempt.
    ///
    /// # Errors
    /// Refused (with the log lines' failure in the message) or broken.
    pub async fn initiate(
        &mut self,
        name: &str,
        timeout_ms: u32,
    ) -> Result<Vec<LogLine>, (ViciError, Vec<LogLine>)> {
        let msg = Initiate {
            child: name,
            ike: name,
            timeout: timeout_ms,
            init_limits: false,
            loglevel: 1,
        };
        let stream = self
            .client
            .stream_request::<_, LogLine>("initiate", "control-log", msg);
        pin_mut!(stream);
        let mut lines = Vec::new();
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(u64::from(timeout_ms))
            + ANSWER_TIMEOUT;
        loop {
            let next = match tokio::time::timeout_at(deadline, stream.try_next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err((
                        ViciError::Timeout {
                            cmd: "initiate",
                            secs: (deadline - tokio::time::Instant::now()).as_secs(),
                        },
                        lines,
                    ))
                }
            };
            match next {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return Ok(lines),
                Err(e) if e.is_command_failed() => {
                    let errmsg = e.to_string();
                    return Err((
                        ViciError::Refused {
                            cmd: "initiate",
                            name: name.to_owned(),
                            errmsg,
                        },
                        lines,
                    ));
                }
                Err(source) => {
                    return Err((
                        ViciError::Session {
                            cmd: "initiate",
                            source,
                        },
                        lines,
                    ))
                }
            }
        }
    }

    /// `terminate` every IKE SA of connection `name`, without waiting.
    ///
    /// # Errors
    /// Broken (an SA that does not exist is not an error).
    pub async fn terminate(&mut self, name: &str) -> Result<(), ViciError> {
        let msg = Terminate {
            ike: name,
            force: false,
            timeout: -1,
            loglevel: -1,
        };
        let stream = self
            .client
            .stream_request::<_, LogLine>("terminate", "control-log", msg);
        pin_mut!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                // "no matching SAs to terminate found"
                Err(e) if e.is_command_failed() => return Ok(()),
                Err(source) => {
                    return Err(ViciError::Session {
                        cmd: "terminate",
                        source,
                    })
                }
            }
        }
    }

    /// `list-sas`: every IKE SA, as `list-sa` events.
    ///
    /// # Errors
    /// Broken.
    pub async fn list_sas(&mut self) -> Result<Vec<HashMap<String, IkeSa>>, ViciError> {
        let stream = self.client.stream_request::<_, HashMap<String, IkeSa>>(
            "list-sas",
            "list-sa",
            Empty {},
        );
        stream
            .try_collect()
            .await
            .map_err(|source| ViciError::Session {
                cmd: "list-sas",
                source,
            })
    }

    /// `list-conns`: the names of the loaded connections.
    ///
    /// # Errors
    /// Broken.
    pub async fn list_conns(&mut self) -> Result<Vec<String>, ViciError> {
        let stream = self
            .client
            .stream_request::<_, HashMap<String, serde::de::IgnoredAny>>(
                "list-conns",
                "list-conn",
                Empty {},
            );
        let maps: Vec<HashMap<String, serde::de::IgnoredAny>> = stream
            .try_collect()
            .await
            .map_err(|source| ViciError::Session {
                cmd: "list-conns",
                source,
            })?;
        Ok(maps.into_iter().flat_map(|m| m.into_keys()).collect())
    }

    /// `list-policies` of trap policies: `<connection>/<child>` names.
    ///
    /// # Errors
    /// Broken.
    pub async fn trap_policies(&mut self) -> Result<Vec<String>, ViciError> {
        let stream = self
            .client
            .stream_request::<_, HashMap<String, serde::de::IgnoredAny>>(
                "list-policies",
                "list-policy",
                TrapFilter { trap: true },
            );
        let maps: Vec<HashMap<String, serde::de::IgnoredAny>> = stream
            .try_collect()
            .await
            .map_err(|source| ViciError::Session {
                cmd: "list-policies",
                source,
            })?;
        Ok(maps.into_iter().flat_map(|m| m.into_keys()).collect())
    }

    /// charon's log lines, as they come (event `log`).
    pub fn logs(&mut self) -> impl Stream<Item = Result<LogLine, rsvici::Error>> {
        self.client.subscribe::<LogLine>("log")
    }

    /// A unit per SA change (events `ike-updown`, `child-updown`,
    /// `ike-rekey`, `child-rekey`): a cue to list the SAs again.
    pub fn changes(
        &mut self,
        event: &'static str,
    ) -> impl Stream<Item = Result<serde::de::IgnoredAny, rsvici::Error>> {
        self.client.subscribe::<serde::de::IgnoredAny>(event)
    }
}
