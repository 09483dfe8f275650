//! The full-feature machine against a scripted target.

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::iscsi::pdu::{DataIn, NopIn, R2t, ScsiResponse, TextResponse};

fn outcome(params: SessionParams, max_cmd_sn: u32) -> LoginOutcome {
    LoginOutcome {
        tsih: 1,
        isid: [0xc0, 0, 0, 0, 0, 1],
        cmd_sn: 5,
        exp_stat_sn: 100,
        exp_cmd_sn: 5,
        max_cmd_sn,
        params,
    }
}

fn tgt_params() -> SessionParams {
    SessionParams {
        initial_r2t: false,
        immediate_data: true,
        target_max_recv_data_segment_length: 8192,
        our_max_recv_data_segment_length: 262_144,
        first_burst_length: 65_536,
        max_burst_length: 262_144,
        ..SessionParams::default()
    }
}

fn drain(s: &mut Session) -> Vec<(Repr, Vec<u8>)> {
    let bytes = s.transmit().to_vec();
    s.transmitted(bytes.len());
    let mut dec = Decoder::new(1 << 24);
    dec.set_digests(s.core.digests);
    dec.feed(&bytes);
    let mut v = Vec::new();
    while let Some(f) = dec.next_frame() {
        let f = f.expect("valid");
        v.push((f.repr, f.data.to_vec()));
    }
    assert_eq!(dec.buffered(), 0);
    v
}

fn to_wire(s: &Session, repr: Repr, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pdu::encode(&mut out, &repr, data, s.core.digests).expect("encode");
    out
}

fn response(itt: u32, stat_sn: u32, status: u8, max_cmd_sn: u32) -> Repr {
    Repr::ScsiResponse(ScsiResponse {
        bidi_overflow: false,
        bidi_underflow: false,
        overflow: false,
        underflow: false,
        response: 0,
        status,
        itt,
        snack_tag: 0,
        stat_sn,
        exp_cmd_sn: 6,
        max_cmd_sn,
        exp_data_sn: 0,
        bidi_residual: 0,
        residual: 0,
    })
}

fn read_cmd(len: usize) -> Command {
    Command {
        lun: 0,
        cdb: crate::scsi::read_16(0, (len / 512) as u32),
        transfer: DataTransfer::Read(len as u32),
    }
}

fn write_cmd(len: usize) -> Command {
    Command {
        lun: 1 << 48,
        cdb: crate::scsi::write_16(0, (len / 512) as u32),
        transfer: DataTransfer::Write((0..len).map(|i| (i % 251) as u8).collect()),
    }
}

#[test]
fn write_segments_to_the_targets_mrdsl_with_immediate_unsolicited_and_r2t_data() {
    for digests in [false, true] {
        let mut p = tgt_params();
        p.header_digest = digests;
        p.data_digest = digests;
        let mut s = Session::new(&outcome(p, 40), Timers::default(), 1, 0);
        let len = 200 * 1024;
        let tag = s.submit(write_cmd(len)).expect("submit");
        let pdus = drain(&mut s);
        let Repr::ScsiCommand(c) = pdus[0].0 else {
            panic!("command first")
        };
        assert!(c.write && !c.final_, "unsolicited Data-Out follows");
        assert_eq!(
            (c.cmd_sn, c.exp_stat_sn, c.expected_len),
            (5, 100, len as u32)
        );
        assert_eq!(pdus[0].1.len(), 8192, "immediate data cut to MRDSL");
        // Unsolicited Data-Out up to FirstBurstLength, 8 KiB each.
        let outs: Vec<_> = pdus[1..].iter().collect();
        assert_eq!(outs.len(), 7);
        for (i, (r, d)) in outs.iter().enumerate() {
            let Repr::DataOut(o) = r else {
                panic!("Data-Out")
            };
            assert_eq!(o.ttt, RESERVED_TAG);
            assert_eq!(o.data_sn, i as u32);
            assert_eq!(o.offset as usize, 8192 * (i + 1));
            assert_eq!(o.final_, i == 6);
            assert!(d.len() <= 8192);
        }
        // The target asks for the next 64 KiB.
        let r2t = Repr::R2t(R2t {
            lun: 1 << 48,
            itt: tag.0,
            ttt: 0x77,
            stat_sn: 100,
            exp_cmd_sn: 6,
            max_cmd_sn: 40,
            r2t_sn: 0,
            offset: 65_536,
            desired_len: 65_536,
        });
        let w = to_wire(&s, r2t, &[]);
        s.receive(&w, 1).expect("r2t");
        let pdus = drain(&mut s);
        assert_eq!(pdus.len(), 8);
        let mut got = Vec::new();
        for (i, (r, d)) in pdus.iter().enumerate() {
            let Repr::DataOut(o) = r else {
                panic!("Data-Out")
            };
            assert_eq!((o.ttt, o.data_sn, o.final_), (0x77, i as u32, i == 7));
            assert_eq!(o.offset as usize, 65_536 + 8192 * i);
            got.extend_from_slice(d);
        }
        let expect: Vec<u8> = (65_536..131_072).map(|i| (i % 251) as u8).collect();
        assert_eq!(got, expect);
        // R2T beyond the buffer is a protocol error.
        let bad = Repr::R2t(R2t {
            offset: len as u32,
            ttt: 0x78,
            ..match r2t {
                Repr::R2t(r) => r,
                _ => unreachable!(),
            }
        });
        let w = to_wire(&s, bad, &[]);
        assert!(matches!(s.receive(&w, 2), Err(SessionError::Protocol(_))));
        assert_eq!(s.submit(write_cmd(512)), Err(SessionError::Closed));
    }
}

