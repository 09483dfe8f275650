//! The initiator against a real target: `tgtd` on loopback. Each test runs
//! its own tgtd (own portal and control port) and kills it by pid with
//! SIGKILL when the test ends, pass or fail. Every wait has a time limit.

mod common;

use common::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use storage::BlockDevice;
use storage::iscsi::client::ClientError;
use storage::iscsi::login::LoginError;
use storage::iscsi::lun::{IscsiLun, lun_info, report_luns};
use storage::iscsi::params::{DigestOffer, Offer};
use storage::iscsi::tcp::{self};

#[test]
fn discovery_lists_the_target_and_portal() {
    let tgt = Tgtd::start();
    let found = tcp::discover(&tgt.target()).expect("discovery");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, IQN);
    assert_eq!(
        found[0].addresses,
        vec![format!("127.0.0.1:{},1", tgt.port)]
    );
    let portal = &found[0].portals()[0];
    assert_eq!(
        (portal.host.as_str(), portal.port, portal.tpgt),
        ("127.0.0.1", tgt.port, Some(1))
    );
}

#[test]
fn login_without_auth_identifies_the_lun() {
    let tgt = Tgtd::start();
    let mut c = tcp::connect(&tgt.target()).expect("login");
    let p = c.session().params().clone();
    assert_eq!(p.target_max_recv_data_segment_length, 8192, "tgt's MRDSL");
    assert!(!p.header_digest && !p.data_digest);
    assert_eq!(report_luns(&mut c).expect("REPORT LUNS"), vec![0, 1]);
    let info = lun_info(&mut c, 1).expect("LUN info");
    let cap = info.capacity.expect("capacity");
    assert_eq!((cap.bytes(), cap.block_size), (LUN_BYTES, 512));
    assert_eq!(info.inquiry.device_type, 0);
    let limits = info.block_limits.expect("VPD 0xB0 block limits");
    let lun = IscsiLun::open(tcp::connect(&tgt.target()).expect("login"), 1).expect("open");
    let max = lun.max_transfer_bytes();
    assert!(
        (512..=storage::iscsi::lun::MAX_TRANSFER).contains(&max),
        "{max}"
    );
    if limits.max_transfer_blocks > 0 {
        assert!(max <= limits.max_transfer_blocks as usize * 512);
    }
    lun.into_client().logout().expect("logout");
    let id = info.scsi_id.expect("VPD 0x83 identifier");
    assert!(id.starts_with('3'), "NAA designator: {id}");
    // Stable: the same again on a new session.
    let mut c2 = tcp::connect(&tgt.target()).expect("second login");
    assert_eq!(lun_info(&mut c2, 1).expect("info").scsi_id, Some(id));
    c.logout().expect("logout");
    c2.logout().expect("logout");
}

#[test]
fn chap_one_way_succeeds_and_a_wrong_secret_is_refused() {
    let tgt = Tgtd::start();
    tgt.account("alice", "alice-secret-12", false);
    let mut t = tgt.target();
    match tcp::connect(&t) {
        Err(ClientError::Login(LoginError::ChapRequired)) => {}
        other => panic!("login without credentials: {other:?}"),
    }
    t.chap = creds("alice", "wrong-secret-12");
    let e = tcp::connect(&t).expect_err("wrong secret");
    assert!(
        matches!(e, ClientError::Login(LoginError::Refused { detail: 1 })),
        "{e:?}"
    );
    assert!(e.to_string().contains("authentication failed"), "{e}");
    t.chap = creds("alice", "alice-secret-12");
    let mut lun = tgt.open(&t);
    lun.write_blocks(0, &[0x5a; 512]).expect("write");
    lun.into_client().logout().expect("logout");
}

#[test]
fn mutual_chap_succeeds_and_a_wrong_target_secret_is_refused() {
    let tgt = Tgtd::start();
    tgt.account("alice", "alice-secret-12", false);
    tgt.account("tgtuser", "target-secret-34", true);
    let mut t = tgt.target();
    t.chap = creds("alice", "alice-secret-12");
    t.mutual = creds("tgtuser", "target-secret-34");
    let c = tcp::connect(&t).expect("mutual CHAP login");
    c.logout().expect("logout");
    t.mutual = creds("tgtuser", "not-the-secret-56");
    let e = tcp::connect(&t).expect_err("impostor target");
    assert!(
        matches!(e, ClientError::Login(LoginError::TargetAuthFailed)),
        "{e:?}"
    );
    assert!(e.to_string().contains("mutual CHAP failed"), "{e}");
}

