use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::crash::CrashDevice;
use crate::mem::MemBlockDevice;

const REGION: Region = Region {
    start_lba: 8,
    blocks: 96,
};

type Model = (BTreeMap<String, Vec<u8>>, u32);

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

fn random_batch(rng: &mut Rng) -> Batch {
    let mut b = Batch::new();
    for _ in 0..=rng.below(3) {
        let key = format!("OpaqueRef:{}", rng.below(12));
        match rng.below(10) {
            0..=5 => {
                let len = rng.below(300) as usize;
                let fill = rng.next() as u8;
                b.put(&key, &vec![fill; len]);
            }
            6..=8 => {
                b.delete(&key);
            }
            _ => {
                b.schema_version(rng.below(5) as u32);
            }
        }
    }
    b
}

fn apply(model: &mut Model, batch: &Batch) {
    for op in &batch.ops {
        match op {
            Op::Put { key, value } => {
                model.0.insert(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                model.0.remove(key);
            }
            Op::SchemaVersion(v) => model.1 = *v,
        }
    }
}

fn state(s: &ConfigStore) -> Model {
    (s.records.clone(), s.schema_version())
}

/// Runs `steps` random batches; returns the model after each committed one.
fn workload(dev: &mut CrashDevice, store: &mut ConfigStore, seed: u64, steps: usize) -> Vec<Model> {
    let mut rng = Rng(seed);
    let mut model = state(store);
    let mut models = vec![model.clone()];
    for _ in 0..steps {
        let b = random_batch(&mut rng);
        if store.commit(dev, b.clone()).is_err() {
            break;
        }
        apply(&mut model, &b);
        models.push(model.clone());
        assert_eq!(state(store), model);
    }
    models
}

fn fresh() -> CrashDevice {
    let mut d = MemBlockDevice::new(512, 110);
    ConfigStore::format(&mut d, REGION, 42).expect("format");
    CrashDevice::new(d, None)
}

#[test]
fn random_batches_match_a_map_across_reopens() {
    for seed in 1..20u64 {
        let mut dev = fresh();
        let mut store = ConfigStore::open(&mut dev, REGION).expect("open");
        let models = workload(&mut dev, &mut store, seed * 7919, 120);
        assert_eq!(models.len(), 121, "seed {seed}: a commit failed");
        let reopened = ConfigStore::open(&mut dev, REGION).expect("reopen");
        assert_eq!(state(&reopened), *models.last().expect("model"));
        assert!(store.journal.generation() > 2, "compacted");
    }
}

#[test]
fn typed_values_and_prefix_listing() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Vm {
        name: String,
        vcpus: u32,
    }
    let mut dev = fresh();
    let mut s = ConfigStore::open(&mut dev, REGION).expect("open");
    let vm = Vm {
        name: "web".into(),
        vcpus: 2,
    };
    s.put_value(&mut dev, "VM/OpaqueRef:1", &vm).expect("put");
    s.put(&mut dev, "VM/OpaqueRef:2", b"x").expect("put");
    s.put(&mut dev, "VDI/OpaqueRef:3", b"y").expect("put");
    let mut b = Batch::new();
    b.schema_version(3);
    s.commit(&mut dev, b).expect("schema");
    let s = ConfigStore::open(&mut dev, REGION).expect("reopen");
    assert_eq!(s.value::<Vm>("VM/OpaqueRef:1").expect("decode"), Some(vm));
    assert!(s.value::<Vm>("VM/OpaqueRef:2").is_err());
    assert_eq!(s.with_prefix("VM/").count(), 2);
    assert_eq!(s.schema_version(), 3);
}

#[test]
fn a_batch_larger_than_the_journal_is_refused_and_nothing_changes() {
    let mut dev = fresh();
    let mut s = ConfigStore::open(&mut dev, REGION).expect("open");
    s.put(&mut dev, "a", b"1").expect("put");
    let err = s
        .put(&mut dev, "big", &vec![0u8; 60 * 512])
        .expect_err("too big");
    assert!(matches!(
        err,
        StoreError::Journal(JournalError::Full { .. })
    ));
    assert_eq!(s.len(), 1);
    let s = ConfigStore::open(&mut dev, REGION).expect("reopen");
    assert_eq!(s.get("a"), Some(&b"1"[..]));
    assert_eq!(s.len(), 1);
}

