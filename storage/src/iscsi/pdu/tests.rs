use alloc::vec;
use alloc::vec::Vec;

use super::*;

fn samples() -> Vec<Repr> {
    vec![
        Repr::LoginRequest(LoginRequest {
            transit: true,
            cont: false,
            csg: Stage::Security,
            nsg: Stage::Operational,
            version_max: 0,
            version_min: 0,
            isid: [0xc0, 1, 2, 3, 4, 5],
            tsih: 0,
            itt: 7,
            cid: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
        }),
        Repr::LoginResponse(LoginResponse {
            transit: false,
            cont: true,
            csg: Stage::Operational,
            nsg: Stage::Operational,
            version_max: 0,
            version_active: 0,
            isid: [0xc0, 1, 2, 3, 4, 5],
            tsih: 9,
            itt: 7,
            stat_sn: 100,
            exp_cmd_sn: 1,
            max_cmd_sn: 129,
            status_class: 2,
            status_detail: 1,
        }),
        Repr::TextRequest(TextRequest {
            immediate: false,
            final_: true,
            cont: false,
            lun: 0,
            itt: 3,
            ttt: RESERVED_TAG,
            cmd_sn: 5,
            exp_stat_sn: 6,
        }),
        Repr::TextResponse(TextResponse {
            final_: false,
            cont: true,
            lun: 0,
            itt: 3,
            ttt: 0x55,
            stat_sn: 6,
            exp_cmd_sn: 6,
            max_cmd_sn: 40,
        }),
        Repr::ScsiCommand(ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: task_attr::SIMPLE,
            lun: 1 << 48,
            itt: 0x1234,
            expected_len: 4096,
            cmd_sn: 77,
            exp_stat_sn: 78,
            cdb: [0x88, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0],
        }),
        Repr::ScsiResponse(ScsiResponse {
            bidi_overflow: false,
            bidi_underflow: false,
            overflow: false,
            underflow: true,
            response: 0,
            status: 2,
            itt: 0x1234,
            snack_tag: 0,
            stat_sn: 78,
            exp_cmd_sn: 78,
            max_cmd_sn: 200,
            exp_data_sn: 1,
            bidi_residual: 0,
            residual: 512,
        }),
        Repr::DataIn(DataIn {
            final_: true,
            ack: false,
            overflow: false,
            underflow: false,
            has_status: true,
            status: 0,
            lun: 1 << 48,
            itt: 0x1234,
            ttt: RESERVED_TAG,
            stat_sn: 79,
            exp_cmd_sn: 79,
            max_cmd_sn: 201,
            data_sn: 0,
            offset: 8192,
            residual: 0,
        }),
        Repr::DataOut(DataOut {
            final_: false,
            lun: 1 << 48,
            itt: 0x99,
            ttt: 0x42,
            exp_stat_sn: 80,
            data_sn: 3,
            offset: 24576,
        }),
        Repr::R2t(R2t {
            lun: 1 << 48,
            itt: 0x99,
            ttt: 0x42,
            stat_sn: 80,
            exp_cmd_sn: 81,
            max_cmd_sn: 209,
            r2t_sn: 0,
            offset: 65536,
            desired_len: 262_144,
        }),
        Repr::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt: RESERVED_TAG,
            ttt: 0x77,
            cmd_sn: 81,
            exp_stat_sn: 81,
        }),
        Repr::NopIn(NopIn {
            lun: 0,
            itt: RESERVED_TAG,
            ttt: 0x77,
            stat_sn: 81,
            exp_cmd_sn: 81,
            max_cmd_sn: 209,
        }),
        Repr::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function: tmf_function::ABORT_TASK,
            lun: 1 << 48,
            itt: 0x100,
            ref_itt: 0x99,
            cmd_sn: 82,
            exp_stat_sn: 81,
            ref_cmd_sn: 80,
            exp_data_sn: 0,
        }),
        Repr::TaskMgmtResponse(TaskMgmtResponse {
            response: tmf_response::TASK_DOES_NOT_EXIST,
            itt: 0x100,
            stat_sn: 81,
            exp_cmd_sn: 82,
            max_cmd_sn: 210,
        }),
        Repr::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: logout_reason::CLOSE_SESSION,
            itt: 0x101,
            cid: 0,
            cmd_sn: 82,
            exp_stat_sn: 82,
        }),
        Repr::LogoutResponse(LogoutResponse {
            response: 0,
            itt: 0x101,
            stat_sn: 82,
            exp_cmd_sn: 82,
            max_cmd_sn: 210,
            time2wait: 2,
            time2retain: 20,
        }),
        Repr::Reject(Reject {
            reason: 0x09,
            stat_sn: 83,
            exp_cmd_sn: 82,
            max_cmd_sn: 210,
            data_sn: 0,
        }),
        Repr::AsyncMessage(AsyncMessage {
            lun: 0,
            stat_sn: 84,
            exp_cmd_sn: 82,
            max_cmd_sn: 210,
            event: async_event::LOGOUT_REQUESTED,
            vcode: 0,
            param1: 0,
            param2: 2,
            param3: 20,
        }),
    ]
}

