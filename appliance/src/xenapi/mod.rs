//! The XenAPI service: XML-RPC on `POST /`, `/RPC2` and `/xmlrpc`,
//! JSON-RPC 1.0/2.0 on `POST /jsonrpc`, over one object model declared in
//! [`schema`].
//!
//! Wire rules kept from xapi: API errors are HTTP 200 with the error in the
//! body; XML-RPC results are wrapped in `{Status, Value}` except
//! `system.listMethods`; the session is checked before the method name is
//! looked up. A body that is not a call at all gets HTTP 400.

mod auth;
mod codec;
mod db;
mod dispatch;
mod error;
mod events;
pub mod fuzz;
mod host;
mod jsonrpc;
mod layout;
pub mod persist;
pub mod schema;
mod service;
mod value;
mod xml;
mod xmlrpc;

pub use auth::{Auth, AuthError};
pub use dispatch::all_methods;
pub use error::ApiError;
pub use host::{API_VERSION, HostFacts, ManagementFacts};
pub use layout::{
    BondFacts, MANAGEMENT as MANAGEMENT_NETWORK, NetworkLayout, NicFacts, VlanFacts,
    from_config as network_layout, mode_name as bond_mode_name, named_nics, unbond_uplink,
};
pub use persist::{Change, StateStore};
pub use service::{
    API_ORIGIN, Attached, CONSOLE_PATH, DISK_QUEUE_DEPTH, EXPORT_RAW_PATH, IMPORT_RAW_PATH,
    IpChange, NetRequest, SESSION_IDLE_TIMEOUT, ServerCertificate, UplinkSpec, UploadOutcome,
    VifTarget, VmDisk, VmNic, XenApi,
};
pub use value::Value;
pub use xml::XmlError;
