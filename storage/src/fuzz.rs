//! Fuzz entry points of the crate in one place (wire formats and on-disk
//! formats), with seed inputs for a `cargo fuzz` harness: each entry point
//! takes arbitrary bytes and must
//! never panic (the round-trip checks inside only fail on our own bugs).

use alloc::vec::Vec;

pub use crate::config_store::fuzz_config_store;
pub use crate::iscsi::chap::fuzz_binary;
pub use crate::iscsi::pdu::fuzz_pdu;
pub use crate::iscsi::session::fuzz_session;
pub use crate::iscsi::text::fuzz_text;
pub use crate::journal::fuzz_journal;
pub use crate::scsi::fuzz_scsi;
pub use crate::sr::fuzz_sr;

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
    let first_read = DataIn {
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
    };
    let data_in = Repr::DataIn(first_read);
    // The first part of fuzz_session's 300 000-byte read (ITT 4): long
    // enough to be read straight into the command's buffer.
    let long_data_in = Repr::DataIn(DataIn {
        final_: false,
        has_status: false,
        itt: 4,
        ..first_read
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
        let long = [0xa5u8; 70_000];
        let parts: [(&Repr, &[u8]); 7] = [
            (&data_in, &[0x5a; 512]),
            (&long_data_in, &long),
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

/// Valid on-disk images (512-byte blocks) for `fuzz_journal`,
/// `fuzz_config_store` and `fuzz_sr`: a config store with records and a
/// compacted journal, and a small SR with a VDI, a snapshot and data.
pub fn disk_seeds() -> Vec<Vec<u8>> {
    use crate::config_store::ConfigStore;
    use crate::mem::MemBlockDevice;
    use crate::region::Region;
    use crate::sr::{Sr, SrType};

    let mut seeds = Vec::new();
    let mut dev = MemBlockDevice::new(512, 64);
    let region = Region {
        start_lba: 0,
        blocks: 64,
    };
    if let Ok(mut store) = ConfigStore::format(&mut dev, region, 0x5eed) {
        for i in 0..40u8 {
            let key = alloc::format!("VM/OpaqueRef:{}", i % 7);
            if store.put(&mut dev, &key, &[i; 200]).is_err() {
                break;
            }
        }
        seeds.push(dev.bytes().to_vec());
    }
    let dev = MemBlockDevice::new(512, 2048);
    if let Ok(mut sr) = Sr::format(dev, SrType::Local, [9; 16], 64 * 1024) {
        let ok = sr.create_vdi([1; 16], "disk", 256 * 1024).is_ok()
            && sr.write(&[1; 16], 1000, &[0xab; 70_000]).is_ok()
            && sr.snapshot(&[1; 16], [2; 16], "snap").is_ok()
            && sr.write(&[1; 16], 0, b"after").is_ok();
        if ok && let Ok(dev) = sr.close() {
            seeds.push(dev.bytes().to_vec());
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk parsers on their seeds, truncated and with random bytes
    /// overwritten: they return errors, never panic.
    #[test]
    fn disk_parsers_survive_truncated_and_damaged_images() {
        let seeds = disk_seeds();
        assert_eq!(seeds.len(), 2);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n.max(1) as u64) as usize
        };
        for s in &seeds {
            fuzz_journal(s);
            fuzz_config_store(s);
            fuzz_sr(s);
            for round in 0..150 {
                let mut d = s.clone();
                for _ in 0..round % 25 {
                    let at = rnd(d.len());
                    d[at] = rnd(256) as u8;
                }
                if round % 2 == 1 {
                    d.truncate(rnd(d.len() + 1));
                } else {
                    // Damage where the parsers look: the first 400 KiB.
                    let at = rnd(d.len().min(400 * 1024));
                    d[at] ^= 1 << rnd(8);
                }
                fuzz_journal(&d);
                fuzz_config_store(&d);
                fuzz_sr(&d);
            }
        }
        for len in [0, 1, 511, 512, 4096] {
            let noise: Vec<u8> = (0..len).map(|_| rnd(256) as u8).collect();
            fuzz_journal(&noise);
            fuzz_config_store(&noise);
            fuzz_sr(&noise);
        }
    }

    #[test]
    fn seeds_run_through_every_entry_point() {
        let seeds = pdu_seeds();
        assert_eq!(seeds.len(), 16);
        for s in &seeds {
            fuzz_pdu(s);
            fuzz_session(s);
            fuzz_text(s);
            fuzz_binary(s);
            fuzz_scsi(s);
        }
    }
}
