//! `cargo xtask test`: everything CI runs, in order, stopping at the first failure.

use std::process::Command;
use std::time::Instant;

use qemu_tests::{GUEST_MAC, HOST_CONFIG_BIN_ENV, IMAGE_ENV, MEDIA_ENV, PXE_TEST_HOST_CONFIG};

use crate::cmd::{cargo, describe, run_status};
use crate::{Error, Paths, Result, image, media, setup};

/// One step of the test run.
enum Step {
    /// A cargo invocation.
    Cargo {
        title: &'static str,
        args: &'static [&'static str],
        env: bool,
    },
    /// `cargo xtask build`.
    BuildImage,
    /// `cargo xtask image` into `target/image-test/media`, serving a test
    /// host config over PXE to the QEMU NIC's MAC.
    BootMedia,
    /// The hosted XenAPI driven by the official Python SDK (pytest).
    HostedXenApi,
}

/// Where the pytest suite finds the hosted binary.
const KEEL_HOSTED_ENV: &str = "KEEL_HOSTED";

const STEPS: &[Step] = &[
    Step::Cargo {
        title: "format",
        args: &["fmt", "--all", "--check"],
        env: false,
    },
    Step::Cargo {
        title: "clippy (host, all targets)",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: false,
    },
    Step::Cargo {
        title: "clippy (image: kernel + appliance for x86_64-unknown-none)",
        args: &[
            "clippy",
            "-p",
            "kernel",
            "-p",
            "appliance",
            "--features",
            "appliance/image",
            "--target",
            "x86_64-unknown-none",
            "--",
            "-D",
            "warnings",
        ],
        env: false,
    },
    Step::BuildImage,
    Step::BootMedia,
    Step::Cargo {
        title: "unit and hosted tests",
        args: &["test", "--workspace", "--exclude", "qemu-tests"],
        env: false,
    },
    Step::HostedXenApi,
    Step::Cargo {
        title: "host-config tool",
        args: &["build", "-p", "host-config", "--bin", "host-config"],
        env: false,
    },
    Step::Cargo {
        title: "iscsi CLI (release: the guest-io image test's peer reader)",
        args: &["build", "--release", "-p", "storage", "--bin", "iscsi"],
        env: false,
    },
    Step::Cargo {
        title: "image tests in QEMU",
        args: &["test", "-p", "qemu-tests", "--", "--test-threads=2"],
        env: true,
    },
];

/// Builds `keel-hosted` and runs the pytest suite against it.
fn hosted_xenapi(paths: &Paths) -> Result<()> {
    let mut build = cargo(paths);
    build.args([
        "build",
        "-p",
        "appliance",
        "--features",
        "hosted",
        "--bin",
        "keel-hosted",
    ]);
    println!("{}", describe(&build));
    run_status(&mut build)?;
    let binary = paths.cargo_target.join("debug").join("keel-hosted");
    let mut pytest = Command::new("python3");
    pytest
        .current_dir(&paths.root)
        .args(["-m", "pytest", "appliance/tests/python", "-q"])
        .env(KEEL_HOSTED_ENV, &binary);
    println!("{}", describe(&pytest));
    run_status(&mut pytest)
}

/// Where the image tests find the boot media.
fn test_media_dir(paths: &Paths) -> std::path::PathBuf {
    paths.target.join("image-test/media")
}

/// The media from the image just built, with the PXE test host.
fn test_media(paths: &Paths) -> Result<()> {
    let host = paths.target.join("image-test/pxe-host.toml");
    if let Some(dir) = host.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::new(format!("creating {}: {e}", dir.display())))?;
    }
    std::fs::write(&host, PXE_TEST_HOST_CONFIG)
        .map_err(|e| Error::new(format!("writing {}: {e}", host.display())))?;
    let options = media::Options {
        out: Some(test_media_dir(paths)),
        elf: None,
        pxe_hosts: vec![(GUEST_MAC.to_string(), host)],
    };
    media::media(paths, &paths.image(), &options).map(|_| ())
}

/// Where the guest-io image test finds the hosted `iscsi` CLI.
pub const ISCSI_BIN_ENV: &str = "KEEL_ISCSI_BIN";

/// The environment the image tests read: the image, the host-config tool,
/// the boot media and the release `iscsi` CLI.
pub fn image_test_env(paths: &Paths, command: &mut Command) {
    command
        .env(IMAGE_ENV, paths.image())
        .env(HOST_CONFIG_BIN_ENV, paths.host_config_bin())
        .env(MEDIA_ENV, test_media_dir(paths))
        .env(
            ISCSI_BIN_ENV,
            paths.cargo_target.join("release").join("iscsi"),
        );
}

pub fn test(paths: &Paths) -> Result<()> {
    println!("==> xtask test: setup");
    setup::setup(paths)?;
    let total = STEPS.len();
    let start = Instant::now();
    for (i, step) in STEPS.iter().enumerate() {
        let n = i + 1;
        let step_start = Instant::now();
        let outcome = match step {
            Step::Cargo { title, args, env } => {
                let mut command: Command = cargo(paths);
                command.args(*args);
                if *env {
                    image_test_env(paths, &mut command);
                }
                println!(
                    "\n==> xtask test [{n}/{total}]: {title}: {}",
                    describe(&command)
                );
                run_status(&mut command).map_err(|e| (*title, e))
            }
            Step::HostedXenApi => {
                println!(
                    "\n==> xtask test [{n}/{total}]: hosted XenAPI with the Python SDK and the npm xen-api client"
                );
                hosted_xenapi(paths).map_err(|e| ("hosted XenAPI", e))
            }
            Step::BootMedia => {
                println!("\n==> xtask test [{n}/{total}]: boot media");
                test_media(paths).map_err(|e| ("boot media", e))
            }
            Step::BuildImage => {
                println!("\n==> xtask test [{n}/{total}]: image build");
                image::build(paths)
                    .map(|_| ())
                    .map_err(|e| ("image build", e))
            }
        };
        if let Err((title, e)) = outcome {
            return Err(Error::new(format!(
                "step {n}/{total} ({title}) failed: {e}"
            )));
        }
        println!(
            "==> xtask test [{n}/{total}]: ok ({:.1} s)",
            step_start.elapsed().as_secs_f64()
        );
    }
    println!(
        "\n==> xtask test: {:.0} s in all",
        start.elapsed().as_secs_f64()
    );
    println!("xtask test: all {total} steps passed");
    Ok(())
}
