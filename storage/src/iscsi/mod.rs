//! The iSCSI initiator (RFC 7143): wire formats, login and session state
//! machines (sans-I/O: bytes in, bytes out, `now` from the caller).

pub mod chap;
pub mod client;
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
