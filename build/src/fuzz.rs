//! `cargo xtask fuzz`: runs the libFuzzer harness in `build/fuzz/` (one
//! target per `pub fn fuzz_*` entry point of the crates) with cargo-fuzz.
//! cargo-fuzz needs a nightly toolchain for the sanitizer flags; both are
//! installed here on first use (the tests never need them: the entry points
//! also run under `cargo test`, on stable, with seeded mutations).

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::cmd::{Paths, describe, run_status};
use crate::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask fuzz list
       cargo xtask fuzz <target> [--seconds N] [--jobs N]

Fuzzes one target (default 60 s) with libFuzzer; crashes and their inputs land
in build/fuzz/artifacts/<target>/, the corpus in target/fuzz/corpus/<target>/.
Installs the nightly toolchain and cargo-fuzz first if they are missing.
";

/// The harness folder.
fn fuzz_dir(paths: &Paths) -> PathBuf {
    paths.root.join("build/fuzz")
}

/// The targets: one file per target in `build/fuzz/fuzz_targets/`.
pub fn targets(paths: &Paths) -> Result<Vec<String>> {
    let dir = fuzz_dir(paths).join("fuzz_targets");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| Error::new(format!("{}: {e}", paths.show(&dir))))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(String::from)
        })
        .collect();
    names.sort();
    Ok(names)
}

fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn has_cargo_fuzz() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs what cargo-fuzz needs, if missing.
fn ensure_tools() -> Result<()> {
    if !has_nightly() {
        run_status(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    if !has_cargo_fuzz() {
        run_status(Command::new("cargo").args(["+nightly", "install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

pub fn fuzz(paths: &Paths, args: &[String]) -> Result<()> {
    let known = targets(paths)?;
    let Some((target, rest)) = args.split_first() else {
        return Err(Error::usage(format!("fuzz needs a target\n{USAGE}")));
    };
    if target == "list" {
        for t in &known {
            println!("{t}");
        }
        return Ok(());
    }
    if !known.contains(target) {
        return Err(Error::usage(format!(
            "unknown fuzz target {target:?}; targets: {}",
            known.join(", ")
        )));
    }
    let (mut seconds, mut jobs) = (60u64, 1u32);
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| Error::usage(format!("{flag} needs a value")))?;
        let bad = |e| Error::usage(format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--seconds" => seconds = value.parse().map_err(bad)?,
            "--jobs" => jobs = value.parse().map_err(bad)?,
            other => return Err(Error::usage(format!("unknown option {other:?}\n{USAGE}"))),
        }
    }
    ensure_tools()?;
    let corpus = paths.target.join("fuzz/corpus").join(target);
    fs::create_dir_all(&corpus).map_err(|e| Error::new(format!("{}: {e}", paths.show(&corpus))))?;
    let mut run = Command::new("cargo");
    run.current_dir(&paths.root)
        .args(["+nightly", "fuzz", "run", "--fuzz-dir"])
        .arg(fuzz_dir(paths))
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"));
    if jobs > 1 {
        // libFuzzer writes one fuzz-N.log per job into the current folder.
        run.arg(format!("-jobs={jobs}"))
            .arg(format!("-workers={jobs}"))
            .current_dir(paths.target.join("fuzz"));
    }
    run
        // The harness has its own workspace and lock file; keep its build
        // apart from the main target folder.
        .env("CARGO_TARGET_DIR", paths.target.join("fuzz/build"));
    println!("{}", describe(&run));
    run_status(&mut run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_calls_an_entry_point_and_is_declared() {
        let paths = Paths::discover().unwrap();
        let manifest = fs::read_to_string(fuzz_dir(&paths).join("Cargo.toml")).unwrap();
        let names = targets(&paths).unwrap();
        assert!(names.len() >= 22, "{names:?}");
        for name in names {
            assert!(
                manifest.contains(&format!("name = \"{name}\"")),
                "{name} is not a [[bin]] of build/fuzz/Cargo.toml"
            );
            let source =
                fs::read_to_string(fuzz_dir(&paths).join(format!("fuzz_targets/{name}.rs")))
                    .unwrap();
            assert!(
                source.contains("::fuzz_"),
                "{name} calls no fuzz_* entry point"
            );
        }
    }
}
