//! The device over checked guest memory: through the transport, with
//! inline RAM disks and with channels whose serving side the test drives.

use super::request::{
    S_IOERR, S_OK, S_UNSUPP, T_DISCARD, T_FLUSH, T_GET_ID, T_IN, T_OUT, T_WRITE_ZEROES,
};
use super::*;
use crate::hv::memory::GuestAddress;
use crate::hv::pci::{MsiQueue, PciFunction};
use crate::hv::virtio::F_VERSION_1;
use crate::hv::virtio::pci::VirtioPci;
use crate::hv::virtio::pci::tests::Bus;
use crate::hv::virtio::queue::driver::TestDriver;
use storage::BlockDevice as _;
use storage::channel::{DiskCompletion, DiskOp};
use storage::mem::MemBlockDevice;

/// A RAM disk whose every byte tells its place: each 512-byte sector holds
/// a different pattern.
fn patterned(block_size: u32, blocks: u64) -> MemBlockDevice {
    let mut d = MemBlockDevice::new(block_size, blocks);
    for (i, b) in d.bytes_mut().iter_mut().enumerate() {
        *b = (i / 512) as u8 ^ (i as u8);
    }
    d
}

fn disk(block_size: u32, blocks: u64) -> SharedDisk {
    Arc::new(Mutex::new(Box::new(patterned(block_size, blocks))))
}

fn header(mem: &mut GuestMemory<'_>, at: u64, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write(GuestAddress(at), &h).unwrap();
}

fn status(mem: &GuestMemory<'_>, at: u64) -> u8 {
    let mut s = [0u8];
    mem.read(GuestAddress(at), &mut s).unwrap();
    s[0]
}

/// The used ring's entries as (head, length), sorted by head.
fn used_lens(mem: &GuestMemory<'_>, q: &Queue) -> Vec<(u16, u32)> {
    let (idx, ..) = TestDriver::used(mem, q, 0);
    let mut v: Vec<(u16, u32)> = (0..idx)
        .map(|slot| {
            let (_, head, len) = TestDriver::used(mem, q, slot % q.size);
            (head as u16, len)
        })
        .collect();
    v.sort_unstable();
    v
}

const FEATURES: u64 = F_VERSION_1 | F_FLUSH | F_BLK_SIZE | F_SEG_MAX;

/// What a test's guest is: its RAM, and the queue its driver brings up
/// with the features it accepts.
struct Guest {
    ram: usize,
    queue_size: u16,
    features: u64,
}

impl Default for Guest {
    fn default() -> Guest {
        Guest {
            ram: 0x40000,
            queue_size: 16,
            features: FEATURES,
        }
    }
}

/// Runs `test` against `dev` through the transport, with the guest's
/// memory and its driver, whose queue (rings at 0x1000) is up.
fn drive(
    dev: &mut VirtioPci<Blk>,
    guest: Guest,
    test: impl FnOnce(&mut Bus<'_, Blk>, &mut GuestMemory<'_>, &mut TestDriver),
) {
    let mut ram = vec![0u8; guest.ram];
    let mut mem = GuestMemory::new(&mut ram);
    let mut bus = Bus {
        dev,
        irq: MsiQueue::default(),
    };
    let mut d = TestDriver::new(guest.queue_size, 0x1000);
    bus.bring_up(&mut mem, guest.features, &[&d]);
    test(&mut bus, &mut mem, &mut d);
}

