//! The A/B upgrade writer and boot status, as the appliance will run them
//! against the boot disk (`no_std`; the disk is reached through [`Disk`]).
//!
//! An upgrade streams a signed image ([`crate::signed`]) into the slot that
//! is not running: the header is verified before anything is written, the
//! target slot's old header is wiped first, the payload is written and
//! hashed as it arrives, and the new header is written last, only when the
//! payload matches it. Then the GRUB environment block gets
//! `keel_trial=<slot>` (GRUB boots it once, see `image/README.md`) and
//! `keel_tried=<slot>`. The new image, once healthy, calls [`commit`]; if it
//! never does, the next boot is the old slot and [`BootStatus`] reports the
//! failed attempt. A power cut at any point leaves the running slot and the
//! environment block as they were, until the single env-block write.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::disk_layout::{self, Role, SECTOR_BYTES, SLOT_HEADER_SECTORS};
use crate::esp::{EspError, Geometry};
use crate::grubenv::{BLOCK_BYTES, EnvBlock, EnvError};
use crate::signed::{HEADER_BYTES, Header, Manifest, PayloadCheck, PublicKey, VerifyError};

const SECTOR: usize = SECTOR_BYTES as usize;

/// 512-byte sectors of the boot disk.
pub trait Disk {
    type Error: fmt::Debug;
    /// Reads whole sectors from `lba` into `buf` (a multiple of 512 bytes).
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Writes whole sectors at `lba` from `buf` (a multiple of 512 bytes).
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Self::Error>;
    /// Returns once everything written is on stable storage: each step of
    /// an upgrade is durable before the next one points at it.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// An A/B slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    pub fn parse(text: &str) -> Option<Slot> {
        match text {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    fn first_lba(self) -> u64 {
        disk_layout::partition(match self {
            Slot::A => Role::SlotA,
            Slot::B => Role::SlotB,
        })
        .first_lba
    }
}

/// Why an upgrade or a status read failed. Nothing was written unless the
/// variant says so.
#[derive(Debug)]
pub enum UpgradeError<E> {
    /// The boot disk could not be read or written.
    Disk(E),
    /// The ESP or its `GRUBENV` is not where the layout puts it.
    Esp(EspError),
    /// The environment block is damaged or full.
    Env(EnvError),
    /// The image is refused (bad signature, untrusted key, wrong length or
    /// digest). For a digest or length error the target slot was written
    /// but has no valid header, and nothing points at it.
    Image(VerifyError),
    /// The image does not fit a slot.
    TooLarge { payload_bytes: u64 },
    /// The kernel command line names no slot (not booted from a keel disk).
    NotBootedFromDisk,
    /// `feed` after `finish`, or `finish` before the header.
    Incomplete,
}

impl<E: fmt::Debug> fmt::Display for UpgradeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disk(e) => write!(f, "boot disk I/O failed: {e:?}"),
            Self::Esp(e) => write!(f, "{e}"),
            Self::Env(e) => write!(f, "{e}"),
            Self::Image(e) => write!(f, "upgrade refused: {e}"),
            Self::TooLarge { payload_bytes } => write!(
                f,
                "upgrade refused: the image is {payload_bytes} bytes, a slot holds {}",
                disk_layout::SLOT_PAYLOAD_SECTORS * SECTOR_BYTES
            ),
            Self::NotBootedFromDisk => f.write_str(
                "this host did not boot from a keel disk (no keel.slot= on its command line)",
            ),
            Self::Incomplete => f.write_str("the upload ended before the image header"),
        }
    }
}

/// The sector of the environment block on `disk`.
pub fn env_lba<D: Disk>(disk: &mut D) -> Result<u64, UpgradeError<D::Error>> {
    let esp = disk_layout::partition(Role::Esp);
    let mut boot = [0u8; SECTOR];
    disk.read(esp.first_lba, &mut boot)
        .map_err(UpgradeError::Disk)?;
    let geometry = Geometry::parse(&boot).map_err(UpgradeError::Esp)?;
    let mut root = vec![0u8; geometry.root_dir_sectors as usize * SECTOR];
    disk.read(esp.first_lba + geometry.root_dir_sector, &mut root)
        .map_err(UpgradeError::Disk)?;
    let sector = geometry.env_sector(&root).map_err(UpgradeError::Esp)?;
    Ok(esp.first_lba + sector)
}

fn read_env<D: Disk>(disk: &mut D) -> Result<(u64, EnvBlock), UpgradeError<D::Error>> {
    let lba = env_lba(disk)?;
    let mut block = [0u8; BLOCK_BYTES];
    disk.read(lba, &mut block).map_err(UpgradeError::Disk)?;
    Ok((lba, EnvBlock::parse(&block).map_err(UpgradeError::Env)?))
}

