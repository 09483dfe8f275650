//! The host's own disks for local SRs (`lvm`/`ext` SRs): what `SR.probe`
//! lists, and where the SR jobs of a local SR run.
//!
//! A local SR job runs to its end when the platform takes it, on the poll
//! loop, straight on the disk: the SR code is the same as on an iSCSI LUN
//! (`crate::iscsi::run_op`, over the disk instead of the staged device).
//! That holds the loop for one job's disk requests only, and every job is
//! bounded: metadata work, a transfer piece (1 MiB), or an attached disk's
//! batch (at most 64 requests, 4 MiB). A host disk (virtio-blk) answers a
//! request in well under a millisecond of the host's time, so the API and
//! the network wait no longer than for one HTTP request. Keeping an SR
//! open between jobs, or a fast path beside the batches as an iSCSI disk
//! has, would save the metadata reads of each job; not needed so far.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use storage::BlockDevice;

use crate::iscsi::{JobError, JobOutput, JobSpec, SrOp, Work, run_op};
use crate::platform::Platform;
use crate::xenapi::XenApi;

/// What the API knows of a host disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDiskInfo {
    /// Its short name, `/dev/vdb`.
    pub device: String,
    /// Its stable name from the disk's serial, `/dev/disk/by-id/virtio-<serial>`
    /// (a disk without a serial has none).
    pub by_id: Option<String>,
    /// Bytes.
    pub size: u64,
    /// Why no SR may be made on it (the host's state disk, the boot disk),
    /// or `None` for a candidate.
    pub reserved: Option<String>,
}

impl HostDiskInfo {
    /// Whether `name` names this disk (by either name).
    pub fn named(&self, name: &str) -> bool {
        self.device == name || self.by_id.as_deref() == Some(name)
    }
}

/// The host disks a platform serves local SRs from.
#[derive(Default)]
pub struct LocalDisks {
    disks: Vec<(HostDiskInfo, Box<dyn BlockDevice>)>,
}

impl core::fmt::Debug for LocalDisks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.disks.iter().map(|(i, _)| &i.device))
            .finish()
    }
}

/// The stable name of a disk with serial `serial` (as udev names virtio disks).
pub fn by_id_name(serial: &str) -> Option<String> {
    let clean: String = serial
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if c.is_whitespace() || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    (!clean.is_empty()).then(|| format!("/dev/disk/by-id/virtio-{clean}"))
}

/// The short name of the `index`th disk (`/dev/vda`, `/dev/vdb`, ...).
pub fn short_name(index: usize) -> String {
    let mut suffix = Vec::new();
    let mut n = index;
    loop {
        suffix.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    suffix.reverse();
    format!("/dev/vd{}", String::from_utf8_lossy(&suffix))
}

impl LocalDisks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a disk SRs may be made on.
    pub fn add(&mut self, info: HostDiskInfo, disk: Box<dyn BlockDevice>) {
        self.disks.push((info, disk));
    }

    /// Every disk, candidates and reserved.
    pub fn infos(&self) -> Vec<HostDiskInfo> {
        self.disks.iter().map(|(i, _)| i.clone()).collect()
    }

    /// Runs `spec` if it is a local SR job; `None` for any other job.
    pub fn run(&mut self, spec: &JobSpec) -> Option<Result<JobOutput, JobError>> {
        let Work::Local { device, op } = &spec.work else {
            return None;
        };
        let Some((info, disk)) = self.disks.iter_mut().find(|(i, _)| i.named(device)) else {
            return Some(Err(JobError::Sr(format!(
                "no host disk {device} (SR.probe lists this host's disks)"
            ))));
        };
        if let Some(why) = &info.reserved {
            return Some(Err(JobError::Sr(format!(
                "{device} is {why}: no SR is made or opened on it"
            ))));
        }
        Some(run_op(op, disk).map_err(JobError::Sr))
    }

    /// Runs the local SR jobs among `jobs` now, in order, each answered to
    /// `api`; returns the other jobs (for the iSCSI runner) and whether any
    /// ran (its answer, and the jobs it may have queued, want a poll soon).
    pub fn run_jobs(
        &mut self,
        jobs: Vec<(u64, JobSpec)>,
        api: &mut XenApi,
        platform: &mut dyn Platform,
    ) -> (Vec<(u64, JobSpec)>, bool) {
        let mut others = Vec::new();
        let mut ran = false;
        for (id, spec) in jobs {
            let Some(result) = self.run(&spec) else {
                others.push((id, spec));
                continue;
            };
            ran = true;
            if let Work::Local { device, op } = &spec.work {
                log_job(id, device, op, &result);
            }
            api.storage_finished(id, result, platform);
        }
        (others, ran)
    }
}

