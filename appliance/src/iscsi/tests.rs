//! Jobs against a real tgtd on loopback with mutual CHAP, over [`StdLink`]:
//! the same state machine the image drives over smoltcp.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::std_link::StdLink;
use super::*;

const IQN: &str = "iqn.2026-12.dev.keel:job-test";
const LUN_BYTES: u64 = 32 * 1024 * 1024;
const CHAP: (&str, &str) = ("job-initiator", "initiator-secret-0123");
const MUTUAL: (&str, &str) = ("job-target", "target-secret-456789");
/// tgtd is killed after this whatever happens.
const TGTD_HARD_TIMEOUT: Duration = Duration::from_secs(120);
const JOB_WAIT: Duration = Duration::from_secs(30);

static SEQ: AtomicU16 = AtomicU16::new(0);

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// tgtd with target tid 1 and LUN 1, CHAP in and out; killed by pid.
struct Tgtd {
    child: Child,
    port: u16,
    control: u16,
    dir: PathBuf,
    done: Arc<AtomicBool>,
}

impl Tgtd {
    fn start() -> Tgtd {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            let control = 21_000
                + (std::process::id() % 4_000) as u16
                + SEQ.fetch_add(1, Ordering::SeqCst) * 17;
            let dir = std::env::temp_dir().join(format!(
                "keel-appliance-tgtd-{}-{control}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            File::create(dir.join("lun1.img"))
                .and_then(|f| f.set_len(LUN_BYTES))
                .expect("backing file");
            let log = File::create(dir.join("tgtd.log")).expect("log");
            let child = Command::new("tgtd")
                .args(["-f", "--iscsi", &format!("portal=127.0.0.1:{port}")])
                .args(["-C", &control.to_string()])
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("tgtd (Debian package tgt) must be installed");
            let done = Arc::new(AtomicBool::new(false));
            let (pid, flag) = (child.id(), done.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + TGTD_HARD_TIMEOUT;
                while Instant::now() < end && !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if !flag.load(Ordering::SeqCst) {
                    kill(pid);
                }
            });
            let mut t = Tgtd {
                child,
                port,
                control,
                dir,
                done,
            };
            if t.ready() {
                t.configure();
                return t;
            }
        }
        panic!("tgtd did not start");
    }

