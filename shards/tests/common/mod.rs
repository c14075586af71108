//! A counting allocator for the allocation tests: each thread counts its
//! own allocations (and reallocations), so a test measures exactly the
//! thread that runs the code under test. Each test binary installs it:
//! `#[global_allocator] static GLOBAL: common::Counting = common::Counting;`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local
// Cell touched with try_with, so it is safe during thread teardown too.
// SAFETY: every method forwards to the system allocator with the caller's
// arguments; counting touches only thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds GlobalAlloc\'s contract, which is System\'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far by the calling thread.
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}
