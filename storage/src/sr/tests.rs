use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::block::BlockError;
use crate::crash::CrashDevice;
use crate::mem::MemBlockDevice;

const CS: u32 = 64 * 1024;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The reference: each VDI's bytes and read-only flag.
type Model = BTreeMap<Uuid, (Vec<u8>, bool)>;

fn uuid(n: u64) -> Uuid {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&n.to_le_bytes());
    u[15] = 0xa5;
    u
}

fn fresh_sr(mb: u64, sr_type: SrType) -> Sr<MemBlockDevice> {
    fresh_sr_blocks(mb, sr_type, 512)
}

fn fresh_sr_blocks(mb: u64, sr_type: SrType, block_size: u32) -> Sr<MemBlockDevice> {
    let dev = MemBlockDevice::new(block_size, (mb << 20) / u64::from(block_size));
    Sr::format(dev, sr_type, uuid(0xabcdef), CS).expect("format")
}

fn sr_model<D: BlockDevice>(sr: &mut Sr<D>) -> Model {
    let mut m = Model::new();
    for v in sr.vdis() {
        let mut data = vec![0u8; v.virtual_size as usize];
        sr.read(&v.uuid, 0, &mut data).expect("read");
        m.insert(v.uuid, (data, v.read_only));
    }
    m
}

/// One random operation on `sr` and the model; `Err` if the SR failed
/// (the model is then left as before).
fn step<D: BlockDevice>(
    sr: &mut Sr<D>,
    model: &mut Model,
    rng: &mut Rng,
    next_uuid: &mut u64,
) -> Result<(), SrError> {
    let keys: Vec<Uuid> = model.keys().copied().collect();
    let pick = |rng: &mut Rng| keys.get(rng.below(keys.len() as u64) as usize).copied();
    match rng.below(21) {
        0..=2 => {
            *next_uuid += 1;
            let u = uuid(*next_uuid);
            let size = (1 + rng.below(6 * u64::from(CS) / 512)) * 512;
            sr.create_vdi(u, "disk", size)?;
            model.insert(u, (vec![0; size as usize], false));
        }
        3..=10 => {
            let Some(u) = pick(rng) else { return Ok(()) };
            let (data, ro) = model.get_mut(&u).expect("model");
            let size = data.len() as u64;
            let off = rng.below(size);
            let len = 1 + rng.below((size - off).min(3 * u64::from(CS)));
            let fill: Vec<u8> = (0..len).map(|i| (rng.0 as u8) ^ (i as u8)).collect();
            let r = sr.write(&u, off, &fill);
            if *ro {
                assert_eq!(r, Err(SrError::ReadOnly));
            } else {
                r?;
                data[off as usize..(off + len) as usize].copy_from_slice(&fill);
            }
        }
        11 | 12 => {
            let Some(u) = pick(rng) else { return Ok(()) };
            *next_uuid += 1;
            let new = uuid(*next_uuid);
            let read_only = rng.below(2) == 0;
            if read_only {
                sr.snapshot(&u, new, "snap")?;
            } else {
                sr.clone_vdi(&u, new, "clone")?;
            }
            let data = model[&u].0.clone();
            model.insert(new, (data, read_only));
        }
        13 => {
            let Some(u) = pick(rng) else { return Ok(()) };
            let (data, _) = model.get_mut(&u).expect("model");
            let size = data.len() as u64 + rng.below(3 * u64::from(CS) / 512) * 512;
            sr.resize(&u, size)?;
            data.resize(size as usize, 0);
        }
        14 | 15 => {
            let Some(u) = pick(rng) else { return Ok(()) };
            sr.delete(&u)?;
            model.remove(&u);
        }
        16 => {
            let Some(u) = pick(rng) else { return Ok(()) };
            sr.coalesce(&u)?;
        }
        17 => {
            let Some(u) = pick(rng) else { return Ok(()) };
            let (_, ro) = model.get_mut(&u).expect("model");
            sr.set_read_only(&u, !*ro)?;
            *ro = !*ro;
        }
        20 => {
            // Discard: whole clusters only the VDI's layer maps read as
            // zeros afterwards; every other byte is unchanged.
            let Some(u) = pick(rng) else { return Ok(()) };
            let (data, ro) = model.get_mut(&u).expect("model");
            let size = data.len() as u64;
            let off = rng.below(size);
            let len = rng.below(size - off + 1);
            let r = sr.discard(&u, off, len);
            if *ro {
                assert_eq!(r, Err(SrError::ReadOnly));
                return Ok(());
            }
            let released = r?;
            let mut now = vec![0u8; len as usize];
            sr.read(&u, off, &mut now)?;
            let cs = u64::from(CS);
            let mut zeroed = 0;
            for (i, (got, was)) in now.iter().zip(&data[off as usize..]).enumerate() {
                let at = off + i as u64;
                let c = at / cs;
                let whole = c * cs >= off && ((c + 1) * cs).min(size) <= off + len;
                if got != was {
                    assert!(
                        whole && *got == 0,
                        "discard changed byte {at} outside a whole cluster"
                    );
                    zeroed += 1;
                }
            }
            assert!(
                zeroed <= released,
                "{zeroed} bytes zeroed, {released} released"
            );
            data[off as usize..(off + len) as usize].copy_from_slice(&now);
        }
        _ => {
            // Reads through the block-device view.
            let Some(u) = pick(rng) else { return Ok(()) };
            let data = &model[&u].0;
            let mut dev = sr.vdi_device(&u)?;
            let blocks = dev.num_blocks();
            assert_eq!(blocks * 512, data.len() as u64);
            let lba = rng.below(blocks);
            let n = 1 + rng.below((blocks - lba).min(300));
            let mut buf = vec![0u8; n as usize * 512];
            dev.read_blocks(lba, &mut buf)?;
            assert_eq!(buf[..], data[lba as usize * 512..(lba + n) as usize * 512]);
        }
    }
    Ok(())
}

