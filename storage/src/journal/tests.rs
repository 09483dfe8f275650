use super::*;
use crate::crash::CrashDevice;
use crate::mem::MemBlockDevice;

const BS: u32 = 512;
const REGION: Region = Region {
    start_lba: 3,
    blocks: 66,
};

fn device() -> MemBlockDevice {
    MemBlockDevice::new(BS, 72)
}

fn payload(i: usize) -> Vec<u8> {
    // Sizes from a few bytes to several blocks.
    let len = (i * 397 + 5) % 1300;
    (0..len).map(|b| (b * 31 + i * 7) as u8).collect()
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// A snapshot of `state` cut into frames differently from the appends.
fn snapshot(state: &[u8], cut: usize) -> Vec<Vec<u8>> {
    state.chunks(cut.max(1)).map(<[u8]>::to_vec).collect()
}

/// The workload: appends with two compactions in between. Returns the
/// logical state (concatenated payloads) after each completed step; stops
/// at the first error.
fn workload(dev: &mut CrashDevice, j: &mut Journal, states: &mut Vec<Vec<u8>>) {
    let mut state = states.last().cloned().unwrap_or_default();
    for i in 0..14 {
        if i == 6 || i == 11 {
            if j.compact(dev, &snapshot(&state, 700 + i)).is_err() {
                return;
            }
        } else {
            let p = payload(i);
            match j.append(dev, &p) {
                Ok(()) => state.extend_from_slice(&p),
                Err(JournalError::Full { .. }) => {
                    // Compact and retry, as an owner does.
                    if j.compact(dev, &snapshot(&state, 900)).is_err() || j.append(dev, &p).is_err()
                    {
                        return;
                    }
                    state.extend_from_slice(&p);
                }
                Err(_) => return,
            }
        }
        states.push(state.clone());
    }
}

fn formatted() -> CrashDevice {
    let mut dev = device();
    Journal::format(&mut dev, REGION, 0xfeed).expect("format");
    CrashDevice::new(dev, None)
}

#[test]
fn appends_and_compactions_survive_reopen() {
    let mut dev = formatted();
    let (mut j, frames, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    assert!(frames.is_empty());
    let mut states = vec![Vec::new()];
    workload(&mut dev, &mut j, &mut states);
    assert_eq!(states.len(), 15);
    let (_, frames, report) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("reopen");
    assert_eq!(&concat(&frames), states.last().expect("state"));
    assert_eq!(report, OpenReport::default());
    assert!(j.generation() > 2, "the workload compacted");
}

#[test]
fn unformatted_region_and_small_region_are_refused() {
    let mut dev = device();
    assert_eq!(
        Journal::open(&mut dev, REGION, Recovery::Strict).err(),
        Some(JournalError::NotFormatted)
    );
    let tiny = Region {
        start_lba: 0,
        blocks: 5,
    };
    assert!(matches!(
        Journal::format(&mut dev, tiny, 1),
        Err(JournalError::RegionTooSmall { .. })
    ));
    let beyond = Region {
        start_lba: 70,
        blocks: 10,
    };
    assert!(matches!(
        Journal::format(&mut dev, beyond, 1),
        Err(JournalError::Block(BlockError::OutOfRange { .. }))
    ));
}

#[test]
fn full_is_reported_before_writing() {
    let mut dev = formatted();
    let (mut j, _, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    let big = vec![1u8; 40 * 512];
    assert!(matches!(
        j.append(&mut dev, &big),
        Err(JournalError::Full { .. })
    ));
    assert_eq!(dev.written, 0);
    j.append(&mut dev, b"small").expect("still usable");
}

#[test]
fn a_reformat_hides_the_old_journal() {
    let mut dev = formatted();
    let (mut j, _, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    for i in 0..5 {
        j.append(&mut dev, &payload(i)).expect("append");
    }
    Journal::format(&mut dev, REGION, 0xbeef).expect("format");
    let (mut j, frames, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    assert!(frames.is_empty());
    // Even under the same id as before, and after compactions.
    for i in 0..3 {
        j.append(&mut dev, &payload(i)).expect("append");
        j.compact(&mut dev, &[payload(i)]).expect("compact");
    }
    Journal::format(&mut dev, REGION, 0xbeef).expect("format");
    let (_, frames, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    assert!(frames.is_empty());
}

/// Power loss at every byte of the workload: the journal opens with the
/// state of the last completed step or, when the step in flight had fully
/// landed, of that step. Then a compaction and an append on the recovered
/// journal must also survive a reopen (a torn compaction's frames must not
/// come back under the retry's generation).
#[test]
fn power_loss_at_every_byte() {
    let base = formatted();
    let mut full = base.clone();
    let (mut j, _, _) = Journal::open(&mut full, REGION, Recovery::Strict).expect("open");
    let mut all = vec![Vec::new()];
    workload(&mut full, &mut j, &mut all);
    let total = full.written;
    assert!(total > 10_000, "workload writes {total} bytes");
    for budget in 0..total {
        let mut dev = CrashDevice::new(base.inner.clone(), Some(budget));
        let (mut j, _, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
        let mut states = vec![Vec::new()];
        workload(&mut dev, &mut j, &mut states);
        assert!(dev.crashed, "budget {budget}");
        let done = states.len() - 1;
        let mut disk = dev.inner;
        let (mut j, frames, _) = Journal::open(&mut disk, REGION, Recovery::Strict)
            .unwrap_or_else(|e| panic!("budget {budget}: {e}"));
        let got = concat(&frames);
        assert!(
            got == states[done] || all.get(done + 1) == Some(&got),
            "budget {budget}: {} bytes recovered, step {done}",
            got.len()
        );
        // One frame: fewer blocks than a torn attempt may have left, so
        // its stale frames lie beyond the retry's end.
        j.compact(&mut disk, &snapshot(&got, usize::MAX))
            .expect("compact");
        j.append(&mut disk, b"after").expect("append");
        let (_, frames, _) = Journal::open(&mut disk, REGION, Recovery::Strict).expect("open");
        let mut want = got;
        want.extend_from_slice(b"after");
        assert_eq!(concat(&frames), want, "budget {budget}");
    }
}

/// A flipped bit anywhere in the region never yields wrong frames: the
/// journal opens with everything (the damage hit a header copy or unused
/// space), without the last frame (the damage looks like a torn append),
/// or refuses with `Corrupt`, and salvage then keeps the prefix.
#[test]
fn bit_flips_are_detected() {
    let mut dev = formatted();
    let (mut j, _, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    let mut states = vec![Vec::new()];
    workload(&mut dev, &mut j, &mut states);
    let want = states.last().expect("state").clone();
    let (_, frames, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    let last_len = frames.last().map_or(0, Vec::len);
    let clean = dev.inner;
    let start = REGION.start_lba as usize * BS as usize;
    let end = start + REGION.blocks as usize * BS as usize;
    let mut corrupt = 0;
    for byte in start..end {
        for bit in [0, 5] {
            let mut d = clean.clone();
            d.bytes_mut()[byte] ^= 1 << bit;
            match Journal::open(&mut d, REGION, Recovery::Strict) {
                Ok((_, frames, _)) => {
                    let got = concat(&frames);
                    assert!(
                        got == want || got[..] == want[..want.len() - last_len],
                        "byte {byte}"
                    );
                }
                Err(JournalError::Corrupt { .. }) => {
                    corrupt += 1;
                    let (_, frames, report) =
                        Journal::open(&mut d, REGION, Recovery::Salvage).expect("salvage");
                    assert!(report.salvaged_at.is_some());
                    assert!(want.starts_with(&concat(&frames)), "byte {byte}");
                }
                Err(e) => panic!("byte {byte}: {e}"),
            }
        }
    }
    assert!(corrupt > 100, "only {corrupt} flips detected as damage");
}

#[test]
fn fuzz_entry_point_survives_garbage() {
    let mut dev = formatted();
    let (mut j, _, _) = Journal::open(&mut dev, REGION, Recovery::Strict).expect("open");
    workload(&mut dev, &mut j, &mut vec![Vec::new()]);
    let image = dev.inner.bytes()[REGION.start_lba as usize * 512..].to_vec();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..300 {
        let mut d = image.clone();
        for _ in 0..(round % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % d.len() as u64) as usize;
            d[at] = (seed >> 32) as u8;
        }
        d.truncate((seed % image.len() as u64) as usize);
        fuzz_journal(&d);
    }
}
