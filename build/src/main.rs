//! `cargo xtask`: the one entry point for building, running, testing and
//! benchmarking the keel image.
#![forbid(unsafe_code)]

mod bench;
mod bench_api;
mod bench_guest_io;
mod bench_image;
mod bench_iscsi;
mod bench_lacp;
mod cmd;
mod fuzz;

mod guest;
mod hostcfg;
mod image;
mod media;
mod peer;
mod run;
mod setup;
mod test;

use std::process::ExitCode;

pub use cmd::{Error, Paths, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup                 install the host packages, the Rust target and the boot-bench peer (idempotent)
  build                 build the image into target/image/keel.elf
  image [options]       build the boot media into target/image/: keel.img (signed),
                        keel-disk.img (GPT: UEFI + BIOS, A/B slots), keel.iso, pxe/, SHA256SUMS
      --out DIR         write them to DIR instead
      --elf FILE        make them from this ELF instead of building the image
      --pxe-host MAC=F  serve host config F (TOML) to the NIC with this MAC over PXE (repeatable)
  run [options]         build and boot the image in QEMU, serial on stdout
      --api-port N      loopback port forwarded to the image's HTTP port 80 (default 8080)
      --cpus N          virtual CPUs (default 4)
      --memory MiB      guest RAM (default 2048)
      --host-config F   host configuration TOML to compile and boot with
      --root-password P set (or override) the root password
      --image FILE      boot this ELF instead of building the image
      --guest-kernel F  a Linux bzImage the image starts as guest VM `guest` at boot
      --guest-initrd F  its initrd
      --guest-disk F    its virtio-blk disk vda: a RAM disk holding F's bytes
      --guest-iso F     its read-only virtio-blk disk vdb (VIRTIO_BLK_F_RO), e.g. an ISO
      --guest-nic NET   a virtio-net NIC, a VIF on host network NET of the image's switch
                        (`management`, or a host interface name); MAC 00:16:3e:.. from the VM name
      --guest-cmdline S its command line (default: console=ttyS0)
      --guest-cpus N    its vCPUs (default 1; time-sliced on the non-boot CPUs)
      --guest-memory M  its RAM in MiB (default 256)
      --boot-file N=F   file F as boot:N for VMs started through the XenAPI (PV_kernel,
                        PV_ramdisk; repeatable), e.g. --boot-file debian/vmlinuz=target/peer/vmlinuz
      --nic tap=NAME    a further NIC on an existing tap device (repeatable; eth1, eth2, ...)
  test                  fmt, clippy, image build, unit tests, then the QEMU image tests
  fuzz <target> [--seconds N] [--jobs N] | fuzz list
                        fuzz one target of build/fuzz with libFuzzer (installs nightly + cargo-fuzz)
  bench [boot|guest-boot|iscsi|image|lacp-failover|api|guest-io]
                        print `BENCH <name> ours=.. peer=.. ratio=..` lines
                        (api: `BENCH api-<call>-<client> p50_us=.. p99_us=.. calls_per_s=..`)
  help                  this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = Paths::discover().and_then(|paths| match command.as_str() {
        "setup" => no_args("setup", rest)
            .and_then(|()| setup::setup(&paths))
            .map(|()| ExitCode::SUCCESS),
        "build" => no_args("build", rest)
            .and_then(|()| image::build(&paths))
            .map(|_| ExitCode::SUCCESS),
        "image" => media::image(&paths, rest).map(|_| ExitCode::SUCCESS),
        "run" => run::run(&paths, rest),
        "test" => no_args("test", rest)
            .and_then(|()| test::test(&paths))
            .map(|()| ExitCode::SUCCESS),
        "bench" => bench::bench(&paths, rest).map(|()| ExitCode::SUCCESS),
        "fuzz" => fuzz::fuzz(&paths, rest).map(|()| ExitCode::SUCCESS),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Error::usage(format!("unknown command {other:?}"))),
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask {command}: error: {e}");
            if e.is_usage() {
                eprint!("\n{USAGE}");
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn no_args(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(arg) => Err(Error::usage(format!(
            "`{command}` takes no arguments, got {arg:?}"
        ))),
    }
}