/// With `flush`, every operation is followed by a flush, as a guest that
/// wants its writes durable does (with a write cache, unflushed in-place
/// writes of earlier steps may be lost, like a disk's).
fn workload_flushing<D: BlockDevice>(
    sr: &mut Sr<D>,
    seed: u64,
    steps: usize,
    flush: bool,
) -> Vec<Model> {
    let mut rng = Rng(seed);
    let mut model = Model::new();
    let mut next_uuid = 0;
    let mut models = vec![model.clone()];
    for _ in 0..steps {
        let mut m = model.clone();
        match step(sr, &mut m, &mut rng, &mut next_uuid).and_then(|()| match flush {
            true => sr.flush(),
            false => Ok(()),
        }) {
            Ok(()) => model = m,
            Err(SrError::NoSpace) => {}
            Err(_) => break,
        }
        models.push(model.clone());
    }
    models
}

#[test]
fn random_operations_match_a_plain_reference() {
    for seed in 1..12u64 {
        // Odd seeds on a disk of 4 KiB blocks: VDI writes of any byte
        // range then need read-modify-write of device blocks.
        let block_size = if seed % 2 == 1 { 4096 } else { 512 };
        let mut sr = fresh_sr_blocks(12, SrType::Local, block_size);
        let mut rng = Rng(seed * 0x9e37_79b9);
        let mut model = Model::new();
        let mut next = 0;
        for i in 0..160 {
            let mut m = model.clone();
            match step(&mut sr, &mut m, &mut rng, &mut next) {
                Ok(()) => model = m,
                Err(SrError::NoSpace) => {}
                Err(e) => panic!("seed {seed} step {i}: {e}"),
            }
            if i % 40 == 39 {
                sr = Sr::open(sr.close().expect("close")).expect("reopen");
            }
            assert_eq!(sr_model(&mut sr), model, "seed {seed} step {i}");
            assert!(sr.physical_utilisation() <= sr.physical_size());
        }
        // Deleting every VDI frees every cluster.
        for u in model.keys() {
            sr.delete(u).expect("delete");
        }
        assert_eq!(sr.physical_utilisation(), 0, "seed {seed}");
        let sr = Sr::open(sr.close().expect("close")).expect("reopen");
        assert_eq!(sr.physical_utilisation(), 0);
        assert!(sr.vdis().is_empty());
    }
}

#[test]
fn snapshots_share_clusters_and_delete_reclaims_them() {
    let mut sr = fresh_sr(8, SrType::Local);
    let (a, s, c) = (uuid(1), uuid(2), uuid(3));
    let size = 4 * u64::from(CS);
    sr.create_vdi(a, "a", size).expect("create");
    assert_eq!(sr.physical_utilisation(), 0, "thin");
    sr.write(&a, 0, &vec![1u8; size as usize]).expect("write");
    assert_eq!(sr.physical_utilisation(), size);
    sr.snapshot(&a, s, "s").expect("snapshot");
    assert_eq!(sr.physical_utilisation(), size, "a snapshot copies nothing");
    assert_eq!(sr.write(&s, 0, b"x"), Err(SrError::ReadOnly));
    sr.write(&a, 10, b"new").expect("write after snapshot");
    assert_eq!(sr.physical_utilisation(), size + u64::from(CS));
    let mut b = [0u8; 4];
    sr.read(&s, 9, &mut b).expect("read");
    assert_eq!(b, [1; 4], "the snapshot keeps the old data");
    sr.read(&a, 9, &mut b).expect("read");
    assert_eq!(&b, b"\x01new");
    sr.clone_vdi(&s, c, "c").expect("clone of the snapshot");
    assert_eq!(sr.vdi(&c).expect("c").chain_len, 3);
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    let (si, ci) = (sr.vdi(&s).expect("s"), sr.vdi(&c).expect("c"));
    assert_eq!(
        (si.origin, si.is_a_snapshot, si.read_only),
        (Some(a), true, true)
    );
    assert_eq!(
        (ci.origin, ci.is_a_snapshot, ci.read_only),
        (Some(s), false, false)
    );
    assert_eq!(sr.vdi(&a).expect("a").origin, None);
    sr.delete(&s).expect("delete snapshot");
    sr.delete(&c).expect("delete clone");
    // The base is now used by `a` alone: it was coalesced into it.
    assert_eq!(sr.vdi(&a).expect("a").chain_len, 1);
    assert_eq!(sr.physical_utilisation(), size);
    sr.read(&a, 9, &mut b).expect("read");
    assert_eq!(&b, b"\x01new");
    assert_eq!(
        sr.resize(&a, size - 512),
        Err(SrError::Invalid("a VDI only grows, by 512-byte steps"))
    );
    sr.resize(&a, size + 512).expect("grow");
    assert_eq!(
        sr.read(&a, size, &mut [0u8; 1024]),
        Err(SrError::OutOfRange {
            offset: size,
            len: 1024,
            size: size + 512
        })
    );
    sr.delete(&a).expect("delete");
    assert_eq!(sr.physical_utilisation(), 0);
}

