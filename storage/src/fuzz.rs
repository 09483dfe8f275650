//! Fuzz entry points of the crate in one place, with seed inputs for a
//! `cargo fuzz` harness: each entry point takes arbitrary bytes and must
//! never panic (the round-trip checks inside only fail on our own bugs).

use alloc::vec::Vec;

pub use crate::iscsi::chap::fuzz_binary;
pub use crate::iscsi::pdu::fuzz_pdu;
pub use crate::iscsi::session::fuzz_session;
pub use crate::iscsi::text::fuzz_text;
pub use crate::scsi::fuzz_scsi;

use crate::iscsi::pdu::{
    self, DataIn, Digests, LoginResponse, NopIn, R2t, RESERVED_TAG, Repr, ScsiResponse, Stage,
    TextResponse,
};

/// Valid target-side PDU streams (each PDU kind a target sends, with and
/// without digests) for `fuzz_pdu` and `fuzz_session`.
pub fn pdu_seeds() -> Vec<Vec<u8>> {
    let login = Repr::LoginResponse(LoginResponse {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 0,
        version_active: 0,
        isid: [0xc0, 0, 0, 0, 0, 1],
        tsih: 1,
        itt: 0,
        stat_sn: 1,
        exp_cmd_sn: 1,
        max_cmd_sn: 64,
        status_class: 0,
        status_detail: 0,
    });
    let data_in = Repr::DataIn(DataIn {
        final_: true,
        ack: false,
        overflow: false,
        underflow: false,
        has_status: true,
        status: 0,
        lun: 0,
        itt: 1,
        ttt: RESERVED_TAG,
        stat_sn: 1,
        exp_cmd_sn: 2,
        max_cmd_sn: 64,
        data_sn: 0,
        offset: 0,
        residual: 0,
    });
    let response = Repr::ScsiResponse(ScsiResponse {
        bidi_overflow: false,
        bidi_underflow: false,
        overflow: false,
        underflow: false,
        response: 0,
        status: 2,
        itt: 2,
        snack_tag: 0,
        stat_sn: 2,
        exp_cmd_sn: 3,
        max_cmd_sn: 64,
        exp_data_sn: 0,
        bidi_residual: 0,
        residual: 0,
    });
    let r2t = Repr::R2t(R2t {
        lun: 0,
        itt: 2,
        ttt: 5,
        stat_sn: 3,
        exp_cmd_sn: 3,
        max_cmd_sn: 64,
        r2t_sn: 0,
        offset: 8192,
        desired_len: 8192,
    });
    let text = Repr::TextResponse(TextResponse {
        final_: true,
        cont: false,
        lun: 0,
        itt: 3,
        ttt: RESERVED_TAG,
        stat_sn: 3,
        exp_cmd_sn: 4,
        max_cmd_sn: 64,
    });
    let nop = Repr::NopIn(NopIn {
        lun: 0,
        itt: RESERVED_TAG,
        ttt: 9,
        stat_sn: 4,
        exp_cmd_sn: 4,
        max_cmd_sn: 64,
    });
    let sense = [
        0u8, 18, 0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0,
    ];
    let mut seeds = Vec::new();
    for digests in [
        Digests::default(),
        Digests {
            header: true,
            data: true,
        },
    ] {
        let mut s = Vec::new();
        let parts: [(&Repr, &[u8]); 6] = [
            (&data_in, &[0x5a; 512]),
            (&response, &sense),
            (&r2t, &[]),
            (
                &text,
                b"TargetName=iqn.2026-11.dev.keel:t\0TargetAddress=127.0.0.1:3260,1\0",
            ),
            (&nop, &[]),
            // Last: a session fails on it, after the others were handled.
            (&login, b"MaxRecvDataSegmentLength=8192\0"),
        ];
        for (repr, data) in parts {
            let mut one = Vec::new();
            if pdu::encode(&mut one, repr, data, digests).is_ok() {
                s.extend_from_slice(&one);
                seeds.push(one);
            }
        }
        seeds.push(s);
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run_through_every_entry_point() {
        let seeds = pdu_seeds();
        assert_eq!(seeds.len(), 14);
        for s in &seeds {
            fuzz_pdu(s);
            fuzz_session(s);
            fuzz_text(s);
            fuzz_binary(s);
            fuzz_scsi(s);
        }
    }
}
