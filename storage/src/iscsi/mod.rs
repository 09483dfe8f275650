//! The iSCSI initiator (RFC 7143).
//!
//! Layers, bottom up:
//! - [`pdu`]: every PDU the initiator sends or receives as `Packet`/`Repr`,
//!   framing with padding and [`crc32c`] digests, a decoder that cuts PDUs
//!   out of a byte stream; [`text`] keys with multi-PDU continuation.
//! - [`login`]: the login stage machine (Security with [`chap`] one-way or
//!   mutual, Operational with [`params`] negotiation, FullFeature).
//! - [`session`]: the full-feature phase: CmdSN window, many tasks in
//!   flight, immediate/unsolicited data and R2T honouring the target's
//!   limits, NOP handling, task management and timeout escalation, text
//!   requests (SendTargets), logout.
//!
//! `login` and `session` are sans-I/O: they consume received bytes, queue
//! bytes to send and take `now` from the caller, so the same code runs over
//! a smoltcp socket in the image and over `std::net` hosted. [`client`]
//! drives them over any `embedded-io` stream; [`lun`] turns a client into a
//! [`crate::BlockDevice`] with ERL-0 session recovery; [`tcp`] (hosted)
//! provides the TCP transport and one-call helpers.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use storage::BlockDevice;
//! use storage::iscsi::{params::Offer, tcp};
//!
//! let target = tcp::Target {
//!     host: "192.0.2.20".into(),
//!     port: 3260,
//!     initiator_name: "iqn.2026-11.dev.keel:host1".into(),
//!     target_name: Some("iqn.2026-11.example:lun-pool".into()),
//!     chap: None,
//!     mutual: None,
//!     offer: Offer::default(),
//! };
//! for t in tcp::discover(&target)? {
//!     println!("{} at {:?}", t.name, t.portals());
//! }
//! let mut lun = tcp::open_recovering_lun(&target, 1, Duration::from_secs(120))?;
//! let mut block = vec![0u8; lun.block_size() as usize];
//! lun.read_blocks(0, &mut block)?;
//! # Ok(())
//! # }
//! ```

pub mod chap;
pub mod client;
pub mod conn;
pub mod crc32c;
pub mod login;
pub mod params;
pub mod pdu;
pub mod serial;
pub mod session;
pub mod text;

/// An iSCSI Qualified Name or other iSCSI name, as text.
pub type IscsiName = alloc::string::String;
pub mod lun;
#[cfg(all(feature = "std", not(target_os = "none")))]
pub mod tcp;
pub mod url;