/// A local job on the serial log: its failures, and every job but a
/// guest disk's batches and transfer pieces (many, and routine).
fn log_job(id: u64, device: &str, op: &SrOp, result: &Result<JobOutput, JobError>) {
    let what = alloc::format!("{op:?}");
    let what = what.split([' ', '{']).next().unwrap_or("");
    match result {
        Err(e) => log::warn!("sr: local job {id} {what} on {device} failed: {e}"),
        Ok(_)
            if matches!(
                op,
                SrOp::Io { .. } | SrOp::WriteVdi { .. } | SrOp::ReadVdi { .. }
            ) => {}
        Ok(_) => log::info!("sr: local job {id} {what} on {device} done"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::SrOp;
    use storage::mem::MemBlockDevice;
    use storage::sr::SrType;

    fn disks() -> LocalDisks {
        let mut d = LocalDisks::new();
        d.add(
            HostDiskInfo {
                device: short_name(0),
                by_id: by_id_name("state"),
                size: 64 << 20,
                reserved: Some(String::from("the host's state disk")),
            },
            Box::new(MemBlockDevice::new(512, (64 << 20) / 512)),
        );
        d.add(
            HostDiskInfo {
                device: short_name(1),
                by_id: by_id_name("data 1"),
                size: 64 << 20,
                reserved: None,
            },
            Box::new(MemBlockDevice::new(512, (64 << 20) / 512)),
        );
        d
    }

    #[test]
    fn names() {
        assert_eq!(short_name(0), "/dev/vda");
        assert_eq!(short_name(1), "/dev/vdb");
        assert_eq!(short_name(25), "/dev/vdz");
        assert_eq!(short_name(26), "/dev/vdaa");
        assert_eq!(
            by_id_name("data 1").as_deref(),
            Some("/dev/disk/by-id/virtio-data_1")
        );
        assert_eq!(by_id_name(""), None);
    }

    #[test]
    fn formats_probes_and_refuses() {
        let mut d = disks();
        let probe = JobSpec::local("/dev/disk/by-id/virtio-data_1", SrOp::Probe);
        assert_eq!(d.run(&probe), Some(Ok(JobOutput::NoSr)));
        let uuid = [7u8; 16];
        let format = JobSpec::local(
            "/dev/vdb",
            SrOp::Format {
                uuid,
                sr_type: SrType::Local,
            },
        );
        assert!(matches!(d.run(&format), Some(Ok(JobOutput::Sr(s))) if s.uuid == uuid));
        match d.run(&probe) {
            Some(Ok(JobOutput::Sr(s))) => {
                assert_eq!(s.uuid, uuid);
                assert_eq!(s.sr_type, SrType::Local);
            }
            other => panic!("{other:?}"),
        }
        // The state disk and unknown disks are refused, never written.
        for device in ["/dev/vda", "/dev/vdq"] {
            let spec = JobSpec::local(
                device,
                SrOp::Format {
                    uuid,
                    sr_type: SrType::Local,
                },
            );
            assert!(
                matches!(d.run(&spec), Some(Err(JobError::Sr(_)))),
                "{device}"
            );
        }
        let iscsi = JobSpec {
            work: Work::Discover,
            ..probe
        };
        assert_eq!(d.run(&iscsi), None);
    }
}
