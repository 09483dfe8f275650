//! The disk server's modes without a target: which requests take the fast
//! path, when a batch may start, and when sessions are (re)started.

use alloc::string::String;
use alloc::vec;

use storage::channel::DiskGeometry;

use super::*;
use crate::iscsi::fast::DiskRun;
use crate::iscsi::fast::tests::extents;
use crate::iscsi::{Credentials, Portal};

const MIB: u64 = 1 << 20;

fn geometry() -> DiskGeometry {
    DiskGeometry {
        block_size: 512,
        num_blocks: 4 * MIB / 512,
        read_only: false,
    }
}

fn server() -> (DiskServer, Arc<DiskChannel>) {
    server_on(DiskChannel::new(geometry(), 16))
}

fn server_on(channel: DiskChannel) -> (DiskServer, Arc<DiskChannel>) {
    let channel = Arc::new(channel);
    let template = JobSpec {
        portal: Portal {
            ip: [10, 0, 2, 2],
            port: 3260,
        },
        initiator: String::from("iqn.2026-12.dev.keel:test"),
        target_iqn: Some(String::from("iqn.2026-12.dev.keel:t")),
        chap: Some(Credentials {
            user: String::from("u"),
            secret: String::from("s"),
        }),
        mutual: None,
        work: Work::Sr {
            scsi_id: String::from("360000000000000000e00000000010001"),
            op: SrOp::Scan,
        },
    };
    (
        DiskServer::new(Arc::clone(&channel), [3; 16], template),
        channel,
    )
}

fn submit(channel: &DiskChannel, tag: u64, op: DiskOp) {
    channel.submit(DiskRequest { tag, op }).expect("queued");
}

fn read(lba: u64) -> DiskOp {
    DiskOp::Read { lba, blocks: 1 }
}

fn batch_tags(job: Option<DiskJob>) -> Vec<u64> {
    match job {
        Some(DiskJob::Batch(spec)) => match spec.work {
            Work::Sr {
                op: SrOp::Io { requests, .. },
                ..
            } => requests.iter().map(|r| r.tag).collect(),
            other => panic!("{other:?}"),
        },
        other => panic!("a batch, not {other:?}"),
    }
}

/// The batch's job ends well: every request completes, with `extents`.
fn batch_done(server: &mut DiskServer, tags: &[u64]) {
    let done = tags
        .iter()
        .map(|&tag| DiskCompletion {
            tag,
            result: Ok(Vec::new()),
        })
        .collect();
    server.finished(Ok(JobOutput::Io {
        done,
        extents: extents(),
    }));
}

#[test]
fn requests_go_through_the_sr_until_the_session_is_ready_and_the_extents_known() {
    let (mut server, channel) = server();
    let Some(DiskJob::Session(spec)) = server.next_job() else {
        panic!("the session starts first");
    };
    assert!(matches!(spec.work, Work::Disk { ref path, .. } if path == server.path()));
    assert!(crate::iscsi::is_session(&spec));
    submit(&channel, 1, read(0));
    // Not ready: the SR serves it.
    assert_eq!(batch_tags(server.next_job()), [1]);
    assert!(server.next_job().is_none(), "one batch at a time");
    batch_done(&mut server, &[1]);
    assert_eq!(channel.completion().map(|c| c.tag), Some(1));
    // Ready and the extents known: reads, flushes and writes in place take
    // the fast path; no job.
    let mut run = DiskRun::new(server.path().clone(), 0, 512);
    submit(&channel, 2, read(MIB / 512));
    submit(&channel, 3, DiskOp::Flush);
    submit(
        &channel,
        4,
        DiskOp::Write {
            lba: 8,
            data: vec![1; 512],
        },
    );
    assert!(server.next_job().is_none());
    assert_eq!(run.take_commands().len(), 3);
}

#[test]
fn a_write_that_allocates_waits_for_the_fast_path_then_runs_with_what_follows() {
    let (mut server, channel) = server();
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    submit(&channel, 1, read(0));
    let tags = batch_tags(server.next_job());
    batch_done(&mut server, &tags);
    let mut run = DiskRun::new(server.path().clone(), 0, 512);
    submit(&channel, 2, read(0));
    assert!(server.next_job().is_none());
    let commands = run.take_commands();
    // Copy-on-write of cluster 1, then a read that could go fast.
    submit(
        &channel,
        3,
        DiskOp::Write {
            lba: MIB / 512,
            data: vec![2; 512],
        },
    );
    submit(&channel, 4, read(0));
    assert!(server.next_job().is_none(), "the read in flight first");
    assert!(server.waiting());
    run.completed(commands[0].1, Ok(vec![0; 512]));
    assert_eq!(batch_tags(server.next_job()), [3, 4]);
    assert!(!server.waiting());
}