#[test]
fn reads_writes_flush_and_id_through_the_transport() {
    let shared = disk(512, 64);
    let mut dev = VirtioPci::new(Blk::new(
        Backend::Inline(Arc::clone(&shared)),
        false,
        "keel-vda",
    ))
    .unwrap();
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        // capacity in 512-byte sectors, blk_size
        assert_eq!(bus.r(0x2000, 4), 64);
        assert_eq!(bus.r(0x2000 + 20, 4), 512);

        // Several requests in flight before one notify: read sectors 2..4
        // split over two buffers, write sector 10, flush, get-id.
        header(mem, 0x8000, T_IN, 2);
        d.add(
            mem,
            &[
                (0x8000, 16, false),
                (0x9000, 700, true),
                (0x9400, 324, true),
                (0x9800, 1, true),
            ],
        );
        header(mem, 0x8100, T_OUT, 10);
        mem.fill(GuestAddress(0xa000), 512, 0x5a).unwrap();
        d.add(
            mem,
            &[(0x8100, 16, false), (0xa000, 512, false), (0x9801, 1, true)],
        );
        header(mem, 0x8200, T_FLUSH, 0);
        d.add(mem, &[(0x8200, 16, false), (0x9802, 1, true)]);
        header(mem, 0x8300, T_GET_ID, 0);
        d.add(
            mem,
            &[(0x8300, 16, false), (0xb000, 20, true), (0x9803, 1, true)],
        );
        bus.kick(mem, 0);

        // Used in any order: by head, the bytes written (data and status).
        assert_eq!(
            used_lens(mem, &d.queue),
            [(0, 1025), (4, 1), (7, 1), (9, 21)]
        );
        assert_eq!(bus.irq.0.len(), 1, "one interrupt for the batch");
        for s in 0..4 {
            assert_eq!(status(mem, 0x9800 + s), S_OK);
        }
        let expect = shared.lock().read_blocks(2, &mut [0u8; 1024]).map(|_| ());
        assert_eq!(expect, Ok(()));
        let mut want = vec![0u8; 1024];
        shared.lock().read_blocks(2, &mut want).unwrap();
        let mut got = vec![0u8; 1024];
        mem.read(GuestAddress(0x9000), &mut got[..700]).unwrap();
        mem.read(GuestAddress(0x9400), &mut got[700..]).unwrap();
        assert_eq!(got, want);
        let mut sector10 = vec![0u8; 512];
        shared.lock().read_blocks(10, &mut sector10).unwrap();
        assert_eq!(sector10, vec![0x5a; 512]);
        let mut id = [0u8; 20];
        mem.read(GuestAddress(0xb000), &mut id).unwrap();
        assert_eq!(&id[..8], b"keel-vda");
        assert_eq!(bus.dev.device.stats().requests.load(Ordering::Relaxed), 4);
    });
}

#[test]
fn bad_requests_get_an_error_status_and_read_only_refuses_writes() {
    let shared = disk(4096, 4); // 32 sectors of 512 bytes
    let mut dev =
        VirtioPci::new(Blk::new(Backend::Inline(Arc::clone(&shared)), true, "iso")).unwrap();
    assert_ne!(dev.device.features() & F_RO, 0);
    let guest = Guest {
        ram: 0x60_0000,
        features: FEATURES | F_RO,
        ..Guest::default()
    };
    drive(&mut dev, guest, |bus, mem, d| {
        let before = shared.lock().read_blocks(0, &mut [0u8; 4096]);
        assert_eq!(before, Ok(()));
        // past the end; not aligned to the 4 KiB block; a write on a read-only disk;
        // an unknown type; a header shorter than 16 bytes.
        header(mem, 0x8000, T_IN, 32);
        d.add(
            mem,
            &[(0x8000, 16, false), (0x9000, 4096, true), (0xa000, 1, true)],
        );
        header(mem, 0x8100, T_IN, 1);
        d.add(
            mem,
            &[(0x8100, 16, false), (0x9000, 4096, true), (0xa001, 1, true)],
        );
        header(mem, 0x8200, T_OUT, 0);
        d.add(
            mem,
            &[
                (0x8200, 16, false),
                (0x9000, 4096, false),
                (0xa002, 1, true),
            ],
        );
        header(mem, 0x8300, 99, 0);
        d.add(mem, &[(0x8300, 16, false), (0xa003, 1, true)]);
        d.add(mem, &[(0x8400, 8, false), (0xa004, 1, true)]);
        // A read larger than the device serves.
        header(mem, 0x8500, T_IN, 0);
        d.add(
            mem,
            &[
                (0x8500, 16, false),
                (0x10000, (MAX_REQUEST_BYTES + 4096) as u32, true),
                (0xa005, 1, true),
            ],
        );
        bus.kick(mem, 0);
        let got: Vec<u8> = (0..6).map(|i| status(mem, 0xa000 + i)).collect();
        assert_eq!(got, [S_IOERR, S_IOERR, S_IOERR, S_UNSUPP, S_IOERR, S_IOERR]);
        assert_eq!(TestDriver::used(mem, &d.queue, 5).0, 6);
        assert_eq!(bus.dev.device.stats().failed.load(Ordering::Relaxed), 6);
        // An aligned read works and the device is still healthy.
        header(mem, 0x8600, T_IN, 8);
        d.add(
            mem,
            &[(0x8600, 16, false), (0x9000, 4096, true), (0xa006, 1, true)],
        );
        bus.kick(mem, 0);
        assert_eq!(status(mem, 0xa006), S_OK);
    });
}

