//! The login machine against a scripted target.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::iscsi::pdu::{Decoder, LoginResponse};

const ISID: [u8; 6] = [0xc0, 0, 0, 1, 2, 3];

fn config(chap: Option<Chap>) -> LoginConfig {
    LoginConfig {
        initiator_name: "iqn.2026-11.dev.keel:test".into(),
        target_name: Some("iqn.2026-11.dev.keel:t1".into()),
        isid: ISID,
        tsih: 0,
        cid: 0,
        initial_cmd_sn: 10,
        chap,
        offer: Offer::default(),
    }
}

fn creds(user: &str, secret: &str) -> ChapCredentials {
    ChapCredentials {
        user: user.into(),
        secret: secret.as_bytes().to_vec(),
    }
}

/// Decodes every PDU the initiator queued.
fn sent(out: &mut Vec<u8>) -> Vec<(LoginRequest, TextPairs)> {
    let mut dec = Decoder::new(1 << 20);
    dec.feed(out);
    out.clear();
    let mut v = Vec::new();
    while let Some(f) = dec.next_frame() {
        let f = f.expect("valid PDU");
        let Repr::LoginRequest(r) = f.repr else {
            panic!("not a login request: {:?}", f.repr)
        };
        // Pieces of a continued text do not parse on their own.
        v.push((r, TextPairs::parse(f.data).unwrap_or_default()));
    }
    v
}

struct Reply<'a> {
    transit: bool,
    cont: bool,
    csg: Stage,
    nsg: Stage,
    keys: &'a [(&'a str, &'a str)],
    status: (u8, u8),
}

fn reply(r: Reply<'_>, stat_sn: u32) -> Vec<u8> {
    let mut t = TextPairs::new();
    for (k, v) in r.keys {
        t.push(k, v);
    }
    let repr = Repr::LoginResponse(LoginResponse {
        transit: r.transit,
        cont: r.cont,
        csg: r.csg,
        nsg: r.nsg,
        version_max: 0,
        version_active: 0,
        isid: ISID,
        tsih: if r.transit && r.nsg == Stage::FullFeature {
            0x42
        } else {
            0
        },
        itt: 1,
        stat_sn,
        exp_cmd_sn: 10,
        max_cmd_sn: 41,
        status_class: r.status.0,
        status_detail: r.status.1,
    });
    let mut out = Vec::new();
    pdu::encode(&mut out, &repr, &t.encode(), Digests::default()).expect("encode");
    out
}

fn feed(login: &mut Login, bytes: &[u8], out: &mut Vec<u8>) -> Result<Step, LoginError> {
    let mut dec = Decoder::new(1 << 20);
    dec.feed(bytes);
    let f = dec.next_frame().expect("complete").expect("valid");
    login.handle(&f, out)
}

fn ok<'a>(transit: bool, csg: Stage, nsg: Stage, keys: &'a [(&'a str, &'a str)]) -> Reply<'a> {
    Reply {
        transit,
        cont: false,
        csg,
        nsg,
        keys,
        status: (0, 0),
    }
}

const OP_ANSWERS: &[(&str, &str)] = &[
    ("HeaderDigest", "None"),
    ("DataDigest", "None"),
    ("MaxRecvDataSegmentLength", "8192"),
    ("MaxBurstLength", "262144"),
    ("FirstBurstLength", "65536"),
    ("InitialR2T", "Yes"),
    ("ImmediateData", "Yes"),
];

#[test]
fn no_auth_login_reaches_full_feature() {
    let mut out = Vec::new();
    let mut login = Login::start(config(None), 1, &mut out).expect("start");
    let reqs = sent(&mut out);
    assert_eq!(reqs.len(), 1);
    let (r, t) = &reqs[0];
    assert!(r.transit && r.csg == Stage::Security && r.nsg == Stage::Operational);
    assert_eq!(r.cmd_sn, 10);
    assert_eq!(t.get("AuthMethod"), Some("None"));
    assert_eq!(t.get("SessionType"), Some("Normal"));
    assert_eq!(t.get("TargetName"), Some("iqn.2026-11.dev.keel:t1"));
    let step = feed(
        &mut login,
        &reply(
            ok(
                true,
                Stage::Security,
                Stage::Operational,
                &[("AuthMethod", "None"), ("TargetPortalGroupTag", "1")],
            ),
            5,
        ),
        &mut out,
    )
    .expect("security");
    assert!(matches!(step, Step::Continue));
    let reqs = sent(&mut out);
    let (r, t) = &reqs[0];
    assert_eq!(
        (r.csg, r.nsg, r.transit),
        (Stage::Operational, Stage::FullFeature, true)
    );
    assert_eq!(r.exp_stat_sn, 6);
    assert_eq!(t.get("MaxRecvDataSegmentLength"), Some("262144"));
    // tgt style: answers plus its own proposals, without T.
    let mut keys = OP_ANSWERS.to_vec();
    keys.push(("IFMarker", "No"));
    let step = feed(
        &mut login,
        &reply(ok(false, Stage::Operational, Stage::Operational, &keys), 6),
        &mut out,
    )
    .expect("operational");
    assert!(matches!(step, Step::Continue));
    let reqs = sent(&mut out);
    assert_eq!(reqs[0].1.get("IFMarker"), Some("No"));
    assert!(reqs[0].0.transit);
    let step = feed(
        &mut login,
        &reply(ok(true, Stage::Operational, Stage::FullFeature, &[]), 7),
        &mut out,
    )
    .expect("final");
    let Step::Done(o) = step else {
        panic!("not done")
    };
    assert_eq!(o.tsih, 0x42);
    assert_eq!((o.cmd_sn, o.exp_stat_sn, o.max_cmd_sn), (10, 8, 41));
    assert_eq!(o.params.target_max_recv_data_segment_length, 8192);
    assert!(o.params.initial_r2t);
    assert_eq!(o.params.target_portal_group_tag, Some(1));
}

