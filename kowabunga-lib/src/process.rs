//! Running helper programs (qemu-img, genisoimage) with a bounded wait.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a helper program ended badly.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// It exceeded its time and was killed.
    Timeout(Duration),
    /// It exited with a failure status.
    Failed {
        /// Exit status, as text.
        status: String,
        /// The last lines of its standard error.
        stderr: String,
    },
}

/// Runs `program args...`, waits at most `timeout` (killing it then), and
/// returns its standard output.
pub(crate) fn run(program: &str, args: &[&str], timeout: Duration) -> Result<String, RunError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(RunError::Spawn)?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = out_reader.join();
                let _ = err_reader.join();
                return Err(RunError::Timeout(timeout));
            }
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(RunError::Failed {
            status: status.to_string(),
            stderr: tail.join(" | "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_failure_and_timeout() {
        let out = run("sh", &["-c", "echo hi"], Duration::from_secs(10)).expect("echo");
        assert_eq!(out, "hi\n");
        match run(
            "sh",
            &["-c", "echo boom >&2; exit 3"],
            Duration::from_secs(10),
        ) {
            Err(RunError::Failed { status, stderr }) => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr, "boom");
            }
            other => panic!("expected failure, got {other:?}"),
        }
        let t0 = Instant::now();
        assert!(matches!(
            run("sleep", &["30"], Duration::from_millis(200)),
            Err(RunError::Timeout(_))
        ));
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            run("/nonexistent/prog", &[], Duration::from_secs(1)),
            Err(RunError::Spawn(_))
        ));
    }
}