#[test]
fn write_zeroes_zeroes_whole_ranges_only() {
    let shared = disk(4096, 1100); // 8800 sectors: a range spans two 4 MiB pieces
    let mut dev =
        VirtioPci::new(Blk::new(Backend::Inline(Arc::clone(&shared)), false, "z")).unwrap();
    let guest = Guest {
        features: FEATURES | F_WRITE_ZEROES,
        ..Guest::default()
    };
    drive(&mut dev, guest, |bus, mem, d| {
        assert_eq!(bus.r(0x2000 + 48, 4), u64::from(MAX_WRITE_ZEROES_SECTORS));
        // Sectors 8..8200 (two pieces); then a range past the end, untouched.
        ranged(d, mem, 0x8000, T_WRITE_ZEROES, (8, 8192), 0xa000);
        ranged(d, mem, 0x8100, T_WRITE_ZEROES, (8792, 16), 0xa001);
        bus.kick(mem, 0);
        assert_eq!((status(mem, 0xa000), status(mem, 0xa001)), (S_OK, S_IOERR));
        let mut all = vec![0u8; 1100 * 4096];
        shared.lock().read_blocks(0, &mut all).unwrap();
        assert!(all[..4096].iter().any(|b| *b != 0), "block 0 kept");
        assert!(all[4096..8200 * 512].iter().all(|b| *b == 0));
        assert!(all[8200 * 512..8200 * 512 + 4096].iter().any(|b| *b != 0));
        assert!(
            all[8792 * 512..].iter().any(|b| *b != 0),
            "a bad range writes nothing"
        );
    });
}

#[test]
fn a_request_without_status_byte_breaks_the_device_not_the_host() {
    let mut dev = VirtioPci::new(Blk::new(Backend::Inline(disk(512, 8)), false, "x")).unwrap();
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        header(mem, 0x8000, T_IN, 0);
        d.add(mem, &[(0x8000, 16, false)]);
        bus.kick(mem, 0);
        assert_ne!(
            bus.dev.status() & crate::hv::virtio::status::DEVICE_NEEDS_RESET,
            0
        );
    });
}

/// A device over a channel the test serves by hand.
fn channel_dev(depth: usize, blocks: u64, discard: bool) -> (VirtioPci<Blk>, Arc<DiskChannel>) {
    let ch = DiskChannel::new(
        DiskGeometry {
            block_size: 512,
            num_blocks: blocks,
            read_only: false,
        },
        depth,
    );
    let ch = Arc::new(if discard { ch.with_discard(8) } else { ch });
    let dev = VirtioPci::new(Blk::new(Backend::Channel(Arc::clone(&ch)), false, "ch")).unwrap();
    (dev, ch)
}

/// Serves `requests` from `disk` in the order given.
fn serve(ch: &DiskChannel, disk: &mut MemBlockDevice, requests: Vec<DiskRequest>) {
    for r in requests {
        let result = r.op.serve_on(disk);
        ch.complete(DiskCompletion { tag: r.tag, result });
    }
}

/// A read of `sectors` sectors at `sector` into `buf`, status at `status`.
fn read_at(
    d: &mut TestDriver,
    mem: &mut GuestMemory<'_>,
    hdr: u64,
    sector: u64,
    buf: u64,
    len: u32,
    status: u64,
) -> u16 {
    header(mem, hdr, T_IN, sector);
    d.add(
        mem,
        &[(hdr, 16, false), (buf, len, true), (status, 1, true)],
    )
}

/// A `kind` (discard or write-zeroes) request of one range, `n` sectors at
/// `sector`: header at `hdr`, range right after it, status at `status`.
fn ranged(
    d: &mut TestDriver,
    mem: &mut GuestMemory<'_>,
    hdr: u64,
    kind: u32,
    (sector, n): (u64, u32),
    status: u64,
) -> u16 {
    header(mem, hdr, kind, 0);
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&sector.to_le_bytes());
    r[8..12].copy_from_slice(&n.to_le_bytes());
    mem.write(GuestAddress(hdr + 16), &r).unwrap();
    d.add(
        mem,
        &[(hdr, 16, false), (hdr + 16, 16, false), (status, 1, true)],
    )
}