#[test]
fn our_writes_land_in_the_backing_file_and_file_writes_read_back() {
    let tgt = Tgtd::start();
    let mut lun = tgt.open(&tgt.target());
    let data = pattern(64 * 1024 + 512, 1);
    lun.write_blocks(100, &data).expect("write");
    lun.flush().expect("SYNCHRONIZE CACHE(16)");
    let f = tgt.backing_file();
    assert_eq!(read_backing(&f, 100 * 512, data.len()), data);

    let other = pattern(12 * 512, 2);
    f.write_all_at(&other, 4096 * 512).expect("write backing");
    f.sync_all().expect("sync");
    let mut back = vec![0u8; other.len()];
    lun.read_blocks(4096, &mut back).expect("read");
    assert_eq!(back, other);

    // Beyond the end: refused before anything is sent.
    let blocks = lun.num_blocks();
    assert!(lun.read_blocks(blocks, &mut [0u8; 512]).is_err());
    lun.into_client().logout().expect("logout");
}

#[test]
fn multi_mib_write_is_segmented_to_tgts_8k_mrdsl() {
    let tgt = Tgtd::start();
    // Both paths: immediate + unsolicited data + R2T (our default offer),
    // and R2T only (InitialR2T=Yes, no immediate data).
    // tgt defaults to InitialR2T=Yes (the OR result wins): allow unsolicited
    // data on the target side so both paths are exercised.
    tgt.admin(&[
        "--op",
        "update",
        "--mode",
        "target",
        "--tid",
        "1",
        "-n",
        "InitialR2T",
        "-v",
        "No",
    ]);
    for (i, (initial_r2t, immediate_data)) in [(false, true), (true, false)].into_iter().enumerate()
    {
        let mut t = tgt.target();
        t.offer = Offer {
            initial_r2t,
            immediate_data,
            ..Offer::default()
        };
        let mut lun = tgt.open(&t);
        let p = lun.client().session().params().clone();
        assert_eq!(p.initial_r2t, initial_r2t);
        let data = pattern(5 * 1024 * 1024 + 4096, 10 + i as u32);
        let lba = 8 + i as u64 * 2;
        lun.write_blocks(lba, &data).expect("multi-MiB write");
        lun.flush().expect("flush");
        let f = tgt.backing_file();
        assert!(
            read_backing(&f, lba * 512, data.len()) == data,
            "backing file differs"
        );
        let mut back = vec![0u8; data.len()];
        lun.read_blocks(lba, &mut back).expect("read back");
        assert!(back == data, "read back differs");
        lun.into_client().logout().expect("logout");
    }
}

fn digest_round_trip(tgt: &Tgtd, header: DigestOffer, data: DigestOffer, lba: u64) {
    let mut t = tgt.target();
    t.offer = Offer {
        header_digest: header,
        data_digest: data,
        ..Offer::default()
    };
    let mut lun = tgt.open(&t);
    let p = lun.client().session().params().clone();
    let want = |o| !matches!(o, DigestOffer::None | DigestOffer::PreferNone);
    assert_eq!(
        (p.header_digest, p.data_digest),
        (want(header), want(data)),
        "{header:?}/{data:?}"
    );
    let bytes = pattern(1024 * 1024 + 1536, lba as u32);
    lun.write_blocks(lba, &bytes).expect("write");
    let mut back = vec![0u8; bytes.len()];
    lun.read_blocks(lba, &mut back).expect("read");
    assert!(back == bytes, "{header:?}/{data:?}: read back differs");
    assert!(read_backing(&tgt.backing_file(), lba * 512, bytes.len()) == bytes);
    lun.into_client().logout().expect("logout");
}

#[test]
fn every_digest_combination_round_trips() {
    let tgt = Tgtd::start();
    for name in ["HeaderDigest", "DataDigest"] {
        tgt.admin(&[
            "--op",
            "update",
            "--mode",
            "target",
            "--tid",
            "1",
            "-n",
            name,
            "-v",
            "CRC32C,None",
        ]);
    }
    let mut lba = 0;
    for header in [DigestOffer::None, DigestOffer::Crc32c] {
        for data in [DigestOffer::None, DigestOffer::Crc32c] {
            digest_round_trip(&tgt, header, data, lba);
            lba += 4096;
        }
    }
}

