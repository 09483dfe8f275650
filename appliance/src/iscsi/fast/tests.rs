use alloc::collections::BTreeMap;

use storage::channel::DiskGeometry;
use storage::sr::Extent;

use super::*;

const MIB: u64 = 1 << 20;

/// Clusters 0 (owned, at 10 MiB) and 1 (a base's, at 20 MiB) of a 4 MiB
/// VDI (the disk server's tests use it too).
pub(crate) fn extents() -> VdiExtents {
    let mut clusters = BTreeMap::new();
    clusters.insert(
        0,
        Extent {
            offset: 10 * MIB,
            owned: true,
        },
    );
    clusters.insert(
        1,
        Extent {
            offset: 20 * MIB,
            owned: false,
        },
    );
    VdiExtents {
        cluster_size: MIB as u32,
        virtual_size: 4 * MIB,
        read_only: false,
        clusters,
    }
}

fn channel() -> Arc<DiskChannel> {
    Arc::new(DiskChannel::new(
        DiskGeometry {
            block_size: 512,
            num_blocks: 4 * MIB / 512,
            read_only: false,
        },
        16,
    ))
}

#[test]
fn reads_map_to_clusters_and_zeros() {
    let ext = extents();
    // 1 KiB before the end of cluster 1, into unallocated cluster 2.
    let lba = (2 * MIB - 1024) / 512;
    let steps = plan(&DiskOp::Read { lba, blocks: 4 }, &ext).expect("a fast read");
    assert_eq!(
        steps,
        [
            Step::Read {
                at: 20 * MIB + MIB - 1024,
                len: 1024,
                to: 0
            },
            Step::Zeros {
                len: 1024,
                to: 1024
            },
        ]
    );
    assert_eq!(
        plan(
            &DiskOp::Read {
                lba: 4 * MIB / 512,
                blocks: 1
            },
            &ext
        ),
        None,
        "beyond the VDI"
    );
}

#[test]
fn only_writes_to_owned_clusters_take_the_fast_path() {
    let ext = extents();
    let write = |lba: u64, len: usize| DiskOp::Write {
        lba,
        data: vec![7; len],
    };
    assert_eq!(
        plan(&write(2, 1024), &ext),
        Some(vec![Step::Write {
            at: 10 * MIB + 1024,
            len: 1024,
            from: 0
        }])
    );
    // Into a base's cluster (copy-on-write), across into it, or into an
    // unallocated one (allocation): the SR's job.
    assert_eq!(plan(&write(MIB / 512, 512), &ext), None);
    assert_eq!(plan(&write(MIB / 512 - 1, 1024), &ext), None);
    assert_eq!(plan(&write(3 * MIB / 512, 512), &ext), None);
    let ro = VdiExtents {
        read_only: true,
        ..extents()
    };
    assert_eq!(plan(&write(2, 512), &ro), None);
    assert_eq!(plan(&DiskOp::Flush, &ext), Some(vec![Step::Sync]));
}

#[test]
fn a_run_completes_requests_as_their_commands_complete() {
    let ch = channel();
    let path = DiskPath::new(Arc::clone(&ch));
    let ext = extents();
    let read = DiskRequest {
        tag: 1,
        op: DiskOp::Read {
            lba: (2 * MIB - 1024) / 512,
            blocks: 4,
        },
    };
    let zeros = DiskRequest {
        tag: 2,
        op: DiskOp::Read {
            lba: 3 * MIB / 512,
            blocks: 1,
        },
    };
    let write = DiskRequest {
        tag: 3,
        op: DiskOp::Write {
            lba: 0,
            data: vec![9; 512],
        },
    };
    let mut run = DiskRun::new(path.clone(), 1 << 48, 512);
    assert!(path.shared.lock().ready());
    for r in [read, zeros, write] {
        let steps = plan(&r.op, &ext).expect("fast");
        path.shared.lock().push(Planned { request: r, steps });
    }
    let commands = run.take_commands();
    // The read of zeros needs no command and completes at once.
    assert_eq!(commands.len(), 2);
    assert_eq!(
        ch.completion(),
        Some(DiskCompletion {
            tag: 2,
            result: Ok(vec![0; 512])
        })
    );
    let (read_cmd, read_of) = &commands[0];
    assert_eq!(read_cmd.cdb, scsi::read_16((21 * MIB - 1024) / 512, 2));
    assert_eq!(read_cmd.transfer, DataTransfer::Read(1024));
    let (write_cmd, write_of) = &commands[1];
    assert_eq!(write_cmd.cdb, scsi::write_16(10 * MIB / 512, 1));
    assert_eq!(write_cmd.transfer, DataTransfer::Write(vec![9; 512]));
    assert!(!path.shared.lock().idle());
    run.completed(*write_of, Err(()));
    assert_eq!(
        ch.completion(),
        Some(DiskCompletion {
            tag: 3,
            result: Err(BlockError::Io)
        })
    );
    run.completed(*read_of, Ok(vec![5; 1024]));
    let mut want = vec![5u8; 1024];
    want.extend([0u8; 1024]);
    assert_eq!(
        ch.completion(),
        Some(DiskCompletion {
            tag: 1,
            result: Ok(want)
        })
    );
    assert!(path.shared.lock().idle());
    assert_eq!(run.bytes_read, 1024);
    assert_eq!(run.bytes_written, 0);
}

#[test]
fn a_broken_run_gives_back_what_it_did_not_serve_in_order() {
    let ch = channel();
    let path = DiskPath::new(Arc::clone(&ch));
    let ext = extents();
    let req = |tag| DiskRequest {
        tag,
        op: DiskOp::Read { lba: 0, blocks: 1 },
    };
    let mut run = DiskRun::new(path.clone(), 1 << 48, 512);
    for tag in [1, 2] {
        let r = req(tag);
        let steps = plan(&r.op, &ext).expect("fast");
        path.shared.lock().push(Planned { request: r, steps });
    }
    let commands = run.take_commands();
    assert_eq!(commands.len(), 2);
    run.completed(commands[0].1, Ok(vec![1; 512]));
    assert_eq!(ch.completion().map(|c| c.tag), Some(1));
    // Queued after the commands went out, never taken.
    let r = req(3);
    let steps = plan(&r.op, &ext).expect("fast");
    path.shared.lock().push(Planned { request: r, steps });
    drop(run);
    let mut shared = path.shared.lock();
    assert!(!shared.ready());
    assert!(shared.idle());
    let back: Vec<u64> = shared.take_returned().iter().map(|r| r.tag).collect();
    assert_eq!(back, [2, 3]);
    assert_eq!(ch.completion(), None);
}

#[test]
fn a_detached_disk_fails_what_was_queued_and_its_run_finishes() {
    let ch = channel();
    let path = DiskPath::new(Arc::clone(&ch));
    let mut run = DiskRun::new(path.clone(), 1 << 48, 512);
    path.shared.lock().push(Planned {
        request: DiskRequest {
            tag: 4,
            op: DiskOp::Flush,
        },
        steps: vec![Step::Sync],
    });
    path.shared.lock().close();
    assert!(run.take_commands().is_empty());
    assert_eq!(
        ch.completion().map(|c| (c.tag, c.result)),
        Some((4, Err(BlockError::Io)))
    );
    assert!(run.finished());
}

#[test]
fn paths_are_equal_only_to_their_clones() {
    let ch = channel();
    let a = DiskPath::new(Arc::clone(&ch));
    assert_eq!(a, a.clone());
    assert_ne!(a, DiskPath::new(ch));
}
