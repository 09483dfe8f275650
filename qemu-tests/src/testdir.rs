//! Per-test scratch directories under `target/qemu-tests/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{HarnessError, io_err};

/// The workspace root (the parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A directory `target/qemu-tests/<test>-<pid>-<n>` for one QEMU run and the
/// files its test makes. Removed on drop unless the thread is panicking (a
/// failing test), in which case it is kept and its path printed.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// A fresh directory named after `name`.
    pub fn new(name: &str) -> Result<TestDir, HarnessError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = workspace_root()
            .join("target")
            .join("qemu-tests")
            .join(format!("{safe}-{}-{n}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path).map_err(io_err(format!("clearing {}", path.display())))?;
        }
        fs::create_dir_all(&path).map_err(io_err(format!("creating {}", path.display())))?;
        Ok(TestDir { path })
    }

    /// A fresh directory named after the running test (libtest names each
    /// test's thread after the test).
    pub fn for_current_test() -> Result<TestDir, HarnessError> {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("qemu").replace("::", "-");
        TestDir::new(&name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