#[test]
fn initial_r2t_without_immediate_data_sends_a_bare_command() {
    let p = SessionParams {
        initial_r2t: true,
        immediate_data: false,
        ..tgt_params()
    };
    let mut s = Session::new(&outcome(p, 40), Timers::default(), 1, 0);
    s.submit(write_cmd(4096)).expect("submit");
    let pdus = drain(&mut s);
    assert_eq!(pdus.len(), 1);
    let Repr::ScsiCommand(c) = pdus[0].0 else {
        panic!()
    };
    assert!(c.final_ && pdus[0].1.is_empty());
}

#[test]
fn cmdsn_window_holds_commands_until_it_opens() {
    // MaxCmdSN = CmdSN + 1: two commands may go.
    let mut s = Session::new(&outcome(tgt_params(), 6), Timers::default(), 1, 0);
    let read = || Command {
        lun: 0,
        cdb: crate::scsi::read_16(0, 1),
        transfer: DataTransfer::Read(512),
    };
    let t1 = s.submit(read()).expect("1");
    s.submit(read()).expect("2");
    s.submit(read()).expect("3");
    assert_eq!(drain(&mut s).len(), 2);
    assert!(!s.window_open());
    // A stale update (MaxCmdSN < ExpCmdSN - 1) is ignored.
    let mut stale = response(t1.0, 100, 0, 2);
    if let Repr::ScsiResponse(r) = &mut stale {
        r.exp_cmd_sn = 7;
    }
    let w = to_wire(&s, stale, &[]);
    s.receive(&w, 1).expect("response");
    assert_eq!(drain(&mut s).len(), 0);
    assert!(matches!(
        s.next_event(),
        Some(Event::Command { tag, result: Ok(CommandResult { status: 0, .. }) }) if tag == t1
    ));
    let (_, exp_stat_sn, _, _) = s.sequence_numbers();
    assert_eq!(exp_stat_sn, 101);
    // The window opens: the third command goes with CmdSN 7.
    let w = to_wire(
        &s,
        Repr::NopIn(NopIn {
            lun: 0,
            itt: RESERVED_TAG,
            ttt: RESERVED_TAG,
            stat_sn: 101,
            exp_cmd_sn: 7,
            max_cmd_sn: 30,
        }),
        &[],
    );
    s.receive(&w, 2).expect("nop-in");
    let pdus = drain(&mut s);
    assert_eq!(pdus.len(), 1, "no reply to a NOP-In without TTT");
    let Repr::ScsiCommand(c) = pdus[0].0 else {
        panic!()
    };
    assert_eq!(c.cmd_sn, 7);
}