#[test]
fn coalesce_merges_a_chain() {
    let mut sr = fresh_sr(8, SrType::Local);
    let a = uuid(1);
    sr.create_vdi(a, "a", 4 * u64::from(CS)).expect("create");
    for i in 0..4u64 {
        sr.write(&a, i * u64::from(CS), &[i as u8 + 1; 100])
            .expect("write");
        sr.snapshot(&a, uuid(10 + i), "s").expect("snapshot");
    }
    for i in 0..4u64 {
        // Deleting a snapshot coalesces its base into the one above.
        sr.delete(&uuid(10 + i)).expect("delete");
    }
    let want = sr_model(&mut sr);
    assert_eq!(sr.vdi(&a).expect("a").chain_len, 1);
    assert_eq!(sr.coalesce(&a), Ok(0));
    assert_eq!(sr.physical_utilisation(), 4 * u64::from(CS));
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    assert_eq!(sr_model(&mut sr), want);
}

#[test]
fn a_write_is_durable_after_flush() {
    let mut sr = fresh_sr(8, SrType::Local);
    let a = uuid(1);
    sr.create_vdi(a, "a", 1 << 20).expect("create");
    sr.flush().expect("flush");
    let dev = sr.into_device();
    let mut sr = Sr::open(dev.clone()).expect("open");
    sr.write(&a, 0, b"cached").expect("write");
    let mut b = [0u8; 6];
    sr.read(&a, 0, &mut b).expect("read");
    assert_eq!(&b, b"cached", "reads see the write at once");
    // Power lost before a flush: the allocation is gone, nothing else.
    let mut lost = Sr::open(sr.into_device()).expect("open");
    lost.read(&a, 0, &mut b).expect("read");
    assert_eq!(b, [0; 6]);
    assert_eq!(lost.physical_utilisation(), 0);
    let mut sr = Sr::open(dev).expect("open");
    sr.write(&a, 0, b"synced").expect("write");
    let mut vdi = sr.vdi_device(&a).expect("vdi");
    vdi.flush().expect("flush");
    let mut kept = Sr::open(sr.into_device()).expect("open");
    kept.read(&a, 0, &mut b).expect("read");
    assert_eq!(&b, b"synced");
}

#[test]
fn vdi_is_a_block_device() {
    let mut sr = fresh_sr(8, SrType::Local);
    let a = uuid(1);
    sr.create_vdi(a, "a", 1 << 20).expect("create");
    let mut dev = sr.vdi_device(&a).expect("vdi");
    assert_eq!((dev.block_size(), dev.num_blocks()), (512, 2048));
    dev.write_blocks(100, &[9u8; 4096]).expect("write");
    let mut b = [0u8; 512];
    dev.read_blocks(107, &mut b).expect("read");
    assert_eq!(b, [9u8; 512]);
    assert!(matches!(
        dev.read_blocks(2048, &mut b),
        Err(BlockError::OutOfRange { .. })
    ));
    dev.flush().expect("flush");
    sr.set_read_only(&a, true).expect("ro");
    let mut dev = sr.vdi_device(&a).expect("vdi");
    assert_eq!(dev.write_blocks(0, &b), Err(BlockError::ReadOnly));
}

