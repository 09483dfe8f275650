//! SRs on real devices: the same random VDI operations (create, write,
//! snapshot, clone, resize, delete, coalesce) against a plain in-memory
//! reference on a file-backed `local` SR and on an `iscsi` SR on a tgtd LUN.
//! The iSCSI SR is then opened again over a new session and from tgtd's
//! backing file, and must read the same.

mod common;

use std::collections::BTreeMap;

use common::{LUN_BYTES, Tgtd, pattern};
use storage::BlockDevice;
use storage::file::FileBlockDevice;
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