#[test]
fn cmdsn_window_across_wraparound() {
    let mut o = outcome(tgt_params(), 2);
    o.cmd_sn = u32::MAX - 1;
    o.exp_cmd_sn = u32::MAX - 1;
    let mut s = Session::new(&o, Timers::default(), 1, 0);
    for _ in 0..6 {
        s.submit(Command {
            lun: 0,
            cdb: [0; 16],
            transfer: DataTransfer::None,
        })
        .expect("submit");
    }
    let sns: Vec<u32> = drain(&mut s)
        .iter()
        .map(|(r, _)| match r {
            Repr::ScsiCommand(c) => c.cmd_sn,
            _ => panic!(),
        })
        .collect();
    assert_eq!(sns, vec![u32::MAX - 1, u32::MAX, 0, 1, 2]);
}

#[test]
fn target_nop_in_is_answered_and_pings_time_out() {
    let timers = Timers {
        nop_interval_ms: 1000,
        nop_timeout_ms: 500,
        command_timeout_ms: 0,
        ..Timers::default()
    };
    let mut s = Session::new(&outcome(tgt_params(), 40), timers, 1, 0);
    let w = to_wire(
        &s,
        Repr::NopIn(NopIn {
            lun: 3 << 48,
            itt: RESERVED_TAG,
            ttt: 0xabc,
            stat_sn: 100,
            exp_cmd_sn: 5,
            max_cmd_sn: 40,
        }),
        &[],
    );
    s.receive(&w, 10).expect("nop-in");
    let pdus = drain(&mut s);
    let Repr::NopOut(n) = pdus[0].0 else { panic!() };
    assert!(n.immediate);
    assert_eq!(
        (n.itt, n.ttt, n.lun, n.cmd_sn),
        (RESERVED_TAG, 0xabc, 3 << 48, 5)
    );
    // Idle: a ping after the interval, failure after the timeout.
    assert_eq!(s.poll(500), Ok(Some(1010)));
    assert_eq!(s.poll(1010), Ok(Some(1510)));
    let pdus = drain(&mut s);
    let Repr::NopOut(ping) = pdus[0].0 else {
        panic!()
    };
    assert_eq!(ping.ttt, RESERVED_TAG);
    assert_ne!(ping.itt, RESERVED_TAG);
    // Answered: the timer re-arms.
    let w = to_wire(
        &s,
        Repr::NopIn(NopIn {
            lun: 0,
            itt: ping.itt,
            ttt: RESERVED_TAG,
            stat_sn: 100,
            exp_cmd_sn: 5,
            max_cmd_sn: 40,
        }),
        &[],
    );
    s.receive(&w, 1200).expect("pong");
    assert_eq!(s.poll(1300), Ok(Some(2200)));
    s.poll(2200).expect("second ping");
    assert_eq!(s.poll(2700), Err(SessionError::NopTimeout));
}