#[test]
fn iso_library() {
    let mut sr = fresh_sr(8, SrType::Iso);
    let iso: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = sr
        .import_iso(uuid(1), "debian.iso", iso.len() as u64, |at, buf| {
            buf.copy_from_slice(&iso[at as usize..at as usize + buf.len()]);
            Ok::<(), ()>(())
        })
        .expect("import");
    assert_eq!(r, Ok(()));
    assert_eq!(
        sr.import_iso(uuid(2), "debian.iso", 10, |_, _| Ok::<(), ()>(())),
        Err(SrError::NameInUse)
    );
    // A failed upload stays out of the list.
    let r = sr
        .import_iso(uuid(3), "broken.iso", 1 << 20, |at, _| {
            if at > 0 {
                Err("client went away")
            } else {
                Ok(())
            }
        })
        .expect("import");
    assert_eq!(r, Err("client went away"));
    assert_eq!(
        sr.create_vdi(uuid(4), "x", 512),
        Err(SrError::WrongSrType(SrType::Iso))
    );
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    let isos = sr.isos();
    assert_eq!(isos.len(), 1);
    assert_eq!(
        (isos[0].name.as_str(), isos[0].read_only),
        ("debian.iso", true)
    );
    assert_eq!(isos[0].virtual_size, iso.len().next_multiple_of(512) as u64);
    let mut back = vec![0u8; iso.len()];
    sr.read(&uuid(1), 0, &mut back).expect("read");
    assert_eq!(back, iso);
    assert_eq!(sr.write(&uuid(1), 0, b"x"), Err(SrError::ReadOnly));
    let mut local = fresh_sr(8, SrType::Local);
    assert!(matches!(
        local.import_iso(uuid(1), "a", 1, |_, _| Ok::<(), ()>(())),
        Err(SrError::WrongSrType(SrType::Local))
    ));
}

#[test]
fn iso_uploaded_in_pieces_across_opens() {
    let mut sr = fresh_sr(8, SrType::Iso);
    let iso: Vec<u8> = (0..200_001u32).map(|i| (i % 241) as u8).collect();
    // A first upload is cut after one piece: not listed, and replaced by
    // the next upload of the same name.
    sr.begin_iso(uuid(1), "net.iso", iso.len() as u64)
        .expect("begin");
    sr.write(&uuid(1), 0, &iso[..65_536]).expect("piece");
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    assert!(sr.isos().is_empty());
    sr.begin_iso(uuid(2), "net.iso", iso.len() as u64)
        .expect("begin again");
    assert_eq!(sr.vdi(&uuid(1)), Err(SrError::NoSuchVdi));
    // Pieces each written by an SR opened for it, as upload jobs do.
    let mut padded = iso.clone();
    padded.resize(iso.len().next_multiple_of(512), 0);
    for piece in padded.chunks(70_000).enumerate() {
        let (i, bytes) = piece;
        let mut again = Sr::open(sr.close().expect("close")).expect("reopen");
        again
            .write(&uuid(2), (i * 70_000) as u64, bytes)
            .expect("piece");
        assert!(again.isos().is_empty(), "listed before it is finished");
        sr = again;
    }
    sr.finish_iso(&uuid(2)).expect("finish");
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    let isos = sr.isos();
    assert_eq!(isos.len(), 1);
    assert_eq!((isos[0].uuid, isos[0].read_only), (uuid(2), true));
    let mut back = vec![0u8; iso.len()];
    sr.read(&uuid(2), 0, &mut back).expect("read");
    assert_eq!(back, iso);
    assert_eq!(sr.write(&uuid(2), 0, b"x"), Err(SrError::ReadOnly));
    assert_eq!(
        sr.begin_iso(uuid(3), "net.iso", 512),
        Err(SrError::NameInUse)
    );
    let mut local = fresh_sr(8, SrType::Local);
    assert_eq!(
        local.begin_iso(uuid(1), "a", 512),
        Err(SrError::WrongSrType(SrType::Local))
    );
}

#[test]
fn a_reformat_with_the_same_uuid_starts_empty() {
    let mut sr = fresh_sr(4, SrType::Local);
    sr.create_vdi(uuid(1), "a", 1 << 20).expect("create");
    sr.write(&uuid(1), 0, &[7; 70_000]).expect("write");
    let dev = sr.close().expect("close");
    let sr = Sr::format(dev, SrType::Local, uuid(0xabcdef), CS).expect("format again");
    let sr = Sr::open(sr.close().expect("close")).expect("open");
    assert!(sr.vdis().is_empty());
    assert_eq!(sr.physical_utilisation(), 0);
}

#[test]
fn format_and_open_refuse_bad_devices() {
    let tiny = MemBlockDevice::new(512, 640);
    assert!(matches!(
        Sr::format(tiny, SrType::Local, uuid(1), CS),
        Err(SrError::DeviceTooSmall { .. })
    ));
    let dev = MemBlockDevice::new(512, 8192);
    assert_eq!(
        Sr::format(dev.clone(), SrType::Local, uuid(1), 3000).err(),
        Some(SrError::BadGeometry)
    );
    assert_eq!(
        Sr::open(dev).err(),
        Some(SrError::Superblock(SuperblockError::NotAnSr))
    );
    // One damaged superblock copy is survived, two are refused.
    let mut sr = fresh_sr(4, SrType::Local);
    sr.create_vdi(uuid(1), "a", 4096).expect("create");
    let mut dev = sr.close().expect("close");
    dev.bytes_mut()[30] ^= 4;
    let sr = Sr::open(dev).expect("one copy left");
    assert_eq!(sr.vdis().len(), 1);
    let mut dev = sr.into_device();
    dev.bytes_mut()[4096 + 30] ^= 4;
    assert_eq!(
        Sr::open(dev).err(),
        Some(SrError::Superblock(SuperblockError::Damaged))
    );
}