/// Power loss at every byte of a random workload that compacts several
/// times: the store opens with the records of the last completed commit
/// (or of the one in flight, if it had landed completely).
#[test]
fn power_loss_at_every_byte_keeps_a_committed_prefix() {
    // A small journal, so 40 commits compact several times.
    const REGION: Region = Region {
        start_lba: 8,
        blocks: 40,
    };
    let mut d = MemBlockDevice::new(512, 50);
    ConfigStore::format(&mut d, REGION, 42).expect("format");
    let base = CrashDevice::new(d, None);
    let mut full = base.clone();
    let mut store = ConfigStore::open(&mut full, REGION).expect("open");
    let all = workload(&mut full, &mut store, 99, 40);
    assert_eq!(all.len(), 41);
    assert!(
        store.journal.generation() > 2,
        "the workload compacts twice"
    );
    for budget in 0..full.written {
        let mut dev = CrashDevice::new(base.inner.clone(), Some(budget));
        let mut store = ConfigStore::open(&mut dev, REGION).expect("open");
        let models = workload(&mut dev, &mut store, 99, 40);
        let done = models.len() - 1;
        let mut disk = dev.inner;
        let got = state(
            &ConfigStore::open(&mut disk, REGION)
                .unwrap_or_else(|e| panic!("budget {budget}: {e}")),
        );
        assert!(
            got == models[done] || all.get(done + 1) == Some(&got),
            "budget {budget}: not the state after commit {done} or {}",
            done + 1
        );
    }
}

#[test]
fn damage_is_refused_then_salvaged() {
    let mut dev = fresh();
    let mut s = ConfigStore::open(&mut dev, REGION).expect("open");
    for i in 0..6 {
        s.put(&mut dev, &format!("k{i}"), &[i as u8; 100])
            .expect("put");
    }
    // Frame 2 (the third put) starts 2 header blocks + 2 frames into area 0.
    let at = (REGION.start_lba as usize + 2 + 2) * 512 + 40;
    dev.inner.bytes_mut()[at] ^= 0x10;
    let err = ConfigStore::open(&mut dev, REGION).expect_err("damage");
    assert!(matches!(
        err,
        StoreError::Journal(JournalError::Corrupt { .. })
    ));
    let (mut s, report) = ConfigStore::open_salvage(&mut dev, REGION).expect("salvage");
    assert!(report.salvaged_at.is_some());
    assert_eq!(s.len(), 2);
    s.put(&mut dev, "new", b"v").expect("put after salvage");
    let s = ConfigStore::open(&mut dev, REGION).expect("reopen");
    assert_eq!(s.len(), 3);
}

/// Power loss with a volatile write cache at every write (unflushed blocks
/// land in any subset): the store still opens with a committed prefix.
#[test]
fn power_loss_with_a_write_cache_keeps_a_committed_prefix() {
    use crate::crash::CacheCrashDevice;
    const REGION: Region = Region {
        start_lba: 8,
        blocks: 40,
    };
    let mut d = MemBlockDevice::new(512, 50);
    ConfigStore::format(&mut d, REGION, 42).expect("format");
    let mut full = CrashDevice::new(d.clone(), None);
    let mut store = ConfigStore::open(&mut full, REGION).expect("open");
    let all = workload(&mut full, &mut store, 7, 40);
    assert!(store.journal.generation() > 2, "the workload compacts");
    for crash_at in 0..full.write_starts.len() {
        for seed in 1..4u64 {
            let mut dev = CacheCrashDevice::new(d.clone(), crash_at, seed * 0x9e37);
            let mut store = ConfigStore::open(&mut dev, REGION).expect("open");
            let mut rng = Rng(7);
            let mut done = 0;
            for _ in 0..40 {
                let b = random_batch(&mut rng);
                if store.commit(&mut dev, b.clone()).is_err() {
                    break;
                }
                done += 1;
            }
            assert!(dev.crashed, "write {crash_at}");
            let mut disk = dev.durable;
            let got = state(
                &ConfigStore::open(&mut disk, REGION)
                    .unwrap_or_else(|e| panic!("write {crash_at} seed {seed}: {e}")),
            );
            assert!(
                got == all[done] || all.get(done + 1) == Some(&got),
                "write {crash_at} seed {seed}"
            );
        }
    }
}