#[test]
fn reads_collect_data_in_with_status_and_sense() {
    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    let tag = s
        .submit(Command {
            lun: 0,
            cdb: crate::scsi::inquiry(None, 96),
            transfer: DataTransfer::Read(96),
        })
        .expect("submit");
    drain(&mut s);
    let data_in = |offset: u32, status: bool| {
        Repr::DataIn(DataIn {
            final_: status,
            ack: false,
            overflow: false,
            underflow: status,
            has_status: status,
            status: 0,
            lun: 0,
            itt: tag.0,
            ttt: RESERVED_TAG,
            stat_sn: 100,
            exp_cmd_sn: 6,
            max_cmd_sn: 40,
            data_sn: 0,
            offset,
            residual: if status { 60 } else { 0 },
        })
    };
    let mut w = to_wire(&s, data_in(0, false), &[1u8; 20]);
    w.extend(to_wire(&s, data_in(20, true), &[2u8; 16]));
    // Arrives in odd pieces.
    for c in w.chunks(13) {
        s.receive(c, 1).expect("data-in");
    }
    let Some(Event::Command { result: Ok(r), .. }) = s.next_event() else {
        panic!("completion")
    };
    assert_eq!(r.data.len(), 36, "truncated by the residual");
    assert_eq!(&r.data[..20], &[1u8; 20]);
    assert_eq!(r.residual_underflow, 60);

    // CHECK CONDITION with sense data in the SCSI Response.
    let tag = s
        .submit(Command {
            lun: 0,
            cdb: crate::scsi::read_16(1 << 40, 1),
            transfer: DataTransfer::Read(512),
        })
        .expect("submit");
    let mut sense = vec![0u8, 18, 0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0];
    sense.resize(20, 0);
    let w = to_wire(&s, response(tag.0, 101, 2, 40), &sense);
    s.receive(&w, 2).expect("response");
    let Some(Event::Command { result: Ok(r), .. }) = s.next_event() else {
        panic!("completion")
    };
    let e = crate::scsi::check(r.status, &r.sense).expect_err("check condition");
    assert_eq!(e.sense_key(), Some(crate::scsi::sense_key::ILLEGAL_REQUEST));

    // Data-In beyond the expected length is refused.
    let tag = s
        .submit(Command {
            lun: 0,
            cdb: [0; 16],
            transfer: DataTransfer::Read(8),
        })
        .expect("submit");
    let mut bad = data_in(4, false);
    if let Repr::DataIn(d) = &mut bad {
        d.itt = tag.0;
    }
    let w = to_wire(&s, bad, &[0u8; 8]);
    assert!(matches!(s.receive(&w, 3), Err(SessionError::Protocol(_))));
    let unfinished = s.into_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].1.transfer, DataTransfer::Read(8));
}

#[test]
fn unknown_task_and_target_failure() {
    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    let tag = s
        .submit(Command {
            lun: 0,
            cdb: [0; 16],
            transfer: DataTransfer::None,
        })
        .expect("submit");
    let mut r = response(tag.0, 100, 0, 40);
    if let Repr::ScsiResponse(x) = &mut r {
        x.response = 1;
    }
    let w = to_wire(&s, r, &[]);
    s.receive(&w, 1).expect("response");
    assert!(matches!(
        s.next_event(),
        Some(Event::Command {
            result: Err(CommandError::TargetFailure(1)),
            ..
        })
    ));
    let w = to_wire(&s, response(999, 101, 0, 40), &[]);
    assert_eq!(s.receive(&w, 1), Err(SessionError::UnknownTask(999)));
}

#[test]
fn send_targets_follows_continuation() {
    let mut s = Session::new(
        &outcome(SessionParams::default(), 40),
        Timers::default(),
        1,
        0,
    );
    let tag = s.send_targets().expect("send targets");
    let pdus = drain(&mut s);
    let Repr::TextRequest(t) = pdus[0].0 else {
        panic!()
    };
    assert!(t.final_ && t.ttt == RESERVED_TAG);
    assert_eq!(pdus[0].1, b"SendTargets=All\0");
    let part = |cont: bool, ttt: u32, stat_sn: u32| {
        Repr::TextResponse(TextResponse {
            final_: !cont,
            cont,
            lun: 0,
            itt: tag.0,
            ttt,
            stat_sn,
            exp_cmd_sn: 7,
            max_cmd_sn: 40,
        })
    };
    let body = b"TargetName=iqn.2026-11.dev.keel:t1\0TargetAddress=127.0.0.1:3260,1\0";
    let (a, b) = body.split_at(30);
    let w = to_wire(&s, part(true, 0x55, 100), a);
    s.receive(&w, 1).expect("part 1");
    let pdus = drain(&mut s);
    let Repr::TextRequest(t2) = pdus[0].0 else {
        panic!()
    };
    assert_eq!((t2.ttt, t2.itt, t2.cmd_sn), (0x55, tag.0, t.cmd_sn + 1));
    assert!(pdus[0].1.is_empty());
    let w = to_wire(&s, part(false, RESERVED_TAG, 101), b);
    s.receive(&w, 2).expect("part 2");
    let Some(Event::Text { text, .. }) = s.next_event() else {
        panic!("text")
    };
    let targets = crate::iscsi::client::parse_send_targets(&text).expect("parse");
    assert_eq!(targets[0].name, "iqn.2026-11.dev.keel:t1");
    assert_eq!(targets[0].addresses, vec!["127.0.0.1:3260,1"]);
}