/// Checks that `got` is the state before or after the interrupted
/// operation: the same VDIs as one of them, and every byte of every VDI
/// as before or after (a torn in-place data write mixes the two, as on a
/// disk; a metadata update never does).
fn before_or_after(got: &Model, before: &Model, after: Option<&Model>) -> bool {
    let same_set = |m: &Model| {
        m.len() == got.len()
            && m.iter()
                .all(|(k, (_, ro))| got.get(k).is_some_and(|g| g.1 == *ro))
    };
    let pick = if same_set(before) {
        before
    } else if let Some(a) = after.filter(|a| same_set(a)) {
        a
    } else {
        return false;
    };
    got.iter().all(|(k, (data, _))| {
        let b = pick.get(k).map(|x| &x.0);
        let a = after.and_then(|a| a.get(k)).map(|x| &x.0);
        data.iter().enumerate().all(|(i, byte)| {
            b.and_then(|b| b.get(i)).is_some_and(|x| x == byte)
                || a.and_then(|a| a.get(i)).is_some_and(|x| x == byte)
                || (b.is_some_and(|b| i >= b.len()) && *byte == 0)
        })
    })
}

/// Power loss at every write of a random workload, each operation followed
/// by a flush (at the write's first byte, its second and its middle): the
/// SR opens, every VDI reads as before or after the interrupted operation
/// (never another VDI's data), and it keeps working: a write and a reopen
/// afterwards behave.
#[test]
fn power_loss_at_every_write() {
    // A 12 KiB journal (two areas of 12 blocks): the workload compacts.
    let dev = MemBlockDevice::new(512, 6 * 2048);
    let base = Sr::format_with_journal(dev, SrType::Local, uuid(7), CS, Some(12 * 1024))
        .expect("format")
        .into_device();
    const SEED: u64 = 0x5eed;
    const STEPS: usize = 70;
    let mut full = Sr::open(CrashDevice::new(base.clone(), None)).expect("open");
    let all = workload_flushing(&mut full, SEED, STEPS, true);
    assert!(full.journal.generation() > 3, "the workload compacts");
    let full = full.into_device();
    assert!(
        full.write_starts.len() > 100,
        "{} writes",
        full.write_starts.len()
    );
    let mut ends = full.write_starts.clone();
    ends.push(full.written);
    let mut runs = 0;
    for w in ends.windows(2) {
        let (start, len) = (w[0], w[1] - w[0]);
        for budget in [start, start + 1, start + len / 2] {
            let mut sr = Sr::open(CrashDevice::new(base.clone(), Some(budget))).expect("open");
            let models = workload_flushing(&mut sr, SEED, STEPS, true);
            let dev = sr.into_device();
            assert!(dev.crashed, "budget {budget}");
            let done = models.len() - 1;
            let mut sr = Sr::open(dev.inner).unwrap_or_else(|e| panic!("budget {budget}: {e}"));
            let got = sr_model(&mut sr);
            assert!(
                before_or_after(&got, &models[done], all.get(done + 1)),
                "budget {budget}: step {done} left a state that is neither before nor after"
            );
            // Still usable.
            let mut u = uuid(999_999);
            if let Some(v) = sr.vdis().into_iter().find(|v| !v.read_only) {
                u = v.uuid;
            } else {
                sr.create_vdi(u, "x", 4096).expect("create after recovery");
            }
            sr.write(&u, 0, b"after").expect("write after recovery");
            let want = sr_model(&mut sr);
            let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
            assert_eq!(sr_model(&mut sr), want);
            runs += 1;
        }
    }
    assert!(runs > 300);
    std::eprintln!(
        "{runs} crash points; {} of {STEPS} steps, {} VDIs at the end",
        all.len() - 1,
        all.last().map_or(0, BTreeMap::len)
    );
}

#[test]
fn fuzz_entry_point_survives_damaged_srs() {
    let mut sr = fresh_sr(2, SrType::Local);
    sr.create_vdi(uuid(1), "a", 8192).expect("create");
    sr.write(&uuid(1), 0, b"data").expect("write");
    sr.snapshot(&uuid(1), uuid(2), "s").expect("snap");
    let image = sr.close().expect("close").bytes()[..600 * 512].to_vec();
    let mut rng = Rng(77);
    for round in 0..200 {
        let mut d = image.clone();
        for _ in 0..(round % 30) {
            let at = rng.below(70_000) as usize;
            d[at] = rng.next() as u8;
        }
        d.truncate(rng.below(image.len() as u64) as usize + 512);
        fuzz_sr(&d);
    }
}