fn write_env<D: Disk>(
    disk: &mut D,
    lba: u64,
    env: &EnvBlock,
) -> Result<(), UpgradeError<D::Error>> {
    let block = env.render().map_err(UpgradeError::Env)?;
    disk.write(lba, &block).map_err(UpgradeError::Disk)?;
    disk.flush().map_err(UpgradeError::Disk)
}

fn set<E>(env: &mut EnvBlock, name: &str, value: &str) -> Result<(), UpgradeError<E>> {
    env.set(name, value).map_err(UpgradeError::Env)
}

/// How this boot came about, from the kernel command line GRUB wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booted {
    pub slot: Slot,
    /// `committed`, `trial` or `fallback`.
    pub state: BootState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootState {
    Committed,
    Trial,
    Fallback,
}

impl Booted {
    /// `keel.slot=` and `keel.slot_state=` from the command line; `None`
    /// when not booted from a keel disk (direct, ISO, PXE).
    pub fn from_cmdline(cmdline: &str) -> Option<Booted> {
        let mut slot = None;
        let mut state = None;
        for word in cmdline.split_ascii_whitespace() {
            if let Some(value) = word.strip_prefix("keel.slot=") {
                slot = Slot::parse(value);
            } else if let Some(value) = word.strip_prefix("keel.slot_state=") {
                state = match value {
                    "committed" => Some(BootState::Committed),
                    "trial" => Some(BootState::Trial),
                    "fallback" => Some(BootState::Fallback),
                    _ => None,
                };
            }
        }
        Some(Booted {
            slot: slot?,
            state: state?,
        })
    }
}

/// What the API reports about the slots and the last upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootStatus {
    pub booted: Booted,
    /// The committed slot (`keel_active`).
    pub active: Slot,
    /// The version in each slot's header (`None`: no valid header).
    pub slot_a: Option<String>,
    pub slot_b: Option<String>,
    /// A trial that never committed: this boot is back on the old slot.
    pub failed_trial: Option<Slot>,
}

/// Reads both slot headers and the environment block.
pub fn status<D: Disk>(disk: &mut D, booted: Booted) -> Result<BootStatus, UpgradeError<D::Error>> {
    let (_, env) = read_env(disk)?;
    let active = env
        .get("keel_active")
        .and_then(Slot::parse)
        .unwrap_or(Slot::A);
    let tried = env.get("keel_tried").and_then(Slot::parse);
    let failed_trial = match (tried, booted.state) {
        (Some(slot), BootState::Committed | BootState::Fallback) if slot != booted.slot => {
            Some(slot)
        }
        _ => None,
    };
    Ok(BootStatus {
        booted,
        active,
        slot_a: slot_version(disk, Slot::A)?,
        slot_b: slot_version(disk, Slot::B)?,
        failed_trial,
    })
}

fn slot_version<D: Disk>(
    disk: &mut D,
    slot: Slot,
) -> Result<Option<String>, UpgradeError<D::Error>> {
    let mut header = vec![0u8; HEADER_BYTES];
    disk.read(slot.first_lba(), &mut header)
        .map_err(UpgradeError::Disk)?;
    Ok(Header::parse(&header)
        .ok()
        .map(|h| String::from(h.manifest().version())))
}

/// The running image reports healthy: a trial slot becomes the committed one.
/// Returns whether anything changed.
pub fn commit<D: Disk>(disk: &mut D, booted: Booted) -> Result<bool, UpgradeError<D::Error>> {
    if booted.state != BootState::Trial {
        return Ok(false);
    }
    let (lba, mut env) = read_env(disk)?;
    set(&mut env, "keel_active", booted.slot.name())?;
    set(&mut env, "keel_tried", "")?;
    write_env(disk, lba, &env)?;
    Ok(true)
}

/// A streamed upgrade into the slot that is not running.
#[derive(Debug)]
pub struct Upgrade {
    trusted: Vec<PublicKey>,
    target: Slot,
    header: Vec<u8>,
    manifest: Option<Manifest>,
    check: Option<PayloadCheck>,
    /// Payload bytes not yet a whole sector.
    pending: Vec<u8>,
    /// Payload sectors written so far.
    written: u64,
}

impl Upgrade {
    /// An upgrade of the host booted as `booted`, accepting images signed by `trusted`.
    pub fn new(booted: Booted, trusted: &[PublicKey]) -> Upgrade {
        Upgrade {
            trusted: trusted.to_vec(),
            target: booted.slot.other(),
            header: Vec::with_capacity(HEADER_BYTES),
            manifest: None,
            check: None,
            pending: Vec::with_capacity(SECTOR),
            written: 0,
        }
    }