#[test]
fn requests_stay_in_flight_and_complete_out_of_order_without_a_notify() {
    let (mut dev, ch) = channel_dev(8, 64, false);
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        // Reads of sectors 0, 10 and 20 (not adjacent), a write of sector 40.
        for (i, sector) in [0u64, 10, 20].into_iter().enumerate() {
            let i = i as u64;
            read_at(
                d,
                mem,
                0x8000 + 0x100 * i,
                sector,
                0x9000 + 0x200 * i,
                512,
                0xa000 + i,
            );
        }
        header(mem, 0x8300, T_OUT, 40);
        mem.fill(GuestAddress(0xb000), 512, 0x77).unwrap();
        d.add(
            mem,
            &[(0x8300, 16, false), (0xb000, 512, false), (0xa003, 1, true)],
        );
        bus.kick(mem, 0);
        assert_eq!(TestDriver::used(mem, &d.queue, 0).0, 0, "nothing used yet");
        assert!(bus.irq.0.is_empty());
        assert_eq!(ch.in_flight(), 4);
        assert!(!bus.dev.has_work());
        let mut disk = patterned(512, 64);
        let mut requests = ch.take_requests(8);
        requests.reverse();
        // The last two first; the device notices without a notify.
        let first: Vec<DiskRequest> = requests.drain(..2).collect();
        serve(&ch, &mut disk, first);
        assert!(bus.dev.has_work());
        bus.dev.service(mem, &mut bus.irq);
        assert_eq!(used_lens(mem, &d.queue), [(6, 513), (9, 1)]);
        assert_eq!(bus.irq.0.len(), 1);
        serve(&ch, &mut disk, requests);
        bus.dev.service(mem, &mut bus.irq);
        assert_eq!(
            used_lens(mem, &d.queue),
            [(0, 513), (3, 513), (6, 513), (9, 1)]
        );
        for i in 0..4 {
            assert_eq!(status(mem, 0xa000 + i), S_OK);
        }
        for (i, sector) in [0usize, 10, 20].into_iter().enumerate() {
            let mut got = vec![0u8; 512];
            mem.read(GuestAddress(0x9000 + 0x200 * i as u64), &mut got)
                .unwrap();
            assert_eq!(got, disk.bytes()[sector * 512..(sector + 1) * 512]);
        }
        assert_eq!(disk.bytes()[40 * 512..41 * 512], [0x77; 512]);
        assert_eq!(ch.in_flight(), 0);
    });
}

#[test]
fn a_full_channel_keeps_requests_until_a_completion_frees_room() {
    let (mut dev, ch) = channel_dev(2, 64, false);
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        for i in 0..5u64 {
            read_at(
                d,
                mem,
                0x8000 + 0x100 * i,
                10 * i,
                0x9000 + 0x200 * i,
                512,
                0xa000 + i,
            );
        }
        bus.kick(mem, 0);
        let mut disk = patterned(512, 64);
        let mut rounds = 0;
        while TestDriver::used(mem, &d.queue, 0).0 < 5 {
            rounds += 1;
            assert!(rounds < 10);
            assert!(ch.in_flight() <= 2, "never past the channel's depth");
            assert!(
                !bus.dev.has_work(),
                "nothing to do while the channel is full"
            );
            // One completion at a time: each frees room for the next request.
            let one = ch.take_requests(1);
            assert_eq!(one.len(), 1);
            serve(&ch, &mut disk, one);
            assert!(bus.dev.has_work());
            bus.dev.service(mem, &mut bus.irq);
        }
        for i in 0..5u64 {
            assert_eq!(status(mem, 0xa000 + i), S_OK);
            let mut got = vec![0u8; 512];
            mem.read(GuestAddress(0x9000 + 0x200 * i), &mut got)
                .unwrap();
            let at = 10 * i as usize * 512;
            assert_eq!(got, disk.bytes()[at..at + 512]);
        }
        assert_eq!(
            bus.dev.device.stats().max_in_flight.load(Ordering::Relaxed),
            2
        );
    });
}