/// The same with a volatile write cache: at a crash at any write, every
/// block written since the last flush lands or not, independently. The
/// flushes between data and the records that map it are what keep the
/// SR consistent here.
#[test]
fn power_loss_with_a_write_cache_at_every_write() {
    use crate::crash::CacheCrashDevice;
    let dev = MemBlockDevice::new(512, 6 * 2048);
    let base = Sr::format_with_journal(dev, SrType::Local, uuid(7), CS, Some(12 * 1024))
        .expect("format")
        .into_device();
    const SEED: u64 = 0xcafe;
    const STEPS: usize = 80;
    let mut full = Sr::open(CrashDevice::new(base.clone(), None)).expect("open");
    let all = workload_flushing(&mut full, SEED, STEPS, true);
    assert!(full.journal.generation() > 3, "the workload compacts");
    let writes = full.into_device().write_starts.len();
    assert!(writes > 90, "{writes} writes");
    for crash_at in 0..writes {
        for seed in 1..3u64 {
            let dev = CacheCrashDevice::new(base.clone(), crash_at, seed * 0x51ed);
            let mut sr = Sr::open(dev).expect("open");
            let models = workload_flushing(&mut sr, SEED, STEPS, true);
            let dev = sr.into_device();
            assert!(dev.crashed, "write {crash_at}");
            let done = models.len() - 1;
            let mut sr = Sr::open(dev.durable)
                .unwrap_or_else(|e| panic!("write {crash_at} seed {seed}: {e}"));
            let got = sr_model(&mut sr);
            assert!(
                before_or_after(&got, &models[done], all.get(done + 1)),
                "write {crash_at} seed {seed}: step {done} left a state that is neither before nor after"
            );
        }
    }
}

/// `clone_vdis` makes every clone in one journal frame: power lost at any
/// byte of it leaves all the clones (reading their originals' data) or
/// none, with a small journal (that the renames before have filled and
/// compacted) and a roomy one.
#[test]
fn clones_of_several_vdis_are_all_or_none_at_every_write() {
    let (a, b, ca, cb) = (uuid(1), uuid(2), uuid(3), uuid(4));
    let size = 2 * u64::from(CS);
    let data = |seed: u8| -> Vec<u8> { (0..size).map(|i| (i % 251) as u8 ^ seed).collect() };
    for journal in [12 * 1024, 64 * 1024] {
        let dev = MemBlockDevice::new(512, 4 * 2048);
        let mut sr = Sr::format_with_journal(dev, SrType::Iscsi, uuid(7), CS, Some(journal))
            .expect("format");
        sr.create_vdi(a, "root", size).expect("create a");
        sr.create_vdi(b, "data", size).expect("create b");
        sr.write(&a, 0, &data(1)).expect("write a");
        sr.write(&b, 0, &data(2)).expect("write b");
        for n in 0..40 {
            sr.set_name(&a, if n % 2 == 0 { "root-x" } else { "root" })
                .expect("rename");
        }
        let base = sr.close().expect("close");
        let clones = [(a, ca, "root"), (b, cb, "data")];

        let mut full = Sr::open(CrashDevice::new(base.clone(), None)).expect("open");
        full.clone_vdis(&clones).expect("clone");
        let full = full.close().expect("close");
        assert!(!full.write_starts.is_empty());
        let mut ends = full.write_starts.clone();
        ends.push(full.written);
        let (mut all, mut none) = (0, 0);
        for w in ends.windows(2) {
            let (start, len) = (w[0], w[1] - w[0]);
            for budget in [start, start + 1, start + len / 2] {
                let mut sr = Sr::open(CrashDevice::new(base.clone(), Some(budget))).expect("open");
                let _ = sr.clone_vdis(&clones).and_then(|()| sr.flush());
                let dev = sr.into_device();
                let mut sr = Sr::open(dev.inner).unwrap_or_else(|e| panic!("budget {budget}: {e}"));
                let uuids: Vec<Uuid> = sr.vdis().iter().map(|v| v.uuid).collect();
                match (uuids.contains(&ca), uuids.contains(&cb)) {
                    (true, true) => {
                        all += 1;
                        for (u, seed) in [(ca, 1), (cb, 2), (a, 1), (b, 2)] {
                            let mut got = vec![0u8; size as usize];
                            sr.read(&u, 0, &mut got).expect("read");
                            assert!(got == data(seed), "budget {budget}: data of a copy");
                        }
                        let info = sr.vdi(&ca).expect("clone");
                        assert_eq!((info.origin, info.read_only), (Some(a), false));
                    }
                    (false, false) => none += 1,
                    half => panic!("budget {budget}: half the clones survived: {half:?}"),
                }
                assert_eq!(uuids.len() % 2, 0);
            }
        }
        assert!(
            all > 0 && none > 0,
            "journal {journal}: {all} all, {none} none"
        );
    }
}