fn chap_config(mutual: bool) -> Chap {
    Chap {
        initiator: creds("alice", "alice-secret-1"),
        target: mutual.then(|| creds("tgt", "target-secret-2")),
        random: (100..117).collect(),
    }
}

fn run_chap(
    mutual: bool,
    target_reply: impl FnOnce(u8, &[u8]) -> Vec<(&'static str, alloc::string::String)>,
) -> Result<Step, LoginError> {
    let mut out = Vec::new();
    let mut login = Login::start(config(Some(chap_config(mutual))), 1, &mut out)?;
    let reqs = sent(&mut out);
    assert!(!reqs[0].0.transit, "no transit before authentication");
    assert_eq!(
        reqs[0].1.get("AuthMethod"),
        Some(if mutual { "CHAP" } else { "CHAP,None" })
    );
    feed(
        &mut login,
        &reply(
            ok(
                false,
                Stage::Security,
                Stage::Security,
                &[("AuthMethod", "CHAP")],
            ),
            1,
        ),
        &mut out,
    )?;
    let reqs = sent(&mut out);
    assert_eq!(reqs[0].1.get("CHAP_A"), Some("5"));
    feed(
        &mut login,
        &reply(
            ok(
                false,
                Stage::Security,
                Stage::Security,
                &[("CHAP_A", "5"), ("CHAP_I", "7"), ("CHAP_C", "0bAQIDBA==")],
            ),
            1,
        ),
        &mut out,
    )?;
    let reqs = sent(&mut out);
    let t = &reqs[0].1;
    assert_eq!(t.get("CHAP_N"), Some("alice"));
    let expect = chap::chap_md5_response(7, b"alice-secret-1", &[1, 2, 3, 4]);
    assert_eq!(t.get("CHAP_R"), Some(chap::encode_hex(&expect).as_str()));
    assert!(reqs[0].0.transit);
    let (id, challenge) = if mutual {
        let id: u8 = t.get("CHAP_I").expect("CHAP_I").parse().expect("id");
        let c = chap::decode_binary(t.get("CHAP_C").expect("CHAP_C")).expect("challenge");
        assert_eq!(c.len(), CHALLENGE_LEN);
        (id, c)
    } else {
        assert_eq!(t.get("CHAP_C"), None);
        (0, Vec::new())
    };
    let keys = target_reply(id, &challenge);
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    feed(
        &mut login,
        &reply(ok(true, Stage::Security, Stage::Operational, &keys), 2),
        &mut out,
    )
}

#[test]
fn chap_one_way() {
    let step = run_chap(false, |_, _| Vec::new()).expect("one-way CHAP");
    assert!(matches!(step, Step::Continue));
}

#[test]
fn chap_mutual_verifies_the_target() {
    run_chap(true, |id, c| {
        let r = chap::chap_md5_response(id, b"target-secret-2", c);
        vec![
            ("CHAP_N", "tgt".to_string()),
            ("CHAP_R", chap::encode_base64(&r)),
        ]
    })
    .expect("mutual CHAP");
    let bad = run_chap(true, |id, c| {
        let r = chap::chap_md5_response(id, b"wrong-secret", c);
        vec![
            ("CHAP_N", "tgt".to_string()),
            ("CHAP_R", chap::encode_hex(&r)),
        ]
    });
    assert_eq!(bad.err(), Some(LoginError::TargetAuthFailed));
    let silent = run_chap(true, |_, _| Vec::new());
    assert_eq!(silent.err(), Some(LoginError::TargetNotAuthenticated));
}

#[test]
fn reflected_challenge_and_bad_config_are_refused() {
    let mut cfg = chap_config(true);
    // Our challenge bytes equal what the target will send: a reflection.
    cfg.random = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0];
    let mut out = Vec::new();
    let mut login = Login::start(config(Some(cfg)), 1, &mut out).expect("start");
    sent(&mut out);
    feed(
        &mut login,
        &reply(
            ok(
                false,
                Stage::Security,
                Stage::Security,
                &[("AuthMethod", "CHAP")],
            ),
            1,
        ),
        &mut out,
    )
    .expect("auth method");
    let r = feed(
        &mut login,
        &reply(
            ok(
                false,
                Stage::Security,
                Stage::Security,
                &[
                    ("CHAP_A", "5"),
                    ("CHAP_I", "1"),
                    ("CHAP_C", "0x0102030405060708090a0b0c0d0e0f10"),
                ],
            ),
            1,
        ),
        &mut out,
    );
    assert_eq!(r.err(), Some(LoginError::ReflectedChallenge));

    let mut same = chap_config(true);
    same.target = Some(creds("tgt", "alice-secret-1"));
    assert_eq!(
        Login::start(config(Some(same)), 1, &mut out).err(),
        Some(LoginError::SameSecrets)
    );
    let mut short = chap_config(true);
    short.random.truncate(4);
    assert_eq!(
        Login::start(config(Some(short)), 1, &mut out).err(),
        Some(LoginError::NotEnoughRandom)
    );
}