#[test]
fn adjacent_reads_and_writes_go_to_the_channel_merged() {
    let (mut dev, ch) = channel_dev(8, 256, false);
    let guest = Guest {
        ram: 0x80000,
        queue_size: 64,
        ..Guest::default()
    };
    drive(&mut dev, guest, |bus, mem, d| {
        // Eight 4 KiB reads of sectors 8..72, each into its own buffer (in
        // reverse order in memory), then three 4 KiB writes of sectors 128..152.
        for i in 0..8u64 {
            let buf = 0x40000 - 0x1000 * (i + 1);
            read_at(d, mem, 0x8000 + 0x20 * i, 8 + 8 * i, buf, 4096, 0xa000 + i);
        }
        for i in 0..3u64 {
            header(mem, 0x8200 + 0x20 * i, T_OUT, 128 + 8 * i);
            mem.fill(GuestAddress(0x50000 + 0x1000 * i), 4096, 0xc0 + i as u8)
                .unwrap();
            d.add(
                mem,
                &[
                    (0x8200 + 0x20 * i, 16, false),
                    (0x50000 + 0x1000 * i, 4096, false),
                    (0xa010 + i, 1, true),
                ],
            );
        }
        bus.kick(mem, 0);
        let requests = ch.take_requests(8);
        let ops: Vec<(u64, u64)> = requests
            .iter()
            .map(|r| match &r.op {
                DiskOp::Read { lba, blocks } => (*lba, u64::from(*blocks) * 512),
                DiskOp::Write { lba, data } => (*lba, data.len() as u64),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ops, [(8, 32768), (128, 12288)], "one read, one write");
        let mut disk = patterned(512, 256);
        serve(&ch, &mut disk, requests);
        bus.dev.service(mem, &mut bus.irq);
        assert_eq!(TestDriver::used(mem, &d.queue, 0).0, 11);
        for i in 0..8u64 {
            assert_eq!(status(mem, 0xa000 + i), S_OK);
            let mut got = vec![0u8; 4096];
            mem.read(GuestAddress(0x40000 - 0x1000 * (i + 1)), &mut got)
                .unwrap();
            let at = (8 + 8 * i) as usize * 512;
            assert_eq!(got, disk.bytes()[at..at + 4096], "read {i}");
        }
        for i in 0..3u64 {
            assert_eq!(status(mem, 0xa010 + i), S_OK);
            let at = (128 + 8 * i) as usize * 512;
            assert!(
                disk.bytes()[at..at + 4096]
                    .iter()
                    .all(|b| *b == 0xc0 + i as u8)
            );
        }
        let s = bus.dev.device.stats();
        assert_eq!(s.merged.load(Ordering::Relaxed), 9);
        assert_eq!(s.submitted.load(Ordering::Relaxed), 2);
        assert_eq!(s.requests.load(Ordering::Relaxed), 11);
    });
}

#[test]
fn a_reset_with_requests_in_flight_drops_their_completions() {
    let (mut dev, ch) = channel_dev(8, 64, false);
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        read_at(d, mem, 0x8000, 0, 0x9000, 512, 0xa000);
        read_at(d, mem, 0x8100, 20, 0x9200, 512, 0xa001);
        bus.kick(mem, 0);
        assert_eq!(ch.in_flight(), 2);
        // The driver resets the device and sets it up again on fresh rings.
        bus.w(0x14, 1, 0);
        mem.fill(GuestAddress(0x1000), 0x3000, 0).unwrap();
        mem.fill(GuestAddress(0x9000), 0x400, 0xee).unwrap();
        *d = TestDriver::new(16, 0x1000);
        bus.bring_up(mem, FEATURES, &[&*d]);
        read_at(d, mem, 0x8200, 30, 0x9400, 512, 0xa002);
        bus.kick(mem, 0);
        let mut disk = patterned(512, 64);
        let requests = ch.take_requests(8);
        assert_eq!(requests.len(), 3);
        serve(&ch, &mut disk, requests);
        bus.dev.service(mem, &mut bus.irq);
        // Only the new request is used; the old buffers are untouched.
        assert_eq!(used_lens(mem, &d.queue), [(0, 513)]);
        assert_eq!(status(mem, 0xa002), S_OK);
        let mut old = vec![0u8; 0x400];
        mem.read(GuestAddress(0x9000), &mut old).unwrap();
        assert!(old.iter().all(|b| *b == 0xee));
        assert_eq!(bus.dev.device.stats().stale.load(Ordering::Relaxed), 2);
        assert_eq!(ch.in_flight(), 0);
    });
}

