//! `iso` SRs (xapi's ISO libraries) on an iSCSI LUN: the same calls as an
//! `lvmoiscsi` SR (see `srs`), with the storage crate's ISO library
//! underneath (`storage::sr::SrType::Iso`).
//!
//! An ISO arrives as `VDI.create` (its name and size) then `PUT
//! /import_raw_vdi` of its bytes; the VDI is writable and unfinished until
//! the upload's last piece is written, then read-only for good. An upload
//! that fails or is cut destroys the VDI: no half ISO is ever listed, and
//! an unfinished ISO found on the LUN (a host that restarted during an
//! upload) is not listed either.

use alloc::string::String;
use alloc::vec::Vec;

use super::XenApi;
use super::srs::field_index;
use crate::iscsi::SrSummary;
use crate::xenapi::error::ApiError;
use crate::xenapi::schema::{SR, VDI};
use crate::xenapi::value::Value;
use storage::sr::{SrType, VdiInfo};

/// xapi's type name of an ISO library.
pub const ISO_TYPE: &str = "iso";

/// The storage format of an SR of XenAPI type `sr_type`.
pub(super) fn storage_type(sr_type: &str) -> SrType {
    if sr_type == ISO_TYPE {
        SrType::Iso
    } else if super::local_srs::is_local(sr_type) {
        SrType::Local
    } else {
        SrType::Iscsi
    }
}

impl XenApi {
    pub(super) fn is_iso_sr(&self, sr: &str) -> bool {
        self.field(&SR, sr, "type").as_str() == Some(ISO_TYPE)
    }

    /// `VDI.create` on an ISO library: the ISO needs a name no other ISO
    /// of the library has (finished, or being uploaded).
    pub(super) fn iso_name_free(&self, sr: &str, name: &str) -> Result<(), ApiError> {
        if name.is_empty() {
            return Err(ApiError::invalid_value(
                "name_label",
                "an ISO needs a name (its file name)",
            ));
        }
        let taken = self.db.objects("VDI").any(|(_, o)| {
            o.field(field_index(&VDI, "SR")).as_str() == Some(sr)
                && o.field(field_index(&VDI, "name_label")).as_str() == Some(name)
        });
        if taken {
            return Err(ApiError::new(
                "INVALID_VALUE",
                &[
                    "name_label",
                    &alloc::format!("{name} (an ISO of this name is in the SR)"),
                ],
            ));
        }
        Ok(())
    }

    /// Which of the LUN's VDIs an SR lists: on an ISO library the finished
    /// ISOs, and the unfinished ones whose upload this host awaits (a VDI
    /// object made by `VDI.create`), unless `restarted` (none awaits then).
    pub(super) fn listed_vdis<'a>(
        &self,
        sr: &str,
        s: &'a SrSummary,
        restarted: bool,
    ) -> Vec<&'a VdiInfo> {
        if s.sr_type != SrType::Iso {
            return s.vdis.iter().collect();
        }
        let awaited: Vec<String> = if restarted {
            Vec::new()
        } else {
            self.db
                .objects("VDI")
                .filter(|(_, o)| o.field(field_index(&VDI, "SR")).as_str() == Some(sr))
                .filter_map(|(_, o)| {
                    o.field(field_index(&VDI, "uuid"))
                        .as_str()
                        .map(String::from)
                })
                .collect()
        };
        s.vdis
            .iter()
            .filter(|v| v.read_only || awaited.contains(&crate::xenapi::db::uuid_from(v.uuid)))
            .collect()
    }

    /// The upload into ISO `vdi` is complete: it is read-only from now on.
    pub(super) fn iso_finished(&mut self, vdi: &str) {
        self.set(&VDI, vdi, "read_only", Value::Bool(true));
        log::info!("sr: ISO {vdi} uploaded; read-only from now on");
    }

    /// The upload into ISO `vdi` failed: the VDI goes (on the LUN, then its
    /// object), so no half ISO is listed.
    pub(super) fn iso_discard(&mut self, vdi: &str) {
        match self.vdi_destroy(vdi) {
            Ok(call) => {
                let id = self.next_ticket;
                self.next_ticket += 1;
                log::warn!("sr: ISO {vdi} was not uploaded completely; destroying it");
                self.queue_storage(id, call, None, None);
            }
            Err(e) => log::warn!("sr: ISO {vdi} was not uploaded completely and stays: {e:?}"),
        }
    }
}
