//! IscsiLun, Client and session recovery against an in-memory target.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};
use embedded_io::ErrorKind;

use super::*;
use crate::iscsi::login::LoginConfig;
use crate::iscsi::params::Offer;
use crate::iscsi::pdu::{
    self, DataIn, Decoder, Digests, LoginResponse, LogoutResponse, NopIn, RESERVED_TAG, Repr,
    ScsiResponse, Stage,
};
use crate::iscsi::session::{Event, Timers};
use crate::iscsi::text::TextPairs;
use crate::scsi::opcode;
use spin::Mutex;

const BLOCKS: u64 = 2048;

/// A minimal target: logs in without auth, answers READ CAPACITY(16),
/// TEST UNIT READY and READ(16) (block n holds the byte n), and can be
/// told to drop the connection on reads.
struct FakeTarget {
    rx: Decoder,
    tx: Vec<u8>,
    stat_sn: u32,
    closed: bool,
    drop_on_read: bool,
    /// The sizes of the batched reads the client asked for.
    batches: Arc<Mutex<Vec<usize>>>,
}

impl FakeTarget {
    fn new(drop_on_read: bool) -> Self {
        FakeTarget {
            rx: Decoder::new(1 << 20),
            tx: Vec::new(),
            stat_sn: 1,
            closed: false,
            drop_on_read,
            batches: Arc::default(),
        }
    }

    fn send(&mut self, repr: Repr, data: &[u8]) {
        pdu::encode(&mut self.tx, &repr, data, Digests::default()).expect("encode");
    }

    fn next_stat_sn(&mut self) -> u32 {
        self.stat_sn += 1;
        self.stat_sn - 1
    }