fn all_digests() -> [Digests; 4] {
    [
        Digests::default(),
        Digests {
            header: true,
            data: false,
        },
        Digests {
            header: false,
            data: true,
        },
        Digests {
            header: true,
            data: true,
        },
    ]
}

#[test]
fn every_pdu_round_trips_in_every_digest_mode() {
    for digests in all_digests() {
        for repr in samples() {
            for data in [&b""[..], b"a", b"abcd", b"abcde"] {
                let mut out = Vec::new();
                encode(&mut out, &repr, data, digests).expect("encode");
                let mut expect = BHS_LEN + padded(data.len());
                if digests.header {
                    expect += DIGEST_LEN;
                }
                if digests.data && !data.is_empty() {
                    expect += DIGEST_LEN;
                }
                assert_eq!(out.len(), expect, "{repr:?}");
                let mut dec = Decoder::new(1024);
                dec.set_digests(digests);
                // Byte by byte: nothing is returned until the PDU is complete.
                for (i, b) in out.iter().enumerate() {
                    dec.feed(&[*b]);
                    if i + 1 < out.len() {
                        assert!(dec.next_frame().is_none());
                    }
                }
                let f = dec.next_frame().expect("complete").expect("valid");
                assert_eq!(f.repr, repr);
                assert_eq!(f.data, data);
                assert!(dec.next_frame().is_none());
            }
        }
    }
}

#[test]
fn login_request_wire_layout() {
    let mut out = Vec::new();
    encode(&mut out, &samples()[0], b"Key=V\0", Digests::default()).expect("encode");
    assert_eq!(out[0], 0x43, "immediate Login Request");
    assert_eq!(out[1], 0x81, "T, CSG 0, NSG 1");
    assert_eq!(&out[4..8], &[0, 0, 0, 6]);
    assert_eq!(&out[8..14], &[0xc0, 1, 2, 3, 4, 5]);
    assert_eq!(&out[16..20], &[0, 0, 0, 7]);
    assert_eq!(&out[20..22], &[0, 1]);
    assert_eq!(&out[24..28], &[0, 0, 0, 1]);
    assert_eq!(&out[48..54], b"Key=V\0");
    assert_eq!(&out[54..56], &[0, 0], "padding");
}

#[test]
fn rfc3720_scsi_read_pdu_parses_and_digests() {
    // RFC 3720 Appendix B.4: a SCSI READ(10) command PDU and its CRC.
    let mut bhs = [0u8; 48];
    bhs[0] = 0x01;
    bhs[1] = 0xc0;
    bhs[16] = 0x14;
    bhs[22] = 0x04;
    bhs[27] = 0x14;
    bhs[31] = 0x18;
    bhs[32] = 0x28;
    bhs[40] = 0x02;
    let mut wire = bhs.to_vec();
    wire.extend_from_slice(&[0x56, 0x3a, 0x96, 0xd9]);
    let mut dec = Decoder::new(0);
    dec.set_digests(Digests {
        header: true,
        data: true,
    });
    dec.feed(&wire);
    let f = dec.next_frame().expect("complete").expect("valid");
    let Repr::ScsiCommand(c) = f.repr else {
        panic!("not a SCSI command: {:?}", f.repr)
    };
    assert!(c.final_ && c.read && !c.write);
    assert_eq!(c.itt, 0x1400_0000);
    assert_eq!(c.expected_len, 1024);
    assert_eq!((c.cmd_sn, c.exp_stat_sn), (0x14, 0x18));
    assert_eq!(c.cdb[0], 0x28);
}