    /// The slot being written.
    pub fn target(&self) -> Slot {
        self.target
    }

    /// The next bytes of the upload.
    pub fn feed<D: Disk>(
        &mut self,
        disk: &mut D,
        mut chunk: &[u8],
    ) -> Result<(), UpgradeError<D::Error>> {
        if self.manifest.is_none() {
            let take = (HEADER_BYTES - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.header.len() < HEADER_BYTES {
                return Ok(());
            }
            self.accept_header(disk)?;
        }
        let check = self.check.as_mut().ok_or(UpgradeError::Incomplete)?;
        check.update(chunk).map_err(UpgradeError::Image)?;
        let base = self.target.first_lba() + SLOT_HEADER_SECTORS;
        if !self.pending.is_empty() {
            let take = (SECTOR - self.pending.len()).min(chunk.len());
            self.pending.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.pending.len() == SECTOR {
                disk.write(base + self.written, &self.pending)
                    .map_err(UpgradeError::Disk)?;
                self.written += 1;
                self.pending.clear();
            }
        }
        let whole = chunk.len() / SECTOR * SECTOR;
        if whole > 0 {
            disk.write(base + self.written, &chunk[..whole])
                .map_err(UpgradeError::Disk)?;
            self.written += (whole / SECTOR) as u64;
        }
        self.pending.extend_from_slice(&chunk[whole..]);
        Ok(())
    }

    /// Whether the header verified and the target slot is being overwritten
    /// (its old image is gone from here on).
    pub fn writing(&self) -> bool {
        self.manifest.is_some()
    }

    /// Verifies the signature before anything is written, then takes back a
    /// trial still marked for the target slot (an earlier upload not booted
    /// yet, or one that failed: GRUB loads a slot's payload without looking
    /// at its header, so it must never try a half-written one), then wipes
    /// the target slot's old header so a half-written slot never looks valid.
    fn accept_header<D: Disk>(&mut self, disk: &mut D) -> Result<(), UpgradeError<D::Error>> {
        let header = Header::parse(&self.header).map_err(UpgradeError::Image)?;
        let manifest = header
            .verify(&self.trusted)
            .map_err(UpgradeError::Image)?
            .clone();
        let room = disk_layout::SLOT_PAYLOAD_SECTORS * SECTOR_BYTES;
        if manifest.payload_len > room {
            return Err(UpgradeError::TooLarge {
                payload_bytes: manifest.payload_len,
            });
        }
        let (lba, mut env) = read_env(disk)?;
        let target = Some(self.target.name());
        if env.get("keel_trial") == target || env.get("keel_tried") == target {
            set(&mut env, "keel_trial", "")?;
            set(&mut env, "keel_tried", "")?;
            write_env(disk, lba, &env)?;
        }
        disk.write(self.target.first_lba(), &[0u8; HEADER_BYTES])
            .map_err(UpgradeError::Disk)?;
        disk.flush().map_err(UpgradeError::Disk)?;
        self.check = Some(PayloadCheck::new(&manifest));
        self.manifest = Some(manifest);
        Ok(())
    }

    /// The upload is complete: checks the payload, writes the header, and
    /// marks the slot for a one-shot trial boot. Returns the new manifest.
    pub fn finish<D: Disk>(mut self, disk: &mut D) -> Result<Manifest, UpgradeError<D::Error>> {
        let (Some(check), Some(manifest)) = (self.check.take(), self.manifest.take()) else {
            return Err(UpgradeError::Incomplete);
        };
        check.finish().map_err(UpgradeError::Image)?;
        if !self.pending.is_empty() {
            self.pending.resize(SECTOR, 0);
            let base = self.target.first_lba() + SLOT_HEADER_SECTORS;
            disk.write(base + self.written, &self.pending)
                .map_err(UpgradeError::Disk)?;
        }
        disk.flush().map_err(UpgradeError::Disk)?;
        disk.write(self.target.first_lba(), &self.header)
            .map_err(UpgradeError::Disk)?;
        disk.flush().map_err(UpgradeError::Disk)?;
        let (lba, mut env) = read_env(disk)?;
        set(&mut env, "keel_trial", self.target.name())?;
        set(&mut env, "keel_tried", self.target.name())?;
        write_env(disk, lba, &env)?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::{public_key, sign};

    const SEED: [u8; 32] = [5; 32];

    /// A disk with the keel layout's ESP reduced to what the writer reads:
    /// a FAT16 boot sector, a root directory with GRUBENV, the env block.
    struct MemDisk {
        bytes: Vec<u8>,
        writes: usize,
    }

    impl Disk for MemDisk {
        type Error = ();
        fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), ()> {
            let at = lba as usize * SECTOR;
            buf.copy_from_slice(self.bytes.get(at..at + buf.len()).ok_or(())?);
            Ok(())
        }
        fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), ()> {
            let at = lba as usize * SECTOR;
            self.bytes
                .get_mut(at..at + buf.len())
                .ok_or(())?
                .copy_from_slice(buf);
            self.writes += 1;
            Ok(())
        }
        fn flush(&mut self) -> Result<(), ()> {
            Ok(())
        }
    }

