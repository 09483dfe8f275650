//! virtio-blk: the image finds the disk and reads its first sector.

use std::fs;

use super::{BOOT_TIMEOUT, keel};

#[test]
fn virtio_blk_reads_disk() {
    let builder = keel(2, 512);
    let disk = builder.dir().join("disk.img");
    let mut bytes = vec![0u8; 1024 * 1024];
    bytes[..16].copy_from_slice(b"KEEL-DISK-TEST-1");
    fs::write(&disk, &bytes).expect("write the disk image");
    let qemu = builder.disk(&disk).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(
        "disk blk0: 2048 blocks of 512 bytes; lba0[0..16]=4b45454c2d4449534b2d544553542d31",
        BOOT_TIMEOUT,
    )
    .expect("the disk's size and first bytes on the console");
}
