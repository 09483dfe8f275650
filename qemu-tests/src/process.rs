//! Running a peer program (pytest, node) under a hard timeout.
//!
//! Its output goes to files in the test's directory (a pipe nobody reads
//! would stall it); on timeout it is killed by its own pid and reaped.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{HarnessError, io_err};

/// How a bounded run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Both streams, for an assertion message.
    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `command` to its end or until `timeout`, whichever comes first. The
/// streams are kept in `dir` as `<name>.stdout` and `<name>.stderr`.
pub fn run_bounded(
    mut command: Command,
    timeout: Duration,
    dir: &Path,
    name: &str,
) -> Result<Finished, HarnessError> {
    let (out_path, err_path) = (
        dir.join(format!("{name}.stdout")),
        dir.join(format!("{name}.stderr")),
    );
    let out =
        fs::File::create(&out_path).map_err(io_err(format!("creating {}", out_path.display())))?;
    let err =
        fs::File::create(&err_path).map_err(io_err(format!("creating {}", err_path.display())))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io_err(format!("spawning {name}")))?;
    let start = Instant::now();
    let read = |path: &Path| {
        fs::read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(io_err(format!("waiting for {name}")))?
        {
            return Ok(Finished {
                status,
                stdout: read(&out_path),
                stderr: read(&err_path),
            });
        }
        if start.elapsed() >= timeout {
            // Child::kill signals this child's own pid.
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Timeout {
                what: format!("{name} to finish"),
                after: timeout,
                serial_tail: String::new(),
                stderr: format!("{}\n{}", read(&out_path), read(&err_path)),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}
