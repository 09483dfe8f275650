//! Host configuration: first-boot settings of one host.
//!
//! An operator writes TOML; the host tool (`host-config`, `std` feature)
//! validates it and compiles it into a compact boot module that the appliance
//! decodes at boot (`no_std`).
//!
//! It also holds what the appliance and the image builder share about boot
//! media: the disk layout, the GRUB environment block and signed images
//! (`no_std`), and the builder of the disk image, ISO and PXE tree (`std`).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod artifacts;
mod base64;
pub mod biosboot;
mod crc32;
pub mod disk_layout;
pub mod esp;
pub mod fuzz;
pub mod gpt;
pub mod grubenv;
pub mod module;
pub mod password;
pub mod schema;
pub mod signed;
#[cfg(feature = "std")]
pub mod toml_front;
#[cfg(feature = "std")]
pub mod tool;
pub mod upgrade;
pub mod validate;

pub use module::{DecodeError, decode, encode};
pub use password::{
    DEFAULT_PBKDF2_ITERATIONS, PasswordHash, PasswordHashError, hash_password, verify_password,
};
#[cfg(feature = "std")]
pub use password::{RandomnessUnavailable, hash_password_random};
pub use schema::{
    Bond, BondHashing, BondMode, DEFAULT_MTU, HostConfig, IpMode, KeyKind, LacpRate, Management,
    Network, NetworkPurpose, StaticIpv4, SuppliedTls, Vlan,
};
#[cfg(feature = "std")]
pub use toml_front::{ConfigError, parse_toml};
#[cfg(feature = "std")]
pub use tool::{compile_file, describe, load_file, summary};
pub use validate::{Field, ValidationError};
