//! Errors, workspace paths and running commands.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// An error a user can act on; `usage` errors also print the usage text.
#[derive(Debug)]
pub struct Error {
    message: String,
    usage: bool,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            usage: false,
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            usage: true,
        }
    }

    pub fn is_usage(&self) -> bool {
        self.usage
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<qemu_tests::HarnessError> for Error {
    fn from(e: qemu_tests::HarnessError) -> Error {
        Error::new(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to I/O errors.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(format!("{}: {e}", what())))
    }
}

/// Where things are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The workspace root.
    pub root: PathBuf,
    /// Where cargo writes its output (`CARGO_TARGET_DIR`, else `target/`).
    pub cargo_target: PathBuf,
    /// The workspace's `target/`: the image copy, the peer, run and test files.
    pub target: PathBuf,
}

impl Paths {
    pub fn discover() -> Result<Paths> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest
            .parent()
            .ok_or_else(|| Error::new("xtask's manifest folder has no parent"))?
            .to_path_buf();
        let target = root.join("target");
        let cargo_target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
            Some(dir) => std::env::current_dir()
                .context(|| "reading the current directory".into())?
                .join(dir),
            None => target.clone(),
        };
        Ok(Paths {
            root,
            cargo_target,
            target,
        })
    }

    /// The image as cargo leaves it.
    pub fn cargo_image(&self) -> PathBuf {
        self.cargo_target.join("x86_64-unknown-none/release/keel")
    }

    /// The image copy everything else boots: `target/image/keel.elf`.
    pub fn image(&self) -> PathBuf {
        self.target.join("image/keel.elf")
    }

    /// The `host-config` tool as built by `cargo build -p host-config`.
    pub fn host_config_bin(&self) -> PathBuf {
        self.cargo_target.join("debug/host-config")
    }

    /// The boot-bench peer folder.
    pub fn peer(&self) -> PathBuf {
        self.target.join("peer")
    }

    /// `path` relative to the root when it is inside, for messages.
    pub fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// The cargo that runs us (so the pinned toolchain is used throughout).
pub fn cargo(paths: &Paths) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(&paths.root);
    command
}

/// Shows a command the way a shell would take it.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            text.push_str(&format!(" '{}'", arg.replace('\'', r"'\''")));
        } else {
            text.push(' ');
            text.push_str(&arg);
        }
    }
    text
}

/// Runs a command with inherited stdio; fails unless it exits 0.
pub fn run_status(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .context(|| format!("running `{}`", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "`{}` failed ({status})",
            describe(command)
        )))
    }
}

/// Runs a command capturing its output; fails unless it exits 0, with its stderr.
pub fn run_output(command: &mut Command) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .context(|| format!("running `{}`", describe(command)))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::new(format!(
            "`{}` failed ({}):\n{}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        )))
    }
}

/// Runs a command and returns its stdout as text.
pub fn stdout_of(command: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run_output(command)?.stdout).into_owned())
}
