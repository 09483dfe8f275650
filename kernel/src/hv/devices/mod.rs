//! Device models guests expect. Each is a plain state struct plus logic that
//! is generic over its side effects, so it is unit-tested without a VM.

pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod pm;
pub mod rtc;
pub mod uart;