#[test]
fn target_requiring_crc32c_gets_it_and_discovery_stays_plain() {
    let tgt = Tgtd::start();
    for name in ["HeaderDigest", "DataDigest"] {
        tgt.admin(&[
            "--op", "update", "--mode", "target", "--tid", "1", "-n", name, "-v", "CRC32C",
        ]);
    }
    // "None,CRC32C" (prefer none) still ends with what the target requires.
    let mut t = tgt.target();
    t.offer.header_digest = DigestOffer::PreferNone;
    t.offer.data_digest = DigestOffer::PreferNone;
    let mut lun = tgt.open(&t);
    let p = lun.client().session().params().clone();
    assert!(p.header_digest && p.data_digest);
    lun.into_client().logout().expect("logout");
    digest_round_trip(&tgt, DigestOffer::Crc32c, DigestOffer::Crc32c, 64);
    // Discovery never negotiates digests (libiscsi #239) and still works.
    assert_eq!(
        tcp::discover(&tgt.target()).expect("discovery")[0].name,
        IQN
    );
}

#[test]
fn target_nop_pings_are_answered() {
    // tgtd pings every second and drops the connection after 2 misses.
    let tgt = Tgtd::start_with("nop_interval=1,nop_count=2");
    let mut c = tcp::connect(&tgt.target()).expect("login");
    c.run_for(4500).expect("idle with target pings");
    // Commands right after our NOP-Out replies are not held up by tgt
    // (see UNSTICK_AFTER_NOP_REPLY_MS): five commands, well under its
    // one-second ping period each.
    let t0 = Instant::now();
    let info = lun_info(&mut c, 1).expect("still logged in");
    assert_eq!(info.capacity.expect("capacity").bytes(), LUN_BYTES);
    c.logout().expect("logout");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn many_commands_in_flight() {
    use storage::iscsi::session::{Command as ScsiCmd, DataTransfer, Event};
    let tgt = Tgtd::start();
    let data = pattern(2 * 1024 * 1024, 3);
    tgt.backing_file().write_all_at(&data, 0).expect("fill");
    let mut c = tcp::connect(&tgt.target()).expect("login");
    // Consumes the UNIT ATTENTION (power on/reset) of a new I_T nexus.
    lun_info(&mut c, 1).expect("LUN info");
    let lun = storage::scsi::lun_to_wire(1);
    let mut tags = std::collections::HashMap::new();
    for i in 0..256u64 {
        let lba = (i * 37) % 4000;
        let tag = c
            .submit(ScsiCmd {
                lun,
                cdb: storage::scsi::read_16(lba, 8),
                transfer: DataTransfer::Read(4096),
            })
            .expect("submit");
        tags.insert(tag, lba);
    }
    assert!(
        c.session().in_flight() > 128,
        "beyond tgt's 128-command window"
    );
    while !tags.is_empty() {
        let Event::Command { tag, result } = c.next_event().expect("event") else {
            continue;
        };
        let r = result.expect("command");
        assert_eq!(r.status, 0);
        let lba = tags.remove(&tag).expect("known tag") as usize;
        assert!(r.data == data[lba * 512..lba * 512 + 4096]);
    }
    c.logout().expect("logout");
}

fn cli(args: &[&str], stdin: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iscsi"));
    cmd.args(args);
    if let Some(p) = stdin {
        cmd.stdin(File::open(p).expect("stdin file"));
    } else {
        cmd.stdin(Stdio::null());
    }
    run_with_timeout(&mut cmd)
}

#[test]
fn cli_discover_ls_write_read_and_errors() {
    let tgt = Tgtd::start();
    tgt.account("alice", "alice-secret-12", false);
    let portal = format!("127.0.0.1:{}", tgt.port);
    let out = cli(&["discover", &portal], None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(IQN));

    let url = format!("iscsi://alice%alice-secret-12@{portal}/{IQN}/1");
    let out = cli(&["ls", &url], None);
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        ls.contains(&format!("lun 1 size={LUN_BYTES} block_size=512")),
        "{ls}"
    );

    let input = tgt.dir.join("in.bin");
    let data = pattern(100_000, 9);
    std::fs::write(&input, &data).expect("input");
    let out = cli(&["write", &url, "--offset", "1000"], Some(&input));
    assert!(out.status.success(), "{out:?}");
    assert!(read_backing(&tgt.backing_file(), 1000, data.len()) == data);
    let out = cli(
        &["read", &url, "--offset", "1000", "--length", "100000"],
        None,
    );
    assert!(
        out.status.success(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data);

    let bad = format!("iscsi://alice%wrong-secret-1@{portal}/{IQN}/1");
    let out = cli(&["ls", &bad], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("wrong-secret"), "no secrets in errors");
    let out = cli(&["ls", "iscsi://nope"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad iSCSI URL"));
}

#[test]
fn session_recovers_when_tgtd_is_killed_and_restarted_mid_stream_of_writes() {
    let tgt = Tgtd::start();
    let mut lun =
        tcp::open_recovering_lun(&tgt.target(), 1, Duration::from_secs(30)).expect("open");
    const CHUNK: usize = 64 * 1024;
    const WRITES: usize = 120;
    let acked = std::sync::Arc::new(AtomicU32::new(0));
    let seen = acked.clone();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        while seen.load(Ordering::SeqCst) < 30 {
            assert!(Instant::now() < deadline, "writes did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        tgt.restart()
    });
    let mut slowest = Duration::ZERO;
    for i in 0..WRITES {
        let data = pattern(CHUNK, 100 + i as u32);
        let t0 = Instant::now();
        // The caller sees no error across the restart.
        lun.write_blocks((i * CHUNK / 512) as u64, &data)
            .unwrap_or_else(|e| panic!("write {i}: {e}: {:?}", lun.last_error()));
        slowest = slowest.max(t0.elapsed());
        acked.fetch_add(1, Ordering::SeqCst);
    }
    let tgt = killer.join().expect("restart thread");
    assert!(lun.recoveries() >= 1, "the session was reinstated");
    eprintln!(
        "recovery: {} reinstatement(s), slowest write {:.2} s (Time2Wait 2 s)",
        lun.recoveries(),
        slowest.as_secs_f64()
    );
    lun.flush().expect("flush after recovery");
    // No acknowledged write is lost.
    let f = tgt.backing_file();
    for i in 0..WRITES {
        let got = read_backing(&f, (i * CHUNK) as u64, CHUNK);
        assert!(got == pattern(CHUNK, 100 + i as u32), "write {i} lost");
    }
    lun.into_client().logout().expect("logout");
}

#[test]
fn task_management_against_tgtd() {
    use storage::iscsi::pdu::tmf_response;
    use storage::iscsi::session::{Command as ScsiCmd, DataTransfer};
    let tgt = Tgtd::start();
    let mut c = tcp::connect(&tgt.target()).expect("login");
    lun_info(&mut c, 1).expect("LUN info");
    let lun = storage::scsi::lun_to_wire(1);
    // Aborting a command that already completed: "task does not exist".
    let tag = c
        .submit(ScsiCmd {
            lun,
            cdb: storage::scsi::read_16(0, 1),
            transfer: DataTransfer::Read(512),
        })
        .expect("submit");
    c.wait(tag).expect("read");
    assert_eq!(
        c.abort_task(tag).expect("abort"),
        tmf_response::TASK_DOES_NOT_EXIST
    );
    assert_eq!(c.lun_reset(lun).expect("LU reset"), tmf_response::COMPLETE);
    // The reset raises a UNIT ATTENTION, which the SCSI layer retries.
    assert!(lun_info(&mut c, 1).expect("after reset").capacity.is_some());
    c.logout().expect("logout");
}

#[test]
fn unmap_on_a_thin_provisioned_lun_releases_blocks() {
    let tgt = Tgtd::start();
    let t = tgt.target();
    let mut lun = tgt.open(&t);
    assert!(!lun.capacity().thin_provisioned);
    assert!(matches!(
        lun.unmap(0, 8),
        Err(storage::iscsi::lun::LunError::Unsupported(_))
    ));
    lun.into_client().logout().expect("logout");
    tgt.admin(&[
        "--op",
        "update",
        "--mode",
        "logicalunit",
        "--tid",
        "1",
        "--lun",
        "1",
        "--params",
        "thin_provisioning=1",
    ]);
    let mut lun = tgt.open(&t);
    assert!(lun.capacity().thin_provisioned);
    let data = pattern(64 * 1024, 77);
    lun.write_blocks(2048, &data).expect("write");
    lun.flush().expect("flush");
    lun.unmap(2048, 64).expect("UNMAP");
    let mut back = vec![0u8; data.len()];
    lun.read_blocks(2048, &mut back).expect("read");
    assert!(
        back[..64 * 512].iter().all(|&b| b == 0),
        "unmapped blocks read as zeros"
    );
    assert!(
        back[64 * 512..] == data[64 * 512..],
        "the rest is untouched"
    );
    assert!(
        read_backing(&tgt.backing_file(), 2048 * 512, 64 * 512)
            .iter()
            .all(|&b| b == 0)
    );
    lun.into_client().logout().expect("logout");
}