#[test]
fn a_guest_rewriting_descriptors_in_flight_gets_its_data_where_it_first_said() {
    let (mut dev, ch) = channel_dev(8, 64, false);
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        read_at(d, mem, 0x8000, 4, 0x9000, 512, 0xa000);
        bus.kick(mem, 0);
        // The descriptor table now points the buffer past guest RAM and makes
        // it huge; the device kept the checked copy.
        TestDriver::descriptor(mem, &d.queue, 1, 0xffff_ffff_0000, u32::MAX, 3, 2);
        let mut disk = patterned(512, 64);
        serve(&ch, &mut disk, ch.take_requests(8));
        bus.dev.service(mem, &mut bus.irq);
        assert_eq!(status(mem, 0xa000), S_OK);
        let mut got = vec![0u8; 512];
        mem.read(GuestAddress(0x9000), &mut got).unwrap();
        assert_eq!(got, disk.bytes()[4 * 512..5 * 512]);
        assert_eq!(
            bus.dev.status() & crate::hv::virtio::status::DEVICE_NEEDS_RESET,
            0
        );
    });
}

#[test]
fn in_flight_bytes_are_bounded_and_a_closed_channel_fails_requests() {
    // 16 reads of 4 MiB into the same buffer: at most 16 MiB in flight.
    let (mut dev, ch) = channel_dev(64, 1 << 20, false);
    let guest = Guest {
        ram: 0x50_0000,
        queue_size: 64,
        ..Guest::default()
    };
    drive(&mut dev, guest, |bus, mem, d| {
        let big = MAX_REQUEST_BYTES as u32;
        for i in 0..16u64 {
            // Gaps between them: no merging.
            read_at(
                d,
                mem,
                0x8000 + 0x20 * i,
                20_000 * i,
                0x10_0000,
                big,
                0xa000 + i,
            );
        }
        bus.kick(mem, 0);
        assert_eq!(
            ch.in_flight() as u64,
            MAX_IN_FLIGHT_BYTES / MAX_REQUEST_BYTES
        );
        // The disk goes away: what is queued fails, and so does what waited.
        ch.close();
        for _ in 0..4 {
            bus.dev.service(mem, &mut bus.irq);
        }
        assert_eq!(TestDriver::used(mem, &d.queue, 0).0, 16);
        for i in 0..16 {
            assert_eq!(status(mem, 0xa000 + i), S_IOERR);
        }
        assert_eq!(ch.in_flight(), 0);
    });
}

#[test]
fn discard_is_offered_when_the_disk_serves_it() {
    let (mut dev, ch) = channel_dev(8, 64, true);
    assert_ne!(dev.device.features() & F_DISCARD, 0);
    let guest = Guest {
        features: FEATURES | F_DISCARD,
        ..Guest::default()
    };
    drive(&mut dev, guest, |bus, mem, d| {
        // max_discard_sectors, max_discard_seg, discard_sector_alignment
        assert_eq!(bus.r(0x2000 + 36, 4), u64::from(MAX_DISCARD_SECTORS));
        assert_eq!(bus.r(0x2000 + 40, 4), 1);
        assert_eq!(bus.r(0x2000 + 44, 4), 8);
        ranged(d, mem, 0x8000, T_DISCARD, (16, 16), 0xa000);
        // Past the end: answered at once.
        ranged(d, mem, 0x8100, T_DISCARD, (60, 8), 0xa001);
        bus.kick(mem, 0);
        assert_eq!(status(mem, 0xa001), S_IOERR);
        let requests = ch.take_requests(8);
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].op,
            DiskOp::Discard {
                lba: 16,
                blocks: 16
            }
        );
        let mut disk = patterned(512, 64);
        serve(&ch, &mut disk, requests);
        bus.dev.service(mem, &mut bus.irq);
        assert_eq!(status(mem, 0xa000), S_OK);
        assert!(disk.bytes()[16 * 512..32 * 512].iter().all(|b| *b == 0));
    });
}

#[test]
fn a_disk_without_discard_does_not_offer_it_and_answers_it_unsupported() {
    let (mut dev, ch) = channel_dev(8, 64, false);
    assert_eq!(dev.device.features() & F_DISCARD, 0);
    drive(&mut dev, Guest::default(), |bus, mem, d| {
        // The same discard the disk above served.
        ranged(d, mem, 0x8000, T_DISCARD, (16, 16), 0xa002);
        bus.kick(mem, 0);
        assert_eq!(status(mem, 0xa002), S_UNSUPP);
        assert_eq!(ch.in_flight(), 0, "nothing went to the disk");
    });
}
