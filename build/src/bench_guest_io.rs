//! `cargo xtask bench guest-io` (issue 8): a guest's disk and network
//! throughput under our hypervisor against the same work done without it,
//! in one run of the image test `bench_guest_io` (see
//! qemu-tests/tests/image/bench_guest_io.rs; `cargo xtask test` runs it too,
//! for what it checks): a guest's 256 MiB direct-I/O
//! `dd` from its virtio-blk disk on an iSCSI VDI against our hosted
//! initiator reading the same tgtd LUN, and guest-to-namespace TCP through
//! our switch and LACP bond against namespace-to-namespace TCP through the
//! same Open vSwitch. The test prints the `BENCH` lines; this passes them on.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::cmd::{Context, cargo, describe, run_status};
use crate::{Error, Paths, Result, image};

/// The test, by its exact name in the `image` test binary.
const TEST: &str =
    "bench_guest_io::guest_disk_and_tcp_at_scale_beside_the_hosted_initiator_and_ovs";

pub fn guest_io(paths: &Paths) -> Result<()> {
    image::build(paths)?;
    run_status(cargo(paths).args(["build", "--release", "-p", "storage", "--bin", "iscsi"]))?;
    run_status(cargo(paths).args(["build", "-p", "host-config", "--bin", "host-config"]))?;
    let mut test = cargo(paths);
    test.args(["test", "-p", "qemu-tests", "--test", "image", "--"])
        .args(["--nocapture", "--exact", TEST]);
    crate::test::image_test_env(paths, &mut test);
    println!("bench guest-io: {}", describe(&test));
    let mut child = test
        .stdout(Stdio::piped())
        .spawn()
        .context(|| format!("running `{}`", describe(&test)))?;
    let mut benches = 0;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.context(|| "reading the test's output".into())?;
            benches += usize::from(line.starts_with("BENCH "));
            println!("{line}");
        }
    }
    let status = child
        .wait()
        .context(|| format!("waiting for `{}`", describe(&test)))?;
    if !status.success() {
        return Err(Error::new(format!(
            "bench guest-io: `{}` failed ({status})",
            describe(&test)
        )));
    }
    if benches == 0 {
        return Err(Error::new(
            "bench guest-io: the test passed but printed no BENCH line",
        ));
    }
    Ok(())
}