#[test]
fn what_a_broken_session_did_not_serve_is_served_again_first() {
    let (mut server, channel) = server();
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    submit(&channel, 1, read(0));
    let tags = batch_tags(server.next_job());
    batch_done(&mut server, &tags);
    let mut run = DiskRun::new(server.path().clone(), 0, 512);
    submit(&channel, 2, read(0));
    assert!(server.next_job().is_none());
    assert_eq!(run.take_commands().len(), 1);
    // The connection drops: the job fails, its run gives request 2 back.
    drop(run);
    server.session_ended(Err(JobError::Session(String::from("reset"))));
    submit(&channel, 3, read(0));
    // A new session, and meanwhile the SR serves both, in order.
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    assert_eq!(batch_tags(server.next_job()), [2, 3]);
}

#[test]
fn sessions_that_never_get_ready_are_given_up_then_tried_again_later() {
    let (mut server, channel) = server();
    for _ in 0..MAX_SESSION_FAILURES {
        assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
        server.session_ended(Err(JobError::Unreachable(String::from("refused"))));
    }
    let mut tag = 0;
    for _ in 0..SESSION_RETRY_AFTER_BATCHES {
        tag += 1;
        submit(&channel, tag, read(0));
        let tags = batch_tags(server.next_job());
        batch_done(&mut server, &tags);
        assert!(channel.completion().is_some());
    }
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    server.session_ended(Err(JobError::Unreachable(String::from("refused"))));
    submit(&channel, tag + 1, read(0));
    assert!(matches!(server.next_job(), Some(DiskJob::Batch(_))));
}

#[test]
fn a_failed_batch_forgets_the_extents_and_fails_its_requests() {
    let (mut server, channel) = server();
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    submit(&channel, 1, read(0));
    let tags = batch_tags(server.next_job());
    batch_done(&mut server, &tags);
    let _run = DiskRun::new(server.path().clone(), 0, 512);
    submit(
        &channel,
        2,
        DiskOp::Write {
            lba: 3 * MIB / 512,
            data: vec![1; 512],
        },
    );
    assert_eq!(batch_tags(server.next_job()), [2]);
    server.finished(Err(JobError::Session(String::from("gone"))));
    let _ = channel.completion();
    assert_eq!(
        channel.completion(),
        Some(DiskCompletion {
            tag: 2,
            result: Err(BlockError::Io)
        })
    );
    // Without extents even a read goes through the SR.
    submit(&channel, 3, read(0));
    assert_eq!(batch_tags(server.next_job()), [3]);
}

#[test]
fn detach_fails_what_waits_and_starts_nothing() {
    let (mut server, channel) = server();
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    submit(&channel, 1, read(0));
    let tags = batch_tags(server.next_job());
    submit(&channel, 2, read(0));
    assert!(server.next_job().is_none());
    server.close();
    assert!(channel.is_closed());
    assert_eq!(
        channel.completion(),
        Some(DiskCompletion {
            tag: 2,
            result: Err(BlockError::Io)
        })
    );
    batch_done(&mut server, &tags);
    assert!(server.next_job().is_none());
}

#[test]
fn a_discard_runs_through_the_sr_like_an_allocating_write() {
    let (mut server, channel) = server_on(DiskChannel::new(geometry(), 16).with_discard(8));
    assert!(matches!(server.next_job(), Some(DiskJob::Session(_))));
    submit(&channel, 1, DiskOp::Discard { lba: 0, blocks: 8 });
    submit(&channel, 2, read(0));
    let job = server.next_job();
    let Some(DiskJob::Batch(spec)) = &job else {
        panic!("a batch, not {job:?}");
    };
    let Work::Sr {
        op: SrOp::Io { requests, .. },
        ..
    } = &spec.work
    else {
        panic!("{:?}", spec.work);
    };
    assert_eq!(
        requests[0].op,
        crate::iscsi::IoOp::Discard { lba: 0, blocks: 8 }
    );
    assert_eq!(batch_tags(job), [1, 2]);
}
