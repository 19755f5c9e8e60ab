//! The CLI's side of the socket: a blocking client, one request and one
//! answer per call.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::wire::{self, Answer, Request, RequestMsg, ResponseMsg, API_VERSION};
use super::ApiError;

/// How long an answer may take (a reload of a large configuration).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Asks the daemon listening on `socket`.
///
/// # Errors
/// [`ApiError::Unreachable`] (no daemon), [`ApiError::Io`],
/// [`ApiError::Wire`], or [`ApiError::Daemon`] (the daemon's error answer).
pub fn ask(socket: &Path, request: Request) -> Result<Answer, ApiError> {
    let stream = UnixStream::connect(socket).map_err(|source| ApiError::Unreachable {
        path: socket.to_owned(),
        source,
    })?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(ApiError::Io)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(ApiError::Io)?;
    let line = wire::encode(&RequestMsg {
        v: API_VERSION,
        request,
    });
    (&stream).write_all(line.as_bytes()).map_err(ApiError::Io)?;
    let mut reader = BufReader::new(&stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).map_err(ApiError::Io)?;
    if answer.is_empty() {
        return Err(ApiError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without an answer",
        )));
    }
    let response: ResponseMsg = wire::decode(&answer)?;
    response.into_result().map_err(ApiError::Daemon)
}