#[test]
fn digest_and_length_errors() {
    let d = Digests {
        header: true,
        data: true,
    };
    let mut out = Vec::new();
    encode(&mut out, &samples()[6], b"payload", d).expect("encode");
    let mut bad = out.clone();
    bad[20] ^= 1;
    let mut dec = Decoder::new(1024);
    dec.set_digests(d);
    dec.feed(&bad);
    assert!(matches!(
        dec.next_frame(),
        Some(Err(Error::HeaderDigest { .. }))
    ));
    let mut bad = out.clone();
    bad[BHS_LEN + DIGEST_LEN] ^= 1;
    let mut dec = Decoder::new(1024);
    dec.set_digests(d);
    dec.feed(&bad);
    assert!(matches!(
        dec.next_frame(),
        Some(Err(Error::DataDigest { .. }))
    ));
    let mut dec = Decoder::new(4);
    dec.set_digests(d);
    dec.feed(&out);
    assert_eq!(
        dec.next_frame(),
        Some(Err(Error::DataTooLong { len: 7, max: 4 }))
    );
    let mut op = out.clone();
    op[0] = 0x3e;
    op[5..8].copy_from_slice(&[0, 0, 0]);
    let mut dec2 = Decoder::new(1024);
    dec2.feed(&op[..BHS_LEN]);
    assert_eq!(dec2.next_frame(), Some(Err(Error::UnknownOpcode(0x3e))));
    assert!(encode(&mut Vec::new(), &samples()[0], &[], d).is_ok());
    assert_eq!(
        encode_with_ahs(&mut Vec::new(), &samples()[0], &[1, 2, 3], &[], d),
        Err(Error::BadAhs)
    );
}

#[test]
fn ahs_round_trip() {
    let ahs = [0, 5, 1, 0, 0xaa, 0xbb, 0xcc, 0];
    let mut out = Vec::new();
    let d = Digests {
        header: true,
        data: true,
    };
    encode_with_ahs(&mut out, &samples()[4], &ahs, b"xyz", d).expect("encode");
    let mut dec = Decoder::new(1024);
    dec.set_digests(d);
    dec.feed(&out);
    let f = dec.next_frame().expect("complete").expect("valid");
    assert_eq!(f.ahs, &ahs);
    assert_eq!(f.data, b"xyz");
}

#[test]
fn packet_accessors_never_panic_on_short_buffers() {
    for n in 0..BHS_LEN {
        let buf = vec![0xffu8; n];
        let p = Packet::new_unchecked(&buf[..]);
        assert_eq!(Packet::new_checked(&buf[..]).err(), Some(Error::Truncated));
        let _ = (p.lun(), p.itt(), p.data(), p.ahs(), p.total_len());
        assert!(Repr::parse(&p).is_err());
    }
}

/// Deterministic mutation fuzzing over a corpus of valid PDUs.
#[test]
fn mutations_never_panic() {
    let mut corpus = Vec::new();
    for digests in all_digests() {
        let mut stream = Vec::new();
        for repr in samples() {
            encode(&mut stream, &repr, b"TargetName=iqn.x\0", digests).expect("encode");
        }
        corpus.push(stream);
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for base in &corpus {
        fuzz_pdu(base);
        for _ in 0..3000 {
            let mut d = base.clone();
            match rnd() % 4 {
                0 => {
                    let i = rnd() as usize % d.len();
                    d[i] ^= 1 << (rnd() % 8);
                }
                1 => {
                    let i = rnd() as usize % d.len();
                    d[i] = rnd() as u8;
                }
                2 => d.truncate(rnd() as usize % d.len()),
                _ => {
                    // Corrupt a length field of some PDU.
                    let i = (rnd() as usize % (d.len() / BHS_LEN)) * BHS_LEN;
                    if i + 8 <= d.len() {
                        d[i + 4] = rnd() as u8;
                        d[i + 5 + (rnd() as usize % 3)] = rnd() as u8;
                    }
                }
            }
            fuzz_pdu(&d);
        }
    }
}
