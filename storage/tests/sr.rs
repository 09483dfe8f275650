//! SRs on real devices: the same random VDI operations (create, write,
//! snapshot, clone, resize, delete, coalesce) against a plain in-memory
//! reference on a file-backed `local` SR and on an `iscsi` SR on a tgtd LUN.
//! The iSCSI SR is then opened again over a new session and from tgtd's
//! backing file, and must read the same.

mod common;

use std::collections::BTreeMap;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{LUN_BYTES, TIMEOUT, Tgtd, pattern};
use storage::BlockDevice;
use storage::file::FileBlockDevice;
use storage::iscsi::tcp;
use storage::sr::{Sr, SrError, SrType, Uuid};

const CLUSTER: u32 = 64 * 1024;

type Model = BTreeMap<Uuid, (Vec<u8>, bool)>;

fn uuid(n: u64) -> Uuid {
    let mut u = [0x5a; 16];
    u[..8].copy_from_slice(&n.to_le_bytes());
    u
}

fn read_all<D: BlockDevice>(sr: &mut Sr<D>) -> Model {
    let mut m = Model::new();
    for v in sr.vdis() {
        let mut data = vec![0u8; v.virtual_size as usize];
        sr.read(&v.uuid, 0, &mut data).expect("read");
        m.insert(v.uuid, (data, v.read_only));
    }
    m
}

/// Deterministic random operations, checked against the model after each.
fn exercise<D: BlockDevice>(sr: &mut Sr<D>, steps: u32) -> Model {
    let mut model = Model::new();
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n.max(1)
    };
    let mut next = 1;
    for step in 0..steps {
        let keys: Vec<Uuid> = model.keys().copied().collect();
        let pick = keys.get(rnd(keys.len() as u64) as usize).copied();
        let op = if keys.is_empty() { 0 } else { rnd(10) };
        match (op, pick) {
            (0, _) => {
                next += 1;
                let size = (1 + rnd(8 * u64::from(CLUSTER) / 512)) * 512;
                sr.create_vdi(uuid(next), "disk", size).expect("create");
                model.insert(uuid(next), (vec![0; size as usize], false));
            }
            (1..=5, Some(u)) => {
                let (data, ro) = model.get_mut(&u).expect("model");
                let off = rnd(data.len() as u64);
                let len = 1 + rnd((data.len() as u64 - off).min(3 * u64::from(CLUSTER)));
                let bytes = pattern(len as usize, step);
                match sr.write(&u, off, &bytes) {
                    Ok(()) => data[off as usize..(off + len) as usize].copy_from_slice(&bytes),
                    Err(SrError::ReadOnly) => assert!(*ro),
                    Err(SrError::NoSpace) => {}
                    Err(e) => panic!("write: {e}"),
                }
            }
            (6, Some(u)) => {
                next += 1;
                let ro = rnd(2) == 0;
                if ro {
                    sr.snapshot(&u, uuid(next), "snapshot").expect("snapshot");
                } else {
                    sr.clone_vdi(&u, uuid(next), "clone").expect("clone");
                }
                let data = model[&u].0.clone();
                model.insert(uuid(next), (data, ro));
            }
            (7, Some(u)) => {
                let (data, _) = model.get_mut(&u).expect("model");
                let size = data.len() as u64 + 512 * rnd(1000);
                sr.resize(&u, size).expect("resize");
                data.resize(size as usize, 0);
            }
            (8, Some(u)) => {
                sr.delete(&u).expect("delete");
                model.remove(&u);
            }
            (_, Some(u)) => {
                sr.coalesce(&u).expect("coalesce");
            }
            _ => {}
        }
        assert_eq!(read_all(sr), model, "step {step}");
    }
    model
}

