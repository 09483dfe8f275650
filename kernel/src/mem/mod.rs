//! Physical memory: the direct map, the frame allocator and the heap.

pub mod frames;
#[cfg(target_os = "none")]
mod global;
pub mod layout;
#[cfg(target_os = "none")]
pub mod paging;

#[cfg(target_os = "none")]
pub use global::{
    MemoryStats, alloc_frames, direct, free_frames, heap_free_bytes, init, phys_to_virt, stats,
    virt_to_phys,
};

/// Base of the direct map: physical address `p` is mapped at `PHYS_OFFSET + p`.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