#[test]
fn async_logout_request_fails_the_connection_and_logout_completes() {
    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    s.logout().expect("logout");
    let pdus = drain(&mut s);
    let Repr::LogoutRequest(l) = pdus[0].0 else {
        panic!()
    };
    assert_eq!(l.reason, logout_reason::CLOSE_SESSION);
    let w = to_wire(
        &s,
        Repr::LogoutResponse(pdu::LogoutResponse {
            response: 0,
            itt: l.itt,
            stat_sn: 100,
            exp_cmd_sn: 5,
            max_cmd_sn: 40,
            time2wait: 0,
            time2retain: 0,
        }),
        &[],
    );
    s.receive(&w, 1).expect("logout response");
    assert_eq!(s.next_event(), Some(Event::LoggedOut { response: 0 }));
    assert_eq!(s.poll(1_000_000), Ok(None));

    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    let w = to_wire(
        &s,
        Repr::AsyncMessage(pdu::AsyncMessage {
            lun: 0,
            stat_sn: 100,
            exp_cmd_sn: 5,
            max_cmd_sn: 40,
            event: pdu::async_event::LOGOUT_REQUESTED,
            vcode: 0,
            param1: 0,
            param2: 0,
            param3: 0,
        }),
        &[],
    );
    assert_eq!(s.receive(&w, 1), Err(SessionError::TargetLogout(1)));
}

#[test]
fn mutations_never_panic() {
    let mut corpus = Vec::new();
    let s = Session::new(
        &outcome(SessionParams::default(), 40),
        Timers::default(),
        1,
        0,
    );
    corpus.extend(to_wire(&s, response(1, 100, 0, 40), &[0, 4, 0x70, 0, 5, 0]));
    corpus.extend(to_wire(
        &s,
        Repr::R2t(R2t {
            lun: 0,
            itt: 2,
            ttt: 1,
            stat_sn: 101,
            exp_cmd_sn: 3,
            max_cmd_sn: 40,
            r2t_sn: 0,
            offset: 8192,
            desired_len: 8192,
        }),
        &[],
    ));
    corpus.extend(to_wire(
        &s,
        Repr::TextResponse(TextResponse {
            final_: true,
            cont: false,
            lun: 0,
            itt: 3,
            ttt: RESERVED_TAG,
            stat_sn: 102,
            exp_cmd_sn: 4,
            max_cmd_sn: 40,
        }),
        b"TargetName=x\0",
    ));
    fuzz_session(&corpus);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut d = corpus.clone();
        for _ in 0..1 + seed % 4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = seed as usize % d.len();
            d[i] = (seed >> 32) as u8;
        }
        fuzz_session(&d);
    }
}

