//! `cargo xtask build`: the image ELF, booted by QEMU's `-kernel` (PVH).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::cmd::{Context, cargo, run_status, stdout_of};
use crate::setup::IMAGE_TARGET;
use crate::{Error, Paths, Result};

/// `<git short hash>`, with `-dirty` when tracked files differ from HEAD.
pub fn build_id(paths: &Paths) -> String {
    // --no-optional-locks: never take index.lock, others may be committing.
    let git = |args: &[&str]| {
        stdout_of(
            Command::new("git")
                .current_dir(&paths.root)
                .arg("--no-optional-locks")
                .args(args),
        )
    };
    let Ok(hash) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.trim().is_empty())
        .unwrap_or(true);
    format!("{}{}", hash.trim(), if dirty { "-dirty" } else { "" })
}

/// Path prefixes that would otherwise be baked into panic locations and
/// debug info: the workspace and the cargo home differ between machines, and
/// the image must be the same bytes wherever the same commit is built.
fn remap_flags(paths: &Paths) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut flags = vec![format!(
        "'--remap-path-prefix={}=/keel'",
        paths.root.display()
    )];
    if let Some(home) = cargo_home {
        flags.push(format!("'--remap-path-prefix={}=/cargo'", home.display()));
    }
    // Merged with (appended to) the rustflags in .cargo/config.toml.
    format!("target.{IMAGE_TARGET}.rustflags=[{}]", flags.join(", "))
}

/// Builds the image and copies it to `target/image/keel.elf`; returns that path.
pub fn build(paths: &Paths) -> Result<PathBuf> {
    let build_id = build_id(paths);
    println!("build: keel image, build id {build_id}");
    run_status(
        cargo(paths)
            .args(["--config", &remap_flags(paths)])
            .args([
                "build",
                "--release",
                "-p",
                "appliance",
                "--features",
                "image",
                "--bin",
                "keel",
                "--target",
                IMAGE_TARGET,
            ])
            .env("KEEL_BUILD_ID", &build_id),
    )
    .map_err(|e| Error::new(format!("building the image failed: {e}")))?;
    let built = paths.cargo_image();
    let image = paths.image();
    if let Some(dir) = image.parent() {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(&built, &image)
        .context(|| format!("copying {} to {}", built.display(), image.display()))?;
    let size = fs::metadata(&image)
        .context(|| format!("reading {}", image.display()))?
        .len();
    println!(
        "build: {} is {size} bytes ({:.1} KiB)",
        paths.show(&image),
        size as f64 / 1024.0
    );
    Ok(image)
}
