//! Architecture support behind one façade.

pub mod x86_64;
