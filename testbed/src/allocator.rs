//! The test bed binary's allocator: mimalloc, as the production binary uses, or glibc's malloc
//! when [`ALLOCATOR_VARIABLE`] says `system` — the benchmark compares the two for RSS, and
//! massif sees only malloc — with a count of the bytes live, which the benchmark reads as the
//! operator's heap per decision.
//!
//! A global allocator is chosen at compile time; no crate switches it at start, so this one
//! does. The choice is made at the first allocation, before `main`, and never changes, so every
//! block is freed by the allocator that gave it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// `system` for glibc's malloc; anything else, or unset, for mimalloc.
pub const ALLOCATOR_VARIABLE: &str = "SELFUPGRADE_TESTBED_ALLOCATOR";
/// A file the binary writes its live heap bytes to, twice a second, while it runs.
pub const HEAP_FILE_VARIABLE: &str = "SELFUPGRADE_TESTBED_HEAP_FILE";

const UNDECIDED: u8 = 0;
const MIMALLOC: u8 = 1;
const SYSTEM: u8 = 2;

pub struct TestbedAllocator {
    choice: AtomicU8,
    live: AtomicUsize,
}

impl TestbedAllocator {
    pub const fn new() -> Self {
        Self {
            choice: AtomicU8::new(UNDECIDED),
            live: AtomicUsize::new(0),
        }
    }

    /// Bytes allocated and not yet freed (as asked for, without the allocator's own overhead).
    pub fn live_bytes(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn uses_system(&self) -> bool {
        match self.choice.load(Ordering::Relaxed) {
            MIMALLOC => false,
            SYSTEM => true,
            _ => {
                let choice = choice_from_environment();
                self.choice.store(choice, Ordering::Relaxed);
                choice == SYSTEM
            }
        }
    }
}

impl Default for TestbedAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads [`ALLOCATOR_VARIABLE`] with libc's `getenv`, which does not allocate (`std::env` does,
/// and would call back into the allocator being decided).
fn choice_from_environment() -> u8 {
    // SAFETY: the name is a NUL-terminated literal; `getenv` returns null or a pointer to a
    // NUL-terminated string owned by the environment, read here before anything could change it.
    let value = unsafe { libc::getenv(c"SELFUPGRADE_TESTBED_ALLOCATOR".as_ptr()) };
    if value.is_null() {
        return MIMALLOC;
    }
    // SAFETY: non-null, NUL-terminated (above).
    match unsafe { CStr::from_ptr(value) }.to_bytes() {
        b"system" => SYSTEM,
        _ => MIMALLOC,
    }
}

// SAFETY: every call is forwarded to one of two allocators that uphold `GlobalAlloc`'s contract,
// always the same one (the choice never changes once made); the count has no effect on blocks.
unsafe impl GlobalAlloc for TestbedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let block = unsafe {
            if self.uses_system() {
                System.alloc(layout)
            } else {
                mimalloc::MiMalloc.alloc(layout)
            }
        };
        if !block.is_null() {
            self.live.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let block = unsafe {
            if self.uses_system() {
                System.alloc_zeroed(layout)
            } else {
                mimalloc::MiMalloc.alloc_zeroed(layout)
            }
        };
        if !block.is_null() {
            self.live.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: the block came from the same allocator with this layout (caller's contract).
        unsafe {
            if self.uses_system() {
                System.dealloc(block, layout)
            } else {
                mimalloc::MiMalloc.dealloc(block, layout)
            }
        }
        self.live.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`, and `new_size` is the caller's to uphold.
        let moved = unsafe {
            if self.uses_system() {
                System.realloc(block, layout, new_size)
            } else {
                mimalloc::MiMalloc.realloc(block, layout, new_size)
            }
        };
        if !moved.is_null() {
            self.live.fetch_add(new_size, Ordering::Relaxed);
            self.live.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_bytes_follow_allocations_and_frees() {
        let allocator = TestbedAllocator::new();
        let layout = Layout::from_size_align(1000, 8).expect("layout");
        // SAFETY: a valid layout; the block is freed with it below.
        let block = unsafe { allocator.alloc(layout) };
        assert!(!block.is_null());
        assert_eq!(allocator.live_bytes(), 1000);
        // SAFETY: the block came from this allocator with `layout`.
        let block = unsafe { allocator.realloc(block, layout, 3000) };
        assert_eq!(allocator.live_bytes(), 3000);
        let grown = Layout::from_size_align(3000, 8).expect("layout");
        // SAFETY: the block now has the grown layout.
        unsafe { allocator.dealloc(block, grown) };
        assert_eq!(allocator.live_bytes(), 0);
    }

    #[test]
    fn the_variable_names_match_what_the_allocator_reads() {
        assert_eq!(
            c"SELFUPGRADE_TESTBED_ALLOCATOR".to_str(),
            Ok(ALLOCATOR_VARIABLE)
        );
    }
}