#[test]
fn abort_task_and_lun_reset_complete_the_victims() {
    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    let read = |lun| Command {
        lun,
        cdb: crate::scsi::read_16(0, 1),
        transfer: DataTransfer::Read(512),
    };
    let a = s.submit(read(1 << 48)).expect("a");
    let b = s.submit(read(1 << 48)).expect("b");
    let c = s.submit(read(2 << 48)).expect("c");
    drain(&mut s);
    let tmf = s.abort_task(a).expect("abort");
    let pdus = drain(&mut s);
    let Repr::TaskMgmtRequest(t) = pdus[0].0 else {
        panic!()
    };
    assert!(t.immediate);
    assert_eq!(
        (t.function, t.ref_itt, t.ref_cmd_sn, t.lun),
        (1, a.0, 5, 1 << 48)
    );
    let resp = |itt: u32, response: u8, stat_sn: u32| {
        Repr::TaskMgmtResponse(pdu::TaskMgmtResponse {
            response,
            itt,
            stat_sn,
            exp_cmd_sn: 8,
            max_cmd_sn: 40,
        })
    };
    let w = to_wire(&s, resp(tmf.0, tmf_response::COMPLETE, 100), &[]);
    s.receive(&w, 1).expect("tmf response");
    assert_eq!(
        s.next_event(),
        Some(Event::Command {
            tag: a,
            result: Err(CommandError::Aborted)
        })
    );
    assert_eq!(
        s.next_event(),
        Some(Event::TaskManagement {
            tag: tmf,
            response: 0
        })
    );
    // LU reset of LUN 1 ends b, not c; "not supported" would end nothing.
    let reset = s.lun_reset(1 << 48).expect("reset");
    drain(&mut s);
    let w = to_wire(&s, resp(reset.0, tmf_response::COMPLETE, 101), &[]);
    s.receive(&w, 2).expect("reset response");
    assert!(
        matches!(s.next_event(), Some(Event::Command { tag, result: Err(CommandError::Aborted) }) if tag == b)
    );
    assert!(matches!(s.next_event(), Some(Event::TaskManagement { .. })));
    assert_eq!(s.in_flight(), 1);
    let abort_c = s.abort_task(c).expect("abort c");
    let w = to_wire(&s, resp(abort_c.0, tmf_response::NOT_SUPPORTED, 102), &[]);
    s.receive(&w, 3).expect("refused");
    assert!(matches!(
        s.next_event(),
        Some(Event::TaskManagement { response: 5, .. })
    ));
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn stuck_commands_escalate_abort_then_lun_reset_then_connection() {
    let timers = Timers {
        nop_interval_ms: 0,
        command_timeout_ms: 1000,
        abort_timeout_ms: 500,
        reset_timeout_ms: 700,
        ..Timers::default()
    };
    let mut s = Session::new(&outcome(tgt_params(), 40), timers, 1, 0);
    let tag = s
        .submit(Command {
            lun: 1 << 48,
            cdb: crate::scsi::read_16(0, 1),
            transfer: DataTransfer::Read(512),
        })
        .expect("submit");
    drain(&mut s);
    assert_eq!(s.poll(10), Ok(Some(1000)));
    assert_eq!(s.poll(1000), Ok(Some(1500)));
    let pdus = drain(&mut s);
    let Repr::TaskMgmtRequest(abort) = pdus[0].0 else {
        panic!()
    };
    assert_eq!(
        (abort.function, abort.ref_itt),
        (tmf_function::ABORT_TASK, tag.0)
    );
    // No second abort for the same command.
    assert_eq!(s.poll(1200), Ok(Some(1500)));
    assert!(drain(&mut s).is_empty());
    // The abort goes unanswered: LU reset.
    assert_eq!(s.poll(1500), Ok(Some(2200)));
    let pdus = drain(&mut s);
    let Repr::TaskMgmtRequest(reset) = pdus[0].0 else {
        panic!()
    };
    assert_eq!(
        (reset.function, reset.lun),
        (tmf_function::LOGICAL_UNIT_RESET, 1 << 48)
    );
    // The reset goes unanswered too: the connection is given up.
    assert_eq!(s.poll(2200), Err(SessionError::TaskManagementTimeout));
    assert_eq!(s.into_unfinished().len(), 1, "the command can be retried");

    // A refused abort escalates at once; a completed reset ends the command.
    let mut s = Session::new(&outcome(tgt_params(), 40), timers, 1, 0);
    let tag = s.submit(write_cmd(512)).expect("submit");
    drain(&mut s);
    s.poll(1000).expect("abort");
    let pdus = drain(&mut s);
    let Repr::TaskMgmtRequest(abort) = pdus[0].0 else {
        panic!()
    };
    let resp = |itt, response, stat_sn| {
        Repr::TaskMgmtResponse(pdu::TaskMgmtResponse {
            response,
            itt,
            stat_sn,
            exp_cmd_sn: 6,
            max_cmd_sn: 40,
        })
    };
    let w = to_wire(&s, resp(abort.itt, tmf_response::NOT_SUPPORTED, 100), &[]);
    s.receive(&w, 1100).expect("refused abort");
    let pdus = drain(&mut s);
    let Repr::TaskMgmtRequest(reset) = pdus[0].0 else {
        panic!()
    };
    assert_eq!(reset.function, tmf_function::LOGICAL_UNIT_RESET);
    let w = to_wire(&s, resp(reset.itt, tmf_response::COMPLETE, 101), &[]);
    s.receive(&w, 1200).expect("reset done");
    let events: Vec<Event> = core::iter::from_fn(|| s.next_event()).collect();
    assert!(events.contains(&Event::Command {
        tag,
        result: Err(CommandError::Aborted)
    }));
    assert_eq!(s.in_flight(), 0);
    assert_eq!(s.poll(5000), Ok(None));
}

#[test]
fn a_nop_reply_followed_by_silence_is_chased_with_a_ping() {
    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    let nop_in = |stat_sn| {
        Repr::NopIn(NopIn {
            lun: 0,
            itt: RESERVED_TAG,
            ttt: 9,
            stat_sn,
            exp_cmd_sn: 5,
            max_cmd_sn: 40,
        })
    };
    // Idle: a reply, no ping.
    let w = to_wire(&s, nop_in(100), &[]);
    s.receive(&w, 1000).expect("nop-in");
    drain(&mut s);
    assert_eq!(s.poll(2000), Ok(Some(6000)));
    assert!(drain(&mut s).is_empty());
    // A command in flight and silence after the reply: ping once.
    s.submit(Command {
        lun: 0,
        cdb: crate::scsi::inquiry(None, 36),
        transfer: DataTransfer::Read(36),
    })
    .expect("submit");
    let w = to_wire(&s, nop_in(100), &[]);
    s.receive(&w, 3000).expect("nop-in");
    drain(&mut s);
    assert_eq!(s.poll(3010), Ok(Some(3000 + UNSTICK_AFTER_NOP_REPLY_MS)));
    s.poll(3000 + UNSTICK_AFTER_NOP_REPLY_MS).expect("unstick");
    let pdus = drain(&mut s);
    let Repr::NopOut(p) = pdus[0].0 else { panic!() };
    assert!(p.itt != RESERVED_TAG && p.ttt == RESERVED_TAG);
    s.poll(3100).expect("no second ping");
    assert!(drain(&mut s).is_empty());
}

#[test]
fn bytes_due_counts_a_header_per_command_sent_plus_the_read_data_still_to_come() {
    for digests in [false, true] {
        let mut p = tgt_params();
        p.header_digest = digests;
        let header = 48 + if digests { 4 } else { 0 };
        // The window (CmdSN 5..=6) lets two commands out; the third waits.
        let mut s = Session::new(&outcome(p, 6), Timers::default(), 1, 0);
        let read = s.submit(read_cmd(4096)).expect("read");
        let write = s.submit(write_cmd(1024)).expect("write");
        s.submit(Command {
            lun: 0,
            cdb: [0; 16],
            transfer: DataTransfer::None,
        })
        .expect("queued behind the window");
        drain(&mut s);
        assert_eq!(s.bytes_due(), 2 * header + 4096, "digests {digests}");

        // The first 1000 bytes of the read arrive, then part of the next PDU.
        let data_in = Repr::DataIn(DataIn {
            final_: false,
            ack: false,
            overflow: false,
            underflow: false,
            has_status: false,
            status: 0,
            lun: 0,
            itt: read.0,
            ttt: RESERVED_TAG,
            stat_sn: 0,
            exp_cmd_sn: 5,
            max_cmd_sn: 6,
            data_sn: 0,
            offset: 0,
            residual: 0,
        });
        s.receive(&to_wire(&s, data_in, &[7u8; 1000]), 1)
            .expect("data-in");
        assert_eq!(s.bytes_due(), 2 * header + 3096);
        let answer = to_wire(&s, response(write.0, 100, 0, 7), &[]);
        s.receive(&answer[..30], 1).expect("part of a response");
        assert_eq!(s.bytes_due(), 2 * header + 3096 - 30);

        // The write's response opens the window: the third command goes out.
        s.receive(&answer[30..], 1).expect("rest of the response");
        drain(&mut s);
        assert_eq!(s.bytes_due(), 2 * header + 3096);
    }
}

/// Feeds `bytes` through `receive_buffer`/`received`, at most `step` at a time.
fn feed_by_buffer(s: &mut Session, mut bytes: &[u8], step: usize) -> Result<(), SessionError> {
    while !bytes.is_empty() {
        let buf = s.receive_buffer();
        let n = buf.len().min(step).min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        s.received(n, 1)?;
    }
    Ok(())
}

fn read_data_in(itt: u32, offset: u32, last: bool) -> Repr {
    Repr::DataIn(DataIn {
        final_: last,
        ack: false,
        overflow: false,
        underflow: false,
        has_status: last,
        status: 0,
        lun: 0,
        itt,
        ttt: RESERVED_TAG,
        stat_sn: 100,
        exp_cmd_sn: 6,
        max_cmd_sn: 40,
        data_sn: offset / (128 * 1024),
        offset,
        residual: 0,
    })
}

#[test]
fn long_data_in_segments_are_read_straight_into_the_commands_buffer() {
    let len = 256 * 1024;
    let pattern: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    for (header_digest, data_digest, step) in [
        (false, false, 100_000),
        (true, false, 7_000),
        (false, true, 100_000),
        (true, true, 65_536),
    ] {
        let mut p = tgt_params();
        p.header_digest = header_digest;
        p.data_digest = data_digest;
        let mut s = Session::new(&outcome(p, 40), Timers::default(), 1, 0);
        let tag = s.submit(read_cmd(len)).expect("submit");
        drain(&mut s);
        let half = len / 2;
        let mut w = to_wire(&s, read_data_in(tag.0, 0, false), &pattern[..half]);
        let second = w.len();
        w.extend(to_wire(
            &s,
            read_data_in(tag.0, half as u32, true),
            &pattern[half..],
        ));

        // The first header and a little data: the rest of the segment is
        // handed out in the command's buffer (never with data digests).
        let header = 48 + if header_digest { 4 } else { 0 };
        feed_by_buffer(&mut s, &w[..header + 10], step).expect("header");
        let buffer = s.receive_buffer().len();
        let placed = !data_digest;
        assert_eq!(
            s.placing.is_some(),
            placed,
            "digests {header_digest}/{data_digest}"
        );
        if placed {
            assert_eq!(buffer, half - 10);
            // Still a lower bound: the rest of this segment, then the next.
            assert_eq!(s.bytes_due(), half - 10 + header + half);
        } else {
            assert!(buffer >= RECEIVE_CHUNK, "{buffer}");
        }
        feed_by_buffer(&mut s, &w[header + 10..second + 30], step).expect("first segment");
        // A slice fed by copy lands in the placement too.
        s.receive(&w[second + 30..second + 5000], 1)
            .expect("copied");
        feed_by_buffer(&mut s, &w[second + 5000..], step).expect("second segment");
        assert!(s.placing.is_none());
        let Some(Event::Command { result: Ok(r), .. }) = s.next_event() else {
            panic!("completion")
        };
        assert!(r.data == pattern, "data {header_digest}/{data_digest}");
        assert_eq!(s.in_flight(), 0);
    }
}

#[test]
fn data_in_that_does_not_qualify_for_placement_takes_the_decoder_path() {
    let len = 256 * 1024;
    let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
    let tag = s.submit(read_cmd(len)).expect("submit");
    drain(&mut s);
    // Out of order (offset 64 KiB first): not placed; the decoder takes it.
    let w = to_wire(&s, read_data_in(tag.0, 65_536, false), &[1u8; 131_072]);
    feed_by_buffer(&mut s, &w[..100], 100).expect("header");
    s.receive_buffer();
    assert!(s.placing.is_none());
    feed_by_buffer(&mut s, &w[100..], 10_000).expect("out-of-order data");
    assert_eq!(s.in_flight(), 1);

    // Beyond the expected length, and for a task nobody sent: errors.
    for (itt, offset) in [(tag.0, 196_608), (999, 0)] {
        let mut s = Session::new(&outcome(tgt_params(), 40), Timers::default(), 1, 0);
        s.submit(read_cmd(len)).expect("submit");
        drain(&mut s);
        let w = to_wire(&s, read_data_in(itt, offset, false), &[1u8; 131_072]);
        let r = feed_by_buffer(&mut s, &w, 10_000);
        assert!(s.placing.is_none());
        assert!(r.is_err(), "itt {itt} offset {offset}");
    }
}