#[test]
fn file_sr_matches_the_reference() {
    let path = std::env::temp_dir().join(format!("keel-sr-{}.img", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(32 << 20))
        .expect("file");
    let dev = FileBlockDevice::open(&path, 512, false).expect("open");
    let mut sr = Sr::format(dev, SrType::Local, uuid(0), CLUSTER).expect("format");
    let model = exercise(&mut sr, 150);
    sr.flush().expect("flush");
    drop(sr);
    let dev = FileBlockDevice::open(&path, 512, false).expect("open");
    let mut sr = Sr::open(dev).expect("reopen");
    assert_eq!(sr.sr_type(), SrType::Local);
    assert_eq!(read_all(&mut sr), model);
    std::fs::remove_file(&path).ok();
}

#[test]
fn iscsi_sr_on_a_tgtd_lun() {
    let tgt = Tgtd::start();
    let lun = tgt.open(&tgt.target());
    let mut sr = Sr::format(lun, SrType::Iscsi, uuid(0), CLUSTER).expect("format");
    let model = exercise(&mut sr, 120);
    assert!(sr.physical_utilisation() > 0);
    sr.flush().expect("flush");
    drop(sr);

    // A new session (another host of the pool, later) sees the same SR.
    let mut sr = Sr::open(tgt.open(&tgt.target())).expect("reopen over iSCSI");
    assert_eq!(sr.sr_type(), SrType::Iscsi);
    assert_eq!(sr.lease().map(|l| l.host), Some([0; 16]), "a free lease");
    assert_eq!(read_all(&mut sr), model);
    drop(sr);

    // What our initiator wrote is what tgtd stored.
    let file = FileBlockDevice::open(&tgt.backing, 512, true).expect("backing file");
    assert_eq!(file.num_blocks() * 512, LUN_BYTES);
    let mut sr = Sr::open(file).expect("open the backing file");
    assert_eq!(read_all(&mut sr), model);
}

/// tgtd is killed and restarted while a VDI on an iSCSI SR takes writes,
/// flushes and a snapshot: the session recovers under the SR, no call
/// fails, and the SR read back from tgtd's backing file matches.
#[test]
fn iscsi_sr_survives_a_tgtd_restart() {
    let tgt = Tgtd::start();
    let lun = tcp::open_recovering_lun(&tgt.target(), 1, Duration::from_secs(30)).expect("open");
    let mut sr = Sr::format(lun, SrType::Iscsi, uuid(0), CLUSTER).expect("format");
    let (a, snap) = (uuid(1), uuid(2));
    let size = 64 * u64::from(CLUSTER);
    sr.create_vdi(a, "disk", size).expect("create");
    let mut model = vec![0u8; size as usize];
    let acked = Arc::new(AtomicU32::new(0));
    let seen = acked.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        while seen.load(Ordering::SeqCst) < 40 {
            assert!(Instant::now() < deadline, "writes did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        tgt.restart()
    });
    let mut snapshot_model = None;
    for i in 0..160u32 {
        let off = u64::from(i * 7919 % 1000) * 512 * 31 % (size - 20_000);
        let data = pattern(20_000, 1000 + i);
        sr.write(&a, off, &data)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        model[off as usize..off as usize + data.len()].copy_from_slice(&data);
        if i % 16 == 15 {
            sr.flush().unwrap_or_else(|e| panic!("flush {i}: {e}"));
        }
        if i == 80 {
            sr.snapshot(&a, snap, "mid-restart").expect("snapshot");
            snapshot_model = Some(model.clone());
        }
        acked.fetch_add(1, Ordering::SeqCst);
    }
    sr.flush().expect("flush");
    let tgt = killer.join().expect("restart thread");
    assert!(sr.device().recoveries() >= 1, "the session was reinstated");
    drop(sr);
    let file = FileBlockDevice::open(&tgt.backing, 512, true).expect("backing file");
    let mut sr = Sr::open(file).expect("open the backing file");
    let got = read_all(&mut sr);
    assert!(got[&a].0 == model, "the VDI differs");
    assert!(
        Some(&got[&snap].0) == snapshot_model.as_ref(),
        "the snapshot differs"
    );
}

/// Throughput of a VDI on a file SR (1 MiB clusters), printed as `FIGURE`
/// lines; run with `--release --nocapture` for meaningful numbers. The
/// data is checked against a reference, the times are only reported.
#[test]
fn file_sr_vdi_throughput_figures() {
    use std::time::Instant;
    const VDI: u64 = 256 << 20;
    const IO: usize = 4096;
    const OPS: usize = 8000;
    let path = std::env::temp_dir().join(format!("keel-sr-perf-{}.img", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(2 * VDI + (64 << 20)))
        .expect("file");
    let dev = FileBlockDevice::open(&path, 512, false).expect("open");
    let mut sr = Sr::format(
        dev,
        SrType::Local,
        uuid(0),
        storage::sr::DEFAULT_CLUSTER_SIZE,
    )
    .expect("format");
    let a = uuid(1);
    sr.create_vdi(a, "perf", VDI).expect("create");
    let mut reference = vec![0u8; VDI as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut offsets = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % (VDI / IO as u64) * IO as u64
    };
    let mut run = |sr: &mut Sr<FileBlockDevice>, what: &str, reference: &mut Vec<u8>| {
        let start = Instant::now();
        for i in 0..OPS {
            let off = offsets();
            let data = [(i % 251) as u8 + 1; IO];
            sr.write(&a, off, &data).expect("write");
            reference[off as usize..off as usize + IO].copy_from_slice(&data);
        }
        sr.flush().expect("flush");
        let s = start.elapsed().as_secs_f64();
        println!(
            "FIGURE vdi_{what} iops={:.0} MB/s={:.1} ({OPS} random 4 KiB writes, file SR, 1 MiB clusters)",
            OPS as f64 / s,
            (OPS * IO) as f64 / s / 1e6
        );
    };
    run(&mut sr, "randwrite_4k_allocating", &mut reference);
    // Sequential 1 MiB writes into a new VDI: every one allocates.
    let b = uuid(3);
    sr.create_vdi(b, "seq", VDI / 2).expect("create");
    let chunk = vec![0xeeu8; 1 << 20];
    let start = Instant::now();
    for off in (0..VDI / 2).step_by(1 << 20) {
        sr.write(&b, off, &chunk).expect("write");
    }
    sr.flush().expect("flush");
    let s = start.elapsed().as_secs_f64();
    println!(
        "FIGURE vdi_seqwrite_1m_allocating MB/s={:.1}",
        (VDI / 2) as f64 / s / 1e6
    );
    let mut c = vec![0u8; 1 << 20];
    sr.read(&b, VDI / 2 - (1 << 20), &mut c).expect("read");
    assert!(c == chunk);
    sr.delete(&b).expect("delete");
    run(&mut sr, "randwrite_4k_in_place", &mut reference);
    sr.snapshot(&a, uuid(2), "snap").expect("snapshot");
    run(&mut sr, "randwrite_4k_after_snapshot", &mut reference);
    let start = Instant::now();
    let mut back = vec![0u8; VDI as usize];
    for (i, c) in back.chunks_mut(1 << 20).enumerate() {
        sr.read(&a, (i as u64) << 20, c).expect("read");
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "FIGURE vdi_seqread_1m MB/s={:.1} (a two-layer chain)",
        VDI as f64 / s / 1e6
    );
    assert!(back == reference, "the VDI differs from the reference");
    drop(sr);
    std::fs::remove_file(&path).ok();
}
