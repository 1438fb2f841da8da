//! The bump allocator (see the crate docs).

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32::{memory_grow, memory_size};
use core::cell::Cell;
use core::ptr;

/// The WebAssembly page size.
const PAGE: usize = 65536;

/// A global allocator that never frees (see the crate docs).
pub struct Leak {
    /// The next free byte; 0 before the first allocation.
    next: Cell<usize>,
    /// The end of the memory this allocator may use.
    end: Cell<usize>,
    /// Where the last block handed out starts, so that growing it in place
    /// (a `Vec` being pushed to) needs no copy.
    last: Cell<usize>,
}

// SAFETY: a wasm32-wasip2 component has one thread; nothing here is ever
// shared between threads.
unsafe impl Sync for Leak {}

impl Leak {
    /// A new allocator; it starts at the module's heap base on first use.
    pub const fn new() -> Leak {
        Leak {
            next: Cell::new(0),
            end: Cell::new(0),
            last: Cell::new(0),
        }
    }

    /// Reserves `size` bytes aligned to `align`, growing the memory as
    /// needed; `None` when the memory cannot grow (the host's limit).
    fn bump(&self, size: usize, align: usize) -> Option<usize> {
        if self.end.get() == 0 {
            unsafe extern "C" {
                // Set by the linker: the first byte after the stack and the
                // static data.
                static __heap_base: u8;
            }
            self.next.set(&raw const __heap_base as usize);
            self.end.set(memory_size(0) * PAGE);
        }
        let start = self.next.get().checked_add(align - 1)? & !(align - 1);
        let stop = start.checked_add(size)?;
        if stop > self.end.get() {
            let pages = (stop - self.end.get()).div_ceil(PAGE);
            if memory_grow(0, pages) == usize::MAX {
                return None;
            }
            self.end.set(self.end.get() + pages * PAGE);
        }
        self.next.set(stop);
        self.last.set(start);
        Some(start)
    }
}

impl Default for Leak {
    fn default() -> Self {
        Leak::new()
    }
}

// SAFETY: every block handed out is fresh memory inside the linear memory,
// aligned as asked and never handed out twice (the pointer only moves up);
// `realloc` grows the last block in place only into unused memory.
unsafe impl GlobalAlloc for Leak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.bump(layout.size(), layout.align())
            .map_or(ptr::null_mut(), |a| a as *mut u8)
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = block as usize;
        if start == self.last.get() {
            // The last block: move the end instead of copying.
            let Some(stop) = start.checked_add(new_size) else {
                return ptr::null_mut();
            };
            if stop > self.next.get() && self.bump(stop - self.next.get(), 1).is_none() {
                return ptr::null_mut();
            }
            self.next.set(stop);
            self.last.set(start);
            return block;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: as `GlobalAlloc::realloc` documents: a new block, the old
        // bytes copied, the old block (never) freed.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
            }
            new
        }
    }
}