    fn ready(&mut self) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if self.admin(&["--op", "show", "--mode", "sys"])
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn admin(&self, args: &[&str]) -> bool {
        let Ok(mut child) = Command::new("tgtadm")
            .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return s.success(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    kill(child.id());
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    fn configure(&self) {
        let backing = self.dir.join("lun1.img").to_string_lossy().into_owned();
        for args in [
            &["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN][..],
            &[
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                "1",
                "--lun",
                "1",
                "-b",
                &backing,
            ],
            &[
                "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
            ],
            &[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                CHAP.0,
                "--password",
                CHAP.1,
            ],
            &[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                MUTUAL.0,
                "--password",
                MUTUAL.1,
            ],
            &[
                "--op", "bind", "--mode", "account", "--tid", "1", "--user", CHAP.0,
            ],
            &[
                "--op",
                "bind",
                "--mode",
                "account",
                "--tid",
                "1",
                "--user",
                MUTUAL.0,
                "--outgoing",
            ],
        ] {
            assert!(self.admin(args), "tgtadm {args:?}");
        }
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        kill(self.child.id());
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spec(port: u16, work: Work, secret: &str, target_secret: &str) -> JobSpec {
    JobSpec {
        portal: Portal {
            ip: [127, 0, 0, 1],
            port,
        },
        initiator: String::from("iqn.2026-12.dev.keel:job-test-host"),
        target_iqn: (work != Work::Discover).then(|| String::from(IQN)),
        chap: Some(Credentials {
            user: String::from(CHAP.0),
            secret: String::from(secret),
        }),
        mutual: (work != Work::Discover).then(|| Credentials {
            user: String::from(MUTUAL.0),
            secret: String::from(target_secret),
        }),
        work,
    }
}

/// Runs a job to its end over a fresh connection, as the appliance does.
fn run(spec: JobSpec) -> (Result<JobOutput, JobError>, Figures) {
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut link = StdLink::connect(spec.portal);
    let random: Vec<u8> = (0..RANDOM_BYTES as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect();
    let mut job = Job::new(spec, now(), &random).expect("job");
    let mut result = None;
    while start.elapsed() < JOB_WAIT {
        job.poll(&mut link, now());
        if result.is_none() {
            result = job.take_result();
        }
        if result.is_some() && job.closed() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    (result.expect("the job ended in time"), job.figures())
}

fn sr(port: u16, scsi_id: &str, op: SrOp) -> Result<JobOutput, JobError> {
    run(spec(
        port,
        Work::Sr {
            scsi_id: String::from(scsi_id),
            op,
        },
        CHAP.1,
        MUTUAL.1,
    ))
    .0
}

#[test]
fn discovery_luns_and_an_sr_with_vdis_on_tgtd_with_mutual_chap() {
    let tgtd = Tgtd::start();
    let (found, _) = run(spec(tgtd.port, Work::Discover, CHAP.1, MUTUAL.1));
    let Ok(JobOutput::Targets(targets)) = found else {
        panic!("discovery: {found:?}");
    };
    assert!(targets.iter().any(|t| t.name == IQN), "{targets:?}");

    let (luns, figures) = run(spec(tgtd.port, Work::Luns, CHAP.1, MUTUAL.1));
    let Ok(JobOutput::Luns(luns)) = luns else {
        panic!("LUNs: {luns:?}");
    };
    assert_eq!(luns.len(), 1, "{luns:?}");
    assert_eq!((luns[0].lun, luns[0].size), (1, LUN_BYTES));
    assert!(!luns[0].scsi_id.is_empty());
    assert!(figures.login_ms < JOB_WAIT.as_millis() as u64);
    let id = luns[0].scsi_id.clone();

    assert_eq!(sr(tgtd.port, &id, SrOp::Probe), Ok(JobOutput::NoSr));
    let uuid = [0x42u8; 16];
    let Ok(JobOutput::Sr(formatted)) = sr(
        tgtd.port,
        &id,
        SrOp::Format {
            uuid,
            sr_type: storage::sr::SrType::Iscsi,
        },
    ) else {
        panic!("format failed");
    };
    assert_eq!(formatted.uuid, uuid);
    assert!(formatted.vdis.is_empty());
    let Ok(JobOutput::Sr(probed)) = sr(tgtd.port, &id, SrOp::Probe) else {
        panic!("probe after format");
    };
    assert_eq!(probed.uuid, uuid);

    let vdi = [0x17u8; 16];
    let create = SrOp::CreateVdi {
        uuid: vdi,
        name: String::from("disk"),
        size: 8 << 20,
    };
    let Ok(JobOutput::Sr(after)) = sr(tgtd.port, &id, create) else {
        panic!("VDI create");
    };
    assert_eq!(after.vdis.len(), 1);
    let Ok(JobOutput::Sr(scanned)) = sr(tgtd.port, &id, SrOp::Scan) else {
        panic!("scan");
    };
    assert_eq!(scanned.vdis, after.vdis);

    // A VM's disks cloned in one job: the clones read what the originals
    // hold; a refused batch changes nothing; the clones go again.
    let (second, copies) = ([0x18u8; 16], [[0x27u8; 16], [0x28u8; 16]]);
    let create = SrOp::CreateVdi {
        uuid: second,
        name: String::from("data"),
        size: 4 << 20,
    };
    assert!(matches!(sr(tgtd.port, &id, create), Ok(JobOutput::Sr(_))));
    let data = Chunk(alloc::sync::Arc::from(&b"the first disk's data"[..]));
    let write = SrOp::WriteVdi {
        uuid: vdi,
        offset: 4096,
        data: data.clone(),
    };
    assert!(matches!(sr(tgtd.port, &id, write), Ok(JobOutput::Sr(_))));
    let batch = |pairs: &[([u8; 16], [u8; 16])]| SrOp::CloneVdis {
        clones: pairs
            .iter()
            .map(|(of, new)| VdiClone {
                of: *of,
                new: *new,
                name: String::from("copy"),
            })
            .collect(),
    };
    let refused = sr(tgtd.port, &id, batch(&[(vdi, copies[0]), (vdi, copies[1])]));
    assert!(matches!(refused, Err(JobError::Sr(_))), "{refused:?}");
    let Ok(JobOutput::Sr(cloned)) = sr(
        tgtd.port,
        &id,
        batch(&[(vdi, copies[0]), (second, copies[1])]),
    ) else {
        panic!("clone of two VDIs");
    };
    assert_eq!(cloned.vdis.len(), 4, "{:?}", cloned.vdis);
    let copy = cloned.vdis.iter().find(|v| v.uuid == copies[1]);
    assert_eq!(
        copy.map(|c| (c.origin, c.virtual_size)),
        Some((Some(second), 4 << 20))
    );
    let read = SrOp::ReadVdi {
        uuid: copies[0],
        offset: 4096,
        len: data.0.len() as u32,
    };
    assert_eq!(
        sr(tgtd.port, &id, read),
        Ok(JobOutput::Data(data.0.to_vec()))
    );
    for uuid in [copies[0], copies[1], second] {
        assert!(matches!(
            sr(tgtd.port, &id, SrOp::DeleteVdi { uuid }),
            Ok(JobOutput::Sr(_))
        ));
    }
    // A non-empty SR is not wiped.
    assert!(matches!(
        sr(tgtd.port, &id, SrOp::Wipe),
        Err(JobError::Sr(_))
    ));
    assert!(matches!(
        sr(tgtd.port, &id, SrOp::DeleteVdi { uuid: vdi }),
        Ok(JobOutput::Sr(s)) if s.vdis.is_empty()
    ));
    assert!(matches!(
        sr(tgtd.port, &id, SrOp::Wipe),
        Ok(JobOutput::Sr(_))
    ));
    assert_eq!(sr(tgtd.port, &id, SrOp::Probe), Ok(JobOutput::NoSr));

    // A SCSIid the target does not have.
    assert!(matches!(
        sr(tgtd.port, "3600000000000000000000000000dead", SrOp::Probe),
        Err(JobError::NoSuchLun(_, luns)) if luns.len() == 1
    ));
}

#[test]
fn wrong_secrets_and_a_closed_port_are_refused() {
    let tgtd = Tgtd::start();
    let (r, _) = run(spec(tgtd.port, Work::Luns, "wrong-secret-123", MUTUAL.1));
    assert!(
        matches!(&r, Err(JobError::Login(w)) if w.contains("authentication")),
        "{r:?}"
    );
    let (r, _) = run(spec(tgtd.port, Work::Luns, CHAP.1, "not-the-target-secret"));
    assert!(
        matches!(&r, Err(JobError::Login(w)) if w.contains("mutual")),
        "{r:?}"
    );
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let (r, _) = run(spec(closed, Work::Luns, CHAP.1, MUTUAL.1));
    assert!(matches!(r, Err(JobError::Unreachable(_))), "{r:?}");
}

/// A VDI on tgtd attached through a disk channel: a device thread runs a
/// random read/write/flush model test through the blocking adapter while
/// this thread serves the channel with the disk's session and batch jobs,
/// as the poll loop does.
#[test]
fn an_attached_vdi_serves_random_io_through_the_channel() {
    use storage::BlockDevice;
    use storage::channel::{ChannelDevice, DiskChannel, DiskGeometry, Wait};

    const OPS: usize = 400;
    let tgtd = Tgtd::start();
    let (luns, _) = run(spec(tgtd.port, Work::Luns, CHAP.1, MUTUAL.1));
    let Ok(JobOutput::Luns(luns)) = luns else {
        panic!("LUNs: {luns:?}");
    };
    let id = luns[0].scsi_id.clone();
    assert!(matches!(
        sr(
            tgtd.port,
            &id,
            SrOp::Format {
                uuid: [0x51; 16],
                sr_type: storage::sr::SrType::Iscsi
            }
        ),
        Ok(JobOutput::Sr(_))
    ));
    let vdi = [0x52u8; 16];
    let size: u64 = 4 << 20;
    let create = SrOp::CreateVdi {
        uuid: vdi,
        name: String::from("guest"),
        size,
    };
    assert!(matches!(sr(tgtd.port, &id, create), Ok(JobOutput::Sr(_))));

    let blocks = size / 512;
    let channel = Arc::new(DiskChannel::new(
        DiskGeometry {
            block_size: 512,
            num_blocks: blocks,
            read_only: false,
        },
        16,
    ));
    let template = spec(
        tgtd.port,
        Work::Sr {
            scsi_id: id.clone(),
            op: SrOp::Scan,
        },
        CHAP.1,
        MUTUAL.1,
    );
    let mut server = disk::DiskServer::new(Arc::clone(&channel), vdi, template);

    struct Sleep;
    impl Wait for Sleep {
        fn wait(&mut self) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let device_channel = Arc::clone(&channel);
    let device = std::thread::spawn(move || {
        let mut dev = ChannelDevice::new(device_channel, Sleep);
        let mut model = vec![0u8; size as usize];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut ops = 0;
        for _ in 0..OPS {
            let r = next();
            // Clusters are 1 MiB: spans that cross them, start inside
            // them, and land on clusters written before or never.
            let count = 1 + (r >> 8) % 300;
            let lba = (r >> 20) % (blocks - count);
            let (at, len) = ((lba * 512) as usize, (count * 512) as usize);
            match r % 5 {
                0 | 1 => {
                    let data: Vec<u8> = (0..len).map(|i| (i as u64 ^ r) as u8).collect();
                    dev.write_blocks(lba, &data).expect("write");
                    model[at..at + len].copy_from_slice(&data);
                }
                2 => dev.flush().expect("flush"),
                _ => {
                    let mut buf = vec![0u8; len];
                    dev.read_blocks(lba, &mut buf).expect("read");
                    assert!(buf == model[at..at + len], "read at {lba} differs");
                }
            }
            ops += 1;
        }
        // Out of range is refused before reaching the LUN.
        let mut buf = vec![0u8; 1024];
        assert!(dev.read_blocks(blocks - 1, &mut buf).is_err());
        (ops, model)
    });

    // The serving loop, as the poll loop runs it: the disk's session (held
    // across requests) and one batch job at a time beside it. Once, the
    // session's connection is cut: what it had in flight is served again.
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let random: Vec<u8> = (0..RANDOM_BYTES as u8).map(|i| i ^ 0xa7).collect();
    // Jobs whose result is in may still be logging out beside their successors.
    let mut jobs: Vec<(bool, Job, StdLink)> = Vec::new();
    let (mut batches, mut sessions, mut cut) = (0, 0, false);
    let mut fast = Figures::default();
    let mut serve =
        |server: &mut disk::DiskServer, jobs: &mut Vec<(bool, Job, StdLink)>, cut: &mut bool| {
            while let Some(job) = server.next_job() {
                let (spec, session) = match job {
                    disk::DiskJob::Session(spec) => {
                        sessions += 1;
                        (spec, true)
                    }
                    disk::DiskJob::Batch(spec) => {
                        batches += 1;
                        (spec, false)
                    }
                };
                let link = StdLink::connect(spec.portal);
                // Each job its own ISID: the same one would reinstate (end)
                // the other's session.
                let mut random = random.clone();
                random[RANDOM_BYTES - 1] ^= (sessions * 64 + batches) as u8;
                jobs.push((session, Job::new(spec, now(), &random).expect("job"), link));
            }
            for (session, job, link) in jobs.iter_mut() {
                if *session && !*cut && job.figures().bytes_read > 256 * 1024 {
                    // A connection reset under load.
                    *cut = true;
                    link.close();
                }
                job.poll(link, now());
                match job.take_result() {
                    Some(r) if *session => {
                        let f = job.figures();
                        fast.bytes_read += f.bytes_read;
                        fast.bytes_written += f.bytes_written;
                        server.session_ended(r);
                    }
                    Some(r) => server.finished(r),
                    None => {}
                }
            }
            jobs.retain(|(_, job, _)| !job.closed());
        };
    while !device.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(100),
            "the model test did not finish"
        );
        serve(&mut server, &mut jobs, &mut cut);
        std::thread::sleep(Duration::from_micros(200));
    }
    // Detached: the session logs out once its commands are done.
    server.close();
    while !jobs.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(110),
            "the session did not end"
        );
        serve(&mut server, &mut jobs, &mut cut);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        cut,
        "the session served reads before its connection was cut"
    );
    assert!(sessions >= 2, "a new session after the cut ({sessions})");
    assert!(fast.bytes_read > 0 && fast.bytes_written > 0, "{fast:?}");
    let (ops, model) = device.join().expect("the device thread");
    assert_eq!(ops, OPS);
    assert!(batches > 0, "allocating writes go through the SR");
    // What the disk holds on the LUN, read back by plain jobs.
    let Ok(JobOutput::Data(back)) = sr(
        tgtd.port,
        &id,
        SrOp::ReadVdi {
            uuid: vdi,
            offset: 0,
            len: size as u32,
        },
    ) else {
        panic!("read back");
    };
    assert!(back == model, "the LUN holds what the model holds");
    assert!(channel.is_closed());
}

/// A job whose connection went away (its interface removed) ends with the
/// reason, reported once, and counts as closed.
/// An ISO library on tgtd, as the upload path drives it: an ISO begun,
/// written a piece per job, finished read-only; a second of its name is
/// refused; an unfinished one does not keep the SR from being destroyed.
#[test]
fn an_iso_library_on_tgtd_takes_an_iso_in_pieces() {
    use storage::sr::SrType;
    let tgtd = Tgtd::start();
    let (luns, _) = run(spec(tgtd.port, Work::Luns, CHAP.1, MUTUAL.1));
    let Ok(JobOutput::Luns(luns)) = luns else {
        panic!("LUNs: {luns:?}");
    };
    let id = luns[0].scsi_id.clone();
    let format = SrOp::Format {
        uuid: [0x61; 16],
        sr_type: SrType::Iso,
    };
    let Ok(JobOutput::Sr(formatted)) = sr(tgtd.port, &id, format) else {
        panic!("format");
    };
    assert_eq!(formatted.sr_type, SrType::Iso);
    let iso: Vec<u8> = (0..(1usize << 20) + 4096)
        .map(|i| (i % 233) as u8)
        .collect();
    let create = |uuid: [u8; 16]| SrOp::CreateVdi {
        uuid,
        name: String::from("a.iso"),
        size: iso.len() as u64,
    };
    assert!(matches!(
        sr(tgtd.port, &id, create([0x62; 16])),
        Ok(JobOutput::Sr(_))
    ));
    for (i, piece) in iso.chunks(1 << 20).enumerate() {
        let write = SrOp::WriteVdi {
            uuid: [0x62; 16],
            offset: (i << 20) as u64,
            data: Chunk(piece.to_vec().into()),
        };
        let Ok(JobOutput::Sr(s)) = sr(tgtd.port, &id, write) else {
            panic!("piece {i}");
        };
        assert!(!s.vdis[0].read_only, "read-only before it is finished");
    }
    let finish = SrOp::FinishIso { uuid: [0x62; 16] };
    let Ok(JobOutput::Sr(done)) = sr(tgtd.port, &id, finish) else {
        panic!("finish");
    };
    assert_eq!(done.vdis.len(), 1);
    assert!(done.vdis[0].read_only && !done.vdis[0].is_a_snapshot);
    assert_eq!(done.vdis[0].name, "a.iso");
    let read = SrOp::ReadVdi {
        uuid: [0x62; 16],
        offset: 0,
        len: iso.len() as u32,
    };
    assert_eq!(sr(tgtd.port, &id, read), Ok(JobOutput::Data(iso.clone())));
    let write = SrOp::WriteVdi {
        uuid: [0x62; 16],
        offset: 0,
        data: Chunk(alloc::vec![0u8; 512].into()),
    };
    assert!(matches!(sr(tgtd.port, &id, write), Err(JobError::Sr(_))));
    assert!(matches!(
        sr(tgtd.port, &id, create([0x63; 16])),
        Err(JobError::Sr(_))
    ));
    // With the ISO: not destroyed. With an unfinished one only: destroyed.
    assert!(matches!(
        sr(tgtd.port, &id, SrOp::Wipe),
        Err(JobError::Sr(_))
    ));
    let delete = SrOp::DeleteVdi { uuid: [0x62; 16] };
    assert!(matches!(sr(tgtd.port, &id, delete), Ok(JobOutput::Sr(_))));
    let mut other = create([0x64; 16]);
    if let SrOp::CreateVdi { name, .. } = &mut other {
        *name = String::from("cut.iso");
    }
    assert!(matches!(sr(tgtd.port, &id, other), Ok(JobOutput::Sr(_))));
    assert!(matches!(
        sr(tgtd.port, &id, SrOp::Wipe),
        Ok(JobOutput::Sr(_))
    ));
    assert_eq!(sr(tgtd.port, &id, SrOp::Probe), Ok(JobOutput::NoSr));
}

#[test]
fn an_aborted_job_ends_with_the_reason_once() {
    let random = [7u8; RANDOM_BYTES];
    let mut job = Job::new(spec(9, Work::Luns, CHAP.1, MUTUAL.1), 0, &random).expect("job");
    assert!(!job.closed());
    let gone = JobError::Unreachable(String::from("interface eth1 went away"));
    job.abort(gone.clone());
    assert!(job.closed());
    assert_eq!(job.take_result(), Some(Err(gone)));
    assert_eq!(job.take_result(), None);
}