#[test]
fn refusals_map_to_actionable_errors() {
    let cases = [
        ((2, 1), LoginError::ChapRequired),
        ((2, 3), LoginError::Refused { detail: 3 }),
        ((3, 1), LoginError::TargetError { detail: 1 }),
        (
            (9, 9),
            LoginError::Status {
                class: 9,
                detail: 9,
            },
        ),
    ];
    for (status, expect) in cases {
        let mut out = Vec::new();
        let mut login = Login::start(config(None), 1, &mut out).expect("start");
        let r = Reply {
            status,
            ..ok(false, Stage::Security, Stage::Security, &[])
        };
        assert_eq!(feed(&mut login, &reply(r, 1), &mut out).err(), Some(expect));
    }
    let mut out = Vec::new();
    let mut login = Login::start(config(None), 1, &mut out).expect("start");
    let r = Reply {
        status: (1, 1),
        ..ok(
            false,
            Stage::Security,
            Stage::Security,
            &[("TargetAddress", "10.0.0.2:3260,1")],
        )
    };
    assert_eq!(
        feed(&mut login, &reply(r, 1), &mut out).err(),
        Some(LoginError::Redirected {
            detail: 1,
            address: Some("10.0.0.2:3260,1".into())
        })
    );
    // The target demands CHAP but we have no credentials.
    let mut login = Login::start(config(None), 1, &mut out).expect("start");
    sent(&mut out);
    assert_eq!(
        feed(
            &mut login,
            &reply(
                ok(
                    false,
                    Stage::Security,
                    Stage::Security,
                    &[("AuthMethod", "CHAP")]
                ),
                1
            ),
            &mut out
        )
        .err(),
        Some(LoginError::ChapRequired)
    );
}

#[test]
fn multi_pdu_text_from_the_target() {
    let mut out = Vec::new();
    let mut login = Login::start(config(None), 1, &mut out).expect("start");
    sent(&mut out);
    // The answer comes in two PDUs: the first with C set.
    let full = {
        let mut t = TextPairs::new();
        t.push("AuthMethod", "None");
        t.push("TargetAlias", &"x".repeat(300));
        t.encode()
    };
    let (a, b) = full.split_at(100);
    let mk = |data: &[u8], cont: bool, transit: bool| {
        let repr = Repr::LoginResponse(LoginResponse {
            transit,
            cont,
            csg: Stage::Security,
            nsg: if transit {
                Stage::Operational
            } else {
                Stage::Security
            },
            version_max: 0,
            version_active: 0,
            isid: ISID,
            tsih: 0,
            itt: 1,
            stat_sn: 1,
            exp_cmd_sn: 10,
            max_cmd_sn: 20,
            status_class: 0,
            status_detail: 0,
        });
        let mut o = Vec::new();
        pdu::encode(&mut o, &repr, data, Digests::default()).expect("encode");
        o
    };
    feed(&mut login, &mk(a, true, false), &mut out).expect("first part");
    let reqs = sent(&mut out);
    assert!(reqs[0].1.is_empty(), "empty request asks for the rest");
    assert!(!reqs[0].0.transit && !reqs[0].0.cont);
    feed(&mut login, &mk(b, false, true), &mut out).expect("second part");
    let reqs = sent(&mut out);
    assert_eq!(reqs[0].0.csg, Stage::Operational);
}

#[test]
fn long_request_goes_out_in_pieces() {
    let mut cfg = config(None);
    cfg.initiator_name = alloc::format!("iqn.2026-11.dev.keel:{}", "n".repeat(200));
    let mut login = Login {
        target_max_data: 64,
        ..Login::start(cfg.clone(), 1, &mut Vec::new()).expect("start")
    };
    let mut out = Vec::new();
    let mut t = TextPairs::new();
    t.push("InitiatorName", &cfg.initiator_name);
    login
        .send(&mut out, &t, Stage::Security, true, Stage::Operational)
        .expect("send");
    let reqs = sent(&mut out);
    assert!(reqs[0].0.cont && !reqs[0].0.transit);
    // Each empty response pulls the next piece; the last carries T.
    let mut n = 1;
    loop {
        feed(
            &mut login,
            &reply(ok(false, Stage::Security, Stage::Security, &[]), n),
            &mut out,
        )
        .expect("ack");
        let reqs = sent(&mut out);
        n += 1;
        if !reqs[0].0.cont {
            assert!(reqs[0].0.transit);
            break;
        }
    }
    assert!(n > 3);
}