#[test]
fn clone_vdis_refuses_before_changing_anything() {
    let mut sr = fresh_sr(8, SrType::Local);
    let (a, b, c) = (uuid(1), uuid(2), uuid(3));
    sr.create_vdi(a, "a", 4096).expect("a");
    sr.create_vdi(b, "b", 4096).expect("b");
    let before = sr.vdis();
    assert_eq!(
        sr.clone_vdis(&[(a, c, "c"), (b, c, "c")]),
        Err(SrError::UuidInUse)
    );
    assert_eq!(sr.clone_vdis(&[(a, b, "b")]), Err(SrError::UuidInUse));
    assert_eq!(
        sr.clone_vdis(&[(a, c, "c"), (a, uuid(4), "d")]),
        Err(SrError::Invalid("a VDI is cloned once per call"))
    );
    assert_eq!(
        sr.clone_vdis(&[(a, c, "c"), (uuid(9), uuid(4), "d")]),
        Err(SrError::NoSuchVdi)
    );
    assert_eq!(sr.vdis(), before);
    sr.clone_vdis(&[]).expect("nothing to do");
    sr.clone_vdis(&[(a, c, "c"), (b, uuid(4), "d")])
        .expect("clone");
    assert_eq!(sr.vdis().len(), 4);
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    assert_eq!(sr.vdi(&uuid(4)).expect("d").origin, Some(b));
    sr.write(&c, 0, b"own").expect("a clone is writable");
    let mut got = [0u8; 3];
    sr.read(&a, 0, &mut got).expect("read");
    assert_eq!(got, [0; 3], "the original is unchanged");
}

/// Reads VDI `u` through its extents, straight from the device (zeros
/// where unallocated), as a disk session does.
fn read_by_extents(sr: &mut Sr<MemBlockDevice>, u: &Uuid, offset: u64, len: u64) -> Vec<u8> {
    let ext = sr.vdi_extents(u).expect("extents");
    let mut out = Vec::new();
    for p in ext.pieces(offset, len).expect("in range") {
        match p.device_offset(ext.cluster_size) {
            Some(at) => {
                let dev = sr.device().bytes_mut();
                out.extend_from_slice(&dev[at as usize..(at + p.len) as usize]);
            }
            None => out.extend(core::iter::repeat_n(0u8, p.len as usize)),
        }
    }
    out
}

#[test]
fn extents_follow_the_chain_and_mark_what_the_top_layer_owns() {
    let mut sr = fresh_sr(16, SrType::Iscsi);
    let (a, s, c) = (uuid(1), uuid(2), uuid(3));
    let size = 8 * u64::from(CS);
    sr.create_vdi(a, "a", size).expect("create");
    assert!(sr.vdi_extents(&a).expect("extents").clusters.is_empty());
    // Clusters 0 and 2 written before the snapshot, flushed.
    sr.write(&a, 100, &[1; 300]).expect("write");
    sr.write(&a, 2 * u64::from(CS) + 5, &[2; 10])
        .expect("write");
    sr.flush().expect("flush");
    sr.snapshot(&a, s, "s").expect("snapshot");
    // After the snapshot a owns nothing: everything shows through the base.
    let ext = sr.vdi_extents(&a).expect("extents");
    assert_eq!(ext.clusters.keys().copied().collect::<Vec<_>>(), [0, 2]);
    assert!(ext.clusters.values().all(|e| !e.owned));
    assert!(!ext.writable_in_place(100, 10));
    // A write to cluster 2 copies it into a's layer (pending, unflushed).
    sr.write(&a, 2 * u64::from(CS), &[3; 4]).expect("cow write");
    // A write to cluster 5 allocates (pending).
    sr.write(&a, 5 * u64::from(CS) + 512, &[4; 512])
        .expect("alloc write");
    let ext = sr.vdi_extents(&a).expect("extents");
    assert_eq!(ext.clusters.keys().copied().collect::<Vec<_>>(), [0, 2, 5]);
    assert!(!ext.clusters[&0].owned);
    assert!(ext.clusters[&2].owned && ext.clusters[&5].owned);
    assert!(ext.writable_in_place(2 * u64::from(CS), 512));
    assert!(
        !ext.writable_in_place(2 * u64::from(CS) - 512, 1024),
        "spans cluster 1"
    );
    assert!(
        !ext.writable_in_place(6 * u64::from(CS), 512),
        "unallocated"
    );
    assert_ne!(
        ext.clusters[&2].offset,
        sr.vdi_extents(&s).expect("extents").clusters[&2].offset,
        "the copy is a new cluster"
    );
    // The snapshot is read-only and owns nothing of the base.
    let se = sr.vdi_extents(&s).expect("extents");
    assert!(se.read_only && se.clusters.values().all(|e| !e.owned));
    // A clone of the snapshot sees the same base clusters.
    sr.clone_vdi(&s, c, "c").expect("clone");
    let ce = sr.vdi_extents(&c).expect("extents");
    assert_eq!(ce.clusters.len(), 2);
    assert_eq!(ce.clusters[&0].offset, ext.clusters[&0].offset);
    // Reading through the extents gives what the SR reads, for each VDI.
    for u in [a, s, c] {
        for (at, len) in [(0, size), (u64::from(CS) - 512, 4096), (100, 300)] {
            let mut want = vec![0u8; len as usize];
            sr.read(&u, at, &mut want).expect("read");
            assert_eq!(read_by_extents(&mut sr, &u, at, len), want);
        }
    }
    assert!(sr.vdi_extents(&uuid(99)).is_err());
}