    fn answer(&mut self, repr: Repr) {
        match repr {
            Repr::LoginRequest(r) => {
                let mut t = TextPairs::new();
                if r.csg == Stage::Security {
                    t.push("AuthMethod", "None");
                } else {
                    for (k, v) in [
                        ("HeaderDigest", "None"),
                        ("DataDigest", "None"),
                        ("MaxRecvDataSegmentLength", "8192"),
                        ("InitialR2T", "Yes"),
                        ("ImmediateData", "Yes"),
                        ("MaxBurstLength", "262144"),
                        ("FirstBurstLength", "65536"),
                    ] {
                        t.push(k, v);
                    }
                }
                let stat_sn = self.next_stat_sn();
                let resp = Repr::LoginResponse(LoginResponse {
                    transit: r.transit,
                    cont: false,
                    csg: r.csg,
                    nsg: r.nsg,
                    version_max: 0,
                    version_active: 0,
                    isid: r.isid,
                    tsih: if r.nsg == Stage::FullFeature { 7 } else { 0 },
                    itt: r.itt,
                    stat_sn,
                    exp_cmd_sn: r.cmd_sn,
                    max_cmd_sn: r.cmd_sn.wrapping_add(32),
                    status_class: 0,
                    status_detail: 0,
                });
                self.send(resp, &t.encode());
            }
            Repr::ScsiCommand(c) => {
                let (exp, max) = (c.cmd_sn.wrapping_add(1), c.cmd_sn.wrapping_add(33));
                let stat_sn = self.next_stat_sn();
                let data_in = || {
                    Repr::DataIn(DataIn {
                        final_: true,
                        ack: false,
                        overflow: false,
                        underflow: false,
                        has_status: true,
                        status: 0,
                        lun: c.lun,
                        itt: c.itt,
                        ttt: RESERVED_TAG,
                        stat_sn,
                        exp_cmd_sn: exp,
                        max_cmd_sn: max,
                        data_sn: 0,
                        offset: 0,
                        residual: 0,
                    })
                };
                match c.cdb[0] {
                    opcode::SERVICE_ACTION_IN_16 => {
                        let mut d = vec![0u8; 32];
                        d[..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
                        d[8..12].copy_from_slice(&512u32.to_be_bytes());
                        self.send(data_in(), &d);
                    }
                    opcode::READ_16 if self.drop_on_read => self.closed = true,
                    opcode::READ_16 => {
                        let lba = u64::from_be_bytes(c.cdb[2..10].try_into().expect("lba"));
                        let d: Vec<u8> = (0..c.expected_len as u64)
                            .map(|i| (lba + i / 512) as u8)
                            .collect();
                        self.send(data_in(), &d);
                    }
                    _ => self.send(
                        Repr::ScsiResponse(ScsiResponse {
                            bidi_overflow: false,
                            bidi_underflow: false,
                            overflow: false,
                            underflow: false,
                            response: 0,
                            status: 0,
                            itt: c.itt,
                            snack_tag: 0,
                            stat_sn,
                            exp_cmd_sn: exp,
                            max_cmd_sn: max,
                            exp_data_sn: 0,
                            bidi_residual: 0,
                            residual: 0,
                        }),
                        &[],
                    ),
                }
            }
            Repr::NopOut(n) if n.itt != RESERVED_TAG => {
                let stat_sn = self.next_stat_sn();
                self.send(
                    Repr::NopIn(NopIn {
                        lun: 0,
                        itt: n.itt,
                        ttt: RESERVED_TAG,
                        stat_sn,
                        exp_cmd_sn: n.cmd_sn,
                        max_cmd_sn: n.cmd_sn.wrapping_add(32),
                    }),
                    &[],
                );
            }
            Repr::LogoutRequest(l) => {
                let stat_sn = self.next_stat_sn();
                self.send(
                    Repr::LogoutResponse(LogoutResponse {
                        response: 0,
                        itt: l.itt,
                        stat_sn,
                        exp_cmd_sn: l.cmd_sn,
                        max_cmd_sn: l.cmd_sn.wrapping_add(32),
                        time2wait: 0,
                        time2retain: 0,
                    }),
                    &[],
                );
            }
            _ => {}
        }
    }
}

impl embedded_io::ErrorType for FakeTarget {
    type Error = ErrorKind;
}

impl embedded_io::Write for FakeTarget {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if self.closed {
            return Err(ErrorKind::BrokenPipe);
        }
        self.rx.feed(buf);
        let mut reprs = Vec::new();
        while let Some(f) = self.rx.next_frame() {
            reprs.push(f.expect("initiator sent a valid PDU").repr);
        }
        for r in reprs {
            self.answer(r);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl embedded_io::Read for FakeTarget {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if self.closed {
            return Ok(0);
        }
        if self.tx.is_empty() {
            return Err(ErrorKind::TimedOut);
        }
        let n = buf.len().min(self.tx.len());
        buf[..n].copy_from_slice(&self.tx[..n]);
        self.tx.drain(..n);
        Ok(n)
    }
}

impl Transport for FakeTarget {
    fn read_batch(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.batches.lock().push(buf.len());
        embedded_io::Read::read(self, buf)
    }
}

/// A clock that advances 1 ms per reading.
#[derive(Debug, Default)]
struct TickClock(Cell<u64>);

impl Clock for TickClock {
    fn now_ms(&self) -> u64 {
        let t = self.0.get() + 1;
        self.0.set(t);
        t
    }
}

fn client(drop_on_read: bool) -> Client<FakeTarget, TickClock> {
    client_on(FakeTarget::new(drop_on_read))
}

fn client_on(target: FakeTarget) -> Client<FakeTarget, TickClock> {
    let cfg = LoginConfig {
        initiator_name: "iqn.2026-11.dev.keel:unit".into(),
        target_name: Some("iqn.2026-11.dev.keel:fake".into()),
        isid: [0xc0, 0, 0, 0, 0, 9],
        tsih: 0,
        cid: 0,
        initial_cmd_sn: 1,
        chap: None,
        offer: Offer::default(),
    };
    Client::login(target, TickClock::default(), cfg, Timers::default(), 10_000)
        .expect("login to the fake target")
}

struct FakeReconnect {
    healthy: bool,
    calls: Arc<AtomicU32>,
}

impl Reconnect<FakeTarget, TickClock> for FakeReconnect {
    fn reconnect(
        &mut self,
        _attempt: u32,
        time2wait_ms: u64,
    ) -> Result<Client<FakeTarget, TickClock>, ReconnectError> {
        assert_eq!(time2wait_ms, 2000, "negotiated DefaultTime2Wait");
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(client(!self.healthy))
    }
}

#[test]
fn reads_through_the_block_device() {
    let mut lun = IscsiLun::open(client(false), 1).expect("open");
    assert_eq!((lun.block_size(), lun.num_blocks()), (512, BLOCKS));
    let mut buf = vec![0u8; 3 * 512];
    lun.read_blocks(10, &mut buf).expect("read");
    assert!(buf[..512].iter().all(|&b| b == 10) && buf[1024..].iter().all(|&b| b == 12));
    assert!(matches!(
        lun.read_blocks(BLOCKS, &mut buf[..512]),
        Err(BlockError::OutOfRange { .. })
    ));
    lun.into_client().logout().expect("logout");
}

#[test]
fn a_dropped_connection_is_recovered_transparently() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut lun = IscsiLun::open(client(true), 1)
        .expect("open")
        .with_reconnect(Box::new(FakeReconnect {
            healthy: true,
            calls: calls.clone(),
        }));
    let mut buf = vec![0u8; 512];
    lun.read_blocks(5, &mut buf)
        .expect("read across a reconnect");
    assert!(buf.iter().all(|&b| b == 5));
    assert_eq!((calls.load(Ordering::SeqCst), lun.recoveries()), (1, 1));
}

#[test]
fn recovery_is_bounded_per_request() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut lun = IscsiLun::open(client(true), 1)
        .expect("open")
        .with_reconnect(Box::new(FakeReconnect {
            healthy: false,
            calls: calls.clone(),
        }));
    let mut buf = vec![0u8; 512];
    assert_eq!(lun.read_blocks(5, &mut buf), Err(BlockError::Io));
    assert_eq!(
        calls.load(Ordering::SeqCst) as usize,
        RECOVERIES_PER_REQUEST
    );
    assert!(matches!(
        lun.last_error(),
        Some(LunError::Client(ClientError::ConnectionClosed))
    ));
}

#[test]
fn replies_are_read_in_batches_at_high_queue_depth() {
    let target = FakeTarget::new(false);
    let batches = target.batches.clone();
    let mut c = client_on(target);
    let read = |lba: u64| Command {
        lun: 0,
        cdb: scsi::read_16(lba, 8),
        transfer: DataTransfer::Read(4096),
    };
    // One command at a time: plain reads.
    c.execute(read(0)).expect("read");
    assert!(batches.lock().is_empty());

    let tags: Vec<_> = (0..16)
        .map(|i| c.submit(read(i * 8)).expect("submit"))
        .collect();
    let mut done = 0;
    while done < tags.len() {
        if let Event::Command { tag, result } = c.next_event().expect("event") {
            let lba = 8 * tags.iter().position(|t| *t == tag).expect("ours") as u64;
            let data = result.expect("read").data;
            assert_eq!((data[0], data[4095]), (lba as u8, (lba + 7) as u8));
            done += 1;
        }
    }
    // The first read waited for a quarter of the 16 replies (48-byte
    // header and 4 KiB each); once fewer than 8 were due it read plainly.
    let b = batches.lock().clone();
    assert_eq!(b.first(), Some(&(16 * (48 + 4096) / 4)), "{b:?}");
    assert!(b.len() < 16, "{b:?}");
}
