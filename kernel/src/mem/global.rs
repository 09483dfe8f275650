//! The kernel's global memory state, set up once on the BSP.

use core::ptr::NonNull;

use linked_list_allocator::LockedHeap;
use spin::Mutex;

use super::PHYS_OFFSET;
use super::frames::{FRAME_SIZE, FrameBitmap};
use super::layout::find_free_range;
use crate::bootinfo::BootInfo;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<Option<FrameBitmap<'static>>> = Mutex::new(None);
static TOTAL_BYTES: spin::Once<u64> = spin::Once::new();

/// Virtual address of physical address `p` in the direct map.
pub fn phys_to_virt(p: u64) -> u64 {
    p + PHYS_OFFSET
}

/// Physical address behind a kernel virtual address: the direct map, or the
/// identity-mapped kernel image and boot structures.
pub fn virt_to_phys(v: u64) -> u64 {
    if v >= PHYS_OFFSET { v - PHYS_OFFSET } else { v }
}

/// Memory figures for health reports.
#[derive(Debug, Clone, Copy)]
pub struct MemoryStats {
    pub total_bytes: u64,
    pub free_frame_bytes: u64,
    pub heap_free_bytes: u64,
}

pub fn stats() -> MemoryStats {
    let free_frames = FRAMES.lock().as_ref().map_or(0, |f| f.free_frames());
    MemoryStats {
        total_bytes: TOTAL_BYTES.get().copied().unwrap_or(0),
        free_frame_bytes: free_frames * FRAME_SIZE,
        heap_free_bytes: heap_free_bytes(),
    }
}

pub fn heap_free_bytes() -> u64 {
    HEAP.lock().free() as u64
}

/// Allocates `count` physically contiguous, zeroed frames aligned to `align`
/// frames; returns the physical address.
pub fn alloc_frames(count: u64, align: u64) -> Option<u64> {
    let phys = alloc_frames_uninit(count, align)?;
    // SAFETY: the frames were just allocated to us, are RAM, and are mapped in
    // the direct map; nothing else references them yet.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(phys) as *mut u8,
            0,
            (count * FRAME_SIZE) as usize,
        )
    };
    Some(phys)
}

/// Like [`alloc_frames`] without zeroing (for memory whose owner initialises
/// it anyway, such as the heap: zeroing 128 MiB costs half a second under emulation).
fn alloc_frames_uninit(count: u64, align: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc(count, align)
}

/// Returns frames obtained from [`alloc_frames`].
pub fn free_frames(phys: u64, count: u64) {
    if let Some(f) = FRAMES.lock().as_mut() {
        f.free(phys, count);
    }
}

/// Why memory could not be set up.
#[derive(Debug, Clone, Copy)]
pub enum MemInitError {
    NoRoomForBitmap(u64),
    NoRoomForHeap(u64),
}

/// Sets up the frame allocator from the boot memory map (keeping `reserved`
/// ranges out of it), extends the direct map over all RAM, and creates the heap.
pub fn init(bi: &BootInfo, reserved: &[(u64, u64)]) -> Result<(), MemInitError> {
    let max = bi.max_usable();
    let frames = max / FRAME_SIZE;
    let words = FrameBitmap::words_for(frames);
    let bytes = (words * 8) as u64;
    // The bitmap must sit in the part of RAM the boot tables already map (< 4 GiB).
    let at = find_free_range(&bi.memory, reserved, bytes, 0x10_0000, 1 << 32)
        .ok_or(MemInitError::NoRoomForBitmap(bytes))?;
    // SAFETY: `[at, at + bytes)` is usable RAM below 4 GiB (mapped by the boot
    // tables in the direct map), clear of the kernel and boot data, and is
    // reserved in the bitmap below, so nothing else will ever use it.
    let bits = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(at) as *mut u64, words) };
    let mut map = FrameBitmap::new(bits, frames);
    for r in bi
        .memory
        .iter()
        .filter(|r| r.kind == crate::bootinfo::MemKind::Usable)
    {
        map.release_range(r.start, r.len);
    }
    // Low memory holds firmware data and the AP trampoline.
    map.reserve_range(0, 0x10_0000);
    for &(s, l) in reserved {
        map.reserve_range(s, l);
    }
    map.reserve_range(at, bytes);
    TOTAL_BYTES.call_once(|| bi.usable_bytes());
    *FRAMES.lock() = Some(map);

    super::paging::map_ram_above_4g(bi);

    let heap_bytes = (bi.usable_bytes() / 16).clamp(16 << 20, 128 << 20);
    let heap_frames = heap_bytes / FRAME_SIZE;
    let heap =
        alloc_frames_uninit(heap_frames, 512).ok_or(MemInitError::NoRoomForHeap(heap_bytes))?;
    // SAFETY: the heap range was just allocated from the frame allocator, is
    // mapped in the direct map, and is handed to the allocator exactly once.
    unsafe {
        HEAP.lock()
            .init(phys_to_virt(heap) as *mut u8, heap_bytes as usize)
    };
    log::info!(
        "mem: {} MiB usable, frame bitmap at {:#x}, heap {} MiB at {:#x}",
        bi.usable_bytes() >> 20,
        at,
        heap_bytes >> 20,
        heap
    );
    Ok(())
}

/// A non-null pointer into the direct map for a physical address.
pub fn direct(p: u64) -> NonNull<u8> {
    NonNull::new(phys_to_virt(p) as *mut u8).unwrap_or(NonNull::dangling())
}
