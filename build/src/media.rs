//! `cargo xtask image`: the boot media (signed image, GPT disk image, hybrid
//! ISO, PXE tree, SHA256SUMS) built from the image ELF by
//! `host_config::artifacts`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use host_config::artifacts::{self, Artifact, Inputs, PxeHost};

use crate::cmd::{Context, stdout_of};
use crate::{Error, Paths, Result, image};

/// Names the file holding the ed25519 signing key (64 hex digits).
pub const SIGNING_KEY_ENV: &str = "KEEL_SIGNING_KEY";

/// Options of `cargo xtask image`.
#[derive(Debug, Default)]
pub struct Options {
    pub out: Option<PathBuf>,
    /// Use this already built ELF instead of building the image.
    pub elf: Option<PathBuf>,
    /// `MAC=FILE.toml`: a host served by the PXE tree.
    pub pxe_hosts: Vec<(String, PathBuf)>,
}

pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| Error::usage(format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--out" => options.out = Some(PathBuf::from(value()?)),
            "--elf" => options.elf = Some(PathBuf::from(value()?)),
            "--pxe-host" => {
                let spec = value()?;
                let (mac, file) = spec.split_once('=').ok_or_else(|| {
                    Error::usage(format!("--pxe-host takes MAC=FILE.toml, got {spec:?}"))
                })?;
                options
                    .pxe_hosts
                    .push((mac.to_string(), PathBuf::from(file)));
            }
            other => return Err(Error::usage(format!("`image` does not take {other:?}"))),
        }
    }
    Ok(options)
}

/// Builds the ELF, then the media; prints every artifact's size.
pub fn image(paths: &Paths, args: &[String]) -> Result<Vec<Artifact>> {
    let options = parse(args)?;
    let elf = match &options.elf {
        Some(elf) => elf.clone(),
        None => image::build(paths)?,
    };
    media(paths, &elf, &options)
}

/// The media from an already built ELF.
pub fn media(paths: &Paths, elf: &Path, options: &Options) -> Result<Vec<Artifact>> {
    let out = match &options.out {
        Some(dir) if dir.is_absolute() => dir.clone(),
        Some(dir) => std::env::current_dir()
            .context(|| "reading the current directory".into())?
            .join(dir),
        None => paths.target.join("image"),
    };
    let build_id = image::build_id(paths);
    let mut pxe_hosts = Vec::new();
    for (mac, file) in &options.pxe_hosts {
        let module = host_config::compile_file(file).map_err(Error::new)?;
        pxe_hosts.push(PxeHost {
            mac: artifacts::normalize_mac(mac)
                .ok_or_else(|| Error::usage(format!("--pxe-host: {mac:?} is not a MAC address")))?,
            module,
        });
    }
    let inputs = Inputs {
        elf: elf.to_path_buf(),
        out: out.clone(),
        version: format!("{}+{build_id}", env!("CARGO_PKG_VERSION")),
        build_id,
        source_date_epoch: source_date_epoch(paths)?,
        signing_seed: signing_seed(paths)?,
        pxe_hosts,
        grub_lib: PathBuf::from(artifacts::GRUB_LIB),
    };
    let result = artifacts::build(&inputs);
    let built = match result {
        Ok(built) => built,
        Err(artifacts::ArtifactError::OverBudget { bytes }) => {
            return Err(Error::new(format!(
                "{} is {bytes} bytes ({:.2} MiB), over the 8 MiB budget",
                artifacts::SIGNED_IMAGE,
                bytes as f64 / 1048576.0
            )));
        }
        Err(e) => return Err(Error::new(e.to_string())),
    };
    println!("image: artifacts in {}", paths.show(&out));
    for artifact in &built {
        let budget = if artifact.name == artifacts::SIGNED_IMAGE {
            format!(
                "  ({:.1}% of the {} MiB budget)",
                artifact.bytes as f64 * 100.0 / artifacts::IMAGE_BUDGET_BYTES as f64,
                artifacts::IMAGE_BUDGET_BYTES / 1048576
            )
        } else {
            String::new()
        };
        println!(
            "image: {:<40} {:>10} bytes ({:>8.1} KiB){budget}",
            artifact.name,
            artifact.bytes,
            artifact.bytes as f64 / 1024.0
        );
    }
    Ok(built)
}

/// `SOURCE_DATE_EPOCH` if set, else the commit time of HEAD.
fn source_date_epoch(paths: &Paths) -> Result<u64> {
    if let Ok(text) = std::env::var("SOURCE_DATE_EPOCH") {
        return text
            .trim()
            .parse()
            .map_err(|_| Error::new(format!("SOURCE_DATE_EPOCH={text:?} is not a number")));
    }
    let text = stdout_of(Command::new("git").current_dir(&paths.root).args([
        "--no-optional-locks",
        "log",
        "-1",
        "--format=%ct",
    ]))?;
    text.trim()
        .parse()
        .map_err(|_| Error::new(format!("git log gave no commit time: {text:?}")))
}

/// The key from `KEEL_SIGNING_KEY`, else the test key in `target/keys/`
/// (made once, so repeated builds sign alike).
fn signing_seed(paths: &Paths) -> Result<[u8; 32]> {
    let (path, generated) = match std::env::var_os(SIGNING_KEY_ENV) {
        Some(path) => (PathBuf::from(path), false),
        None => (paths.target.join("keys/test-signing.key"), true),
    };
    if generated && !path.exists() {
        let mut seed = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .context(|| "reading /dev/urandom".into())?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, format!("{}\n", artifacts::hex(&seed)))
            .context(|| format!("writing {}", path.display()))?;
        println!(
            "image: generated a test signing key in {} (set {SIGNING_KEY_ENV} to sign with yours)",
            paths.show(&path)
        );
    }
    let text = fs::read_to_string(&path).context(|| {
        format!(
            "reading the signing key {} ({SIGNING_KEY_ENV})",
            path.display()
        )
    })?;
    artifacts::parse_key_hex(&text).ok_or_else(|| {
        Error::new(format!(
            "{}: a signing key is 64 hex digits (an ed25519 secret seed)",
            path.display()
        ))
    })
}