#[test]
fn extent_pieces_split_at_clusters_and_refuse_ranges_outside() {
    let mut clusters = BTreeMap::new();
    clusters.insert(
        1,
        Extent {
            offset: 10 << 20,
            owned: true,
        },
    );
    let ext = VdiExtents {
        cluster_size: CS,
        virtual_size: 4 * u64::from(CS),
        read_only: false,
        clusters,
    };
    let cs = u64::from(CS);
    let p = ext.pieces(cs - 1024, 3072).expect("pieces");
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].offset, p[0].len, p[0].at), (cs - 1024, 1024, None));
    assert_eq!((p[1].offset, p[1].len), (cs, 2048));
    assert_eq!(p[1].device_offset(CS), Some(10 << 20));
    assert_eq!(
        ext.pieces(cs + 512, 512).expect("p")[0].device_offset(CS),
        Some((10 << 20) + 512)
    );
    assert!(ext.pieces(4 * cs - 512, 1024).is_none());
    assert!(ext.pieces(u64::MAX, 2).is_none());
    assert!(ext.writable_in_place(cs, cs));
    assert!(!ext.writable_in_place(cs, cs + 512));
    let ro = VdiExtents {
        read_only: true,
        ..ext
    };
    assert!(!ro.writable_in_place(cs, 512));
}

#[test]
fn discard_releases_clusters_only_the_vdi_maps() {
    let cs = u64::from(CS);
    let mut sr = fresh_sr(4, SrType::Local);
    let (a, b) = (uuid(1), uuid(2));
    sr.create_vdi(a, "a", 6 * cs).expect("create");
    sr.write(&a, 0, &vec![0xaa; 6 * CS as usize])
        .expect("write");
    sr.flush().expect("flush");
    let used = sr.physical_utilisation();
    // Clusters 1..=3 whole; the edges of 0 and 4 stay.
    assert_eq!(sr.discard(&a, cs / 2, 4 * cs), Ok(3 * cs));
    assert_eq!(sr.physical_utilisation(), used - 3 * cs);
    let mut all = vec![0u8; 6 * CS as usize];
    sr.read(&a, 0, &mut all).expect("read");
    assert!(all[..CS as usize].iter().all(|&x| x == 0xaa));
    assert!(all[CS as usize..4 * CS as usize].iter().all(|&x| x == 0));
    assert!(all[4 * CS as usize..].iter().all(|&x| x == 0xaa));
    // A clone's cluster that shadows the base stays (the base's bytes
    // would reappear); one the clone alone maps is released.
    sr.clone_vdi(&a, b, "b").expect("clone");
    sr.write(&b, 0, &vec![0xbb; CS as usize])
        .expect("shadowing write");
    sr.write(&b, cs, &vec![0xbb; CS as usize])
        .expect("write over a hole");
    assert_eq!(sr.discard(&b, 0, 2 * cs), Ok(cs));
    let mut two = vec![0u8; 2 * CS as usize];
    sr.read(&b, 0, &mut two).expect("read");
    assert!(two[..CS as usize].iter().all(|&x| x == 0xbb));
    assert!(two[CS as usize..].iter().all(|&x| x == 0));
    // Survives a reopen; bad requests are refused.
    let mut sr = Sr::open(sr.close().expect("close")).expect("reopen");
    sr.read(&b, 0, &mut two).expect("read");
    assert!(two[CS as usize..].iter().all(|&x| x == 0));
    assert!(matches!(
        sr.discard(&b, 5 * cs, 2 * cs),
        Err(SrError::OutOfRange { .. })
    ));
    assert_eq!(sr.discard(&uuid(9), 0, cs), Err(SrError::NoSuchVdi));
    sr.snapshot(&b, uuid(3), "s").expect("snapshot");
    assert_eq!(sr.discard(&uuid(3), 0, cs), Err(SrError::ReadOnly));
    // The tail cluster of a VDI that is not a cluster multiple.
    sr.create_vdi(uuid(4), "odd", cs + 4096).expect("create");
    sr.write(&uuid(4), cs, &[7; 4096]).expect("write");
    assert_eq!(sr.discard(&uuid(4), cs, 4096), Ok(cs));
    // Through the block-device view (what a guest's discard reaches).
    sr.write(&uuid(4), 0, &vec![5; CS as usize]).expect("write");
    let used = sr.physical_utilisation();
    let mut dev = sr.vdi_device(&uuid(4)).expect("device");
    assert!(dev.supports_discard());
    dev.discard(0, cs / 512).expect("discard");
    assert!(matches!(
        dev.discard(0, cs / 512 + 9),
        Err(BlockError::OutOfRange { .. })
    ));
    assert_eq!(sr.physical_utilisation(), used - cs);
    let mut snap = sr.vdi_device(&uuid(3)).expect("snapshot device");
    assert!(!snap.supports_discard());
    assert_eq!(snap.discard(0, 1), Err(BlockError::ReadOnly));
}