    const ENV_SECTOR: u64 = 1 + 2 * 32 + 32; // reserved + FATs + root dir, cluster 2

    fn disk(active: &str) -> MemDisk {
        let end = disk_layout::partition(Role::SlotB).last_lba() + 1;
        let mut bytes = vec![0u8; end as usize * SECTOR];
        let esp = disk_layout::partition(Role::Esp).first_lba as usize * SECTOR;
        let b = &mut bytes[esp..esp + SECTOR];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 4;
        b[14..16].copy_from_slice(&1u16.to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&512u16.to_le_bytes());
        b[22..24].copy_from_slice(&32u16.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        let root = esp + 65 * SECTOR;
        bytes[root..root + 11].copy_from_slice(crate::esp::ENV_FILE_83);
        bytes[root + 26..root + 28].copy_from_slice(&2u16.to_le_bytes());
        bytes[root + 28..root + 32].copy_from_slice(&1024u32.to_le_bytes());
        let mut env = EnvBlock::new();
        env.set("keel_active", active).expect("set");
        env.set("keel_trial", "").expect("set");
        let at = esp + ENV_SECTOR as usize * SECTOR;
        bytes[at..at + BLOCK_BYTES].copy_from_slice(&env.render().expect("env"));
        MemDisk { bytes, writes: 0 }
    }

    fn image(version: &str, payload_len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 % 251) as u8).collect();
        let mut image = sign(&payload, version, &SEED).expect("sign").to_vec();
        image.extend_from_slice(&payload);
        image
    }

    fn env(disk: &mut MemDisk) -> EnvBlock {
        read_env(disk).expect("env").1
    }

    const ON_A: Booted = Booted {
        slot: Slot::A,
        state: BootState::Committed,
    };

    #[test]
    fn cmdline_names_the_slot() {
        assert_eq!(
            Booted::from_cmdline("keel.boot=disk keel.slot=b keel.slot_state=trial"),
            Some(Booted {
                slot: Slot::B,
                state: BootState::Trial
            })
        );
        assert_eq!(Booted::from_cmdline("keel.boot=pxe"), None);
        assert_eq!(
            Booted::from_cmdline("keel.slot=c keel.slot_state=trial"),
            None
        );
    }

    #[test]
    fn upgrade_writes_the_other_slot_then_trials_it_then_commits() {
        let mut disk = disk("a");
        let image = image("0.2.0+next", 5000);
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        for chunk in image.chunks(777) {
            upgrade.feed(&mut disk, chunk).expect("chunk");
        }
        let manifest = upgrade.finish(&mut disk).expect("finish");
        assert_eq!(manifest.version(), "0.2.0+next");
        let b = Slot::B.first_lba() as usize * SECTOR;
        assert_eq!(&disk.bytes[b..b + image.len()], &image[..]);
        let e = env(&mut disk);
        assert_eq!(
            (
                e.get("keel_active"),
                e.get("keel_trial"),
                e.get("keel_tried")
            ),
            (Some("a"), Some("b"), Some("b"))
        );
        let s = status(&mut disk, ON_A).expect("status");
        assert_eq!(s.slot_b.as_deref(), Some("0.2.0+next"));
        assert_eq!(s.slot_a, None);

        // GRUB consumes the trial and boots b; b is healthy and commits.
        let on_b = Booted {
            slot: Slot::B,
            state: BootState::Trial,
        };
        assert!(commit(&mut disk, on_b).expect("commit"));
        let e = env(&mut disk);
        assert_eq!(
            (e.get("keel_active"), e.get("keel_tried")),
            (Some("b"), Some(""))
        );
        assert!(!commit(&mut disk, ON_A).expect("no trial, no commit"));
    }

    #[test]
    fn a_trial_that_never_commits_is_reported_after_the_fallback() {
        let mut disk = disk("a");
        let image = image("0.2.0+bad", 700);
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &image).expect("feed");
        upgrade.finish(&mut disk).expect("finish");
        // GRUB cleared keel_trial and booted b, which crashed; the next boot is a.
        let s = status(&mut disk, ON_A).expect("status");
        assert_eq!(s.failed_trial, Some(Slot::B));
        assert_eq!(s.active, Slot::A);
    }

    #[test]
    fn bad_signature_or_untrusted_key_writes_nothing() {
        let mut image = image("0.2.0", 3000);
        image[200] ^= 1;
        for (bytes, trusted) in [
            (image.clone(), public_key(&SEED)),
            (self::image("0.2.0", 3000), public_key(&[9; 32])),
        ] {
            let mut disk = disk("a");
            let before = disk.bytes.clone();
            let mut upgrade = Upgrade::new(ON_A, &[trusted]);
            let result = upgrade.feed(&mut disk, &bytes);
            assert!(matches!(result, Err(UpgradeError::Image(_))), "{result:?}");
            assert_eq!(disk.writes, 0);
            assert!(disk.bytes == before, "nothing written");
        }
    }

    #[test]
    fn wrong_payload_leaves_no_valid_header_and_no_trial() {
        let mut disk = disk("a");
        let mut image = image("0.2.0", 3000);
        let last = image.len() - 1;
        image[last] ^= 1;
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &image).expect("feed");
        assert!(matches!(
            upgrade.finish(&mut disk),
            Err(UpgradeError::Image(VerifyError::DigestMismatch))
        ));
        assert_eq!(env(&mut disk).get("keel_trial"), Some(""));
        assert_eq!(status(&mut disk, ON_A).expect("status").slot_b, None);
    }

    #[test]
    fn a_cut_upload_changes_no_boot_decision() {
        let mut disk = disk("a");
        // Slot B held an older image: the cut upload must not leave it bootable-looking.
        let old = image("0.1.0", 1000);
        let b = Slot::B.first_lba() as usize * SECTOR;
        disk.bytes[b..b + old.len()].copy_from_slice(&old);
        let image = image("0.2.0", 9000);
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &image[..6000]).expect("feed");
        drop(upgrade);
        let s = status(&mut disk, ON_A).expect("status");
        assert_eq!(s.slot_b, None, "old header wiped before the payload");
        assert_eq!(env(&mut disk).get("keel_trial"), Some(""));
        assert_eq!(env(&mut disk).get("keel_active"), Some("a"));
    }

    #[test]
    fn a_new_upload_takes_back_the_trial_of_the_slot_it_overwrites() {
        let mut disk = disk("a");
        let first = image("0.2.0", 3000);
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &first).expect("feed");
        upgrade.finish(&mut disk).expect("finish");
        assert_eq!(env(&mut disk).get("keel_trial"), Some("b"));

        // A second upload, cut after its header: b is no longer tried.
        let second = image("0.3.0", 9000);
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &second[..100]).expect("feed");
        assert!(!upgrade.writing(), "header not complete yet");
        assert_eq!(env(&mut disk).get("keel_trial"), Some("b"));
        upgrade.feed(&mut disk, &second[100..6000]).expect("feed");
        assert!(upgrade.writing());
        drop(upgrade);
        let e = env(&mut disk);
        assert_eq!(
            (
                e.get("keel_active"),
                e.get("keel_trial"),
                e.get("keel_tried")
            ),
            (Some("a"), Some(""), Some(""))
        );
        let s = status(&mut disk, ON_A).expect("status");
        assert_eq!(s.slot_b, None);
        assert_eq!(s.failed_trial, None);

        // A failed trial of b is superseded by the next upload to b.
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &first).expect("feed");
        upgrade.finish(&mut disk).expect("finish");
        let mut e = env(&mut disk);
        e.set("keel_trial", "").expect("GRUB consumed the trial");
        let (lba, _) = read_env(&mut disk).expect("env");
        write_env(&mut disk, lba, &e).expect("write");
        assert_eq!(
            status(&mut disk, ON_A).expect("status").failed_trial,
            Some(Slot::B)
        );
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &second[..5000]).expect("feed");
        assert_eq!(status(&mut disk, ON_A).expect("status").failed_trial, None);
    }

    #[test]
    fn too_short_upload_is_incomplete() {
        let mut disk = disk("a");
        let mut upgrade = Upgrade::new(ON_A, &[public_key(&SEED)]);
        upgrade.feed(&mut disk, &[0u8; 100]).expect("buffered");
        assert!(matches!(
            upgrade.finish(&mut disk),
            Err(UpgradeError::Incomplete)
        ));
    }
}
