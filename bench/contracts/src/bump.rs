//! A bump arena as the global allocator, for the `records-bump` candidate:
//! the canonical ABI's allocations (every string and list the host lowers
//! calls `cabi_realloc`, which is this allocator) cost a pointer bump, and
//! their frees a counter decrement.
//!
//! When is it safe to start the arena over? Not at the start of `validate`
//! (the host has already lowered the arguments into it by then), nor at its
//! end (a returned `deny` message is freed later, by the post-return
//! function). So the arena counts its live blocks and starts over when the
//! last one is freed: after each call, whatever order the frees come in.
//! A block that is never freed only stops the arena from starting over;
//! the arena then fills up and allocation falls back to the system
//! allocator, which is slower but still sound. [`persistent`] keeps state
//! meant to outlive a call (settings, a vocabulary) out of the arena, so
//! it does not pin it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};

/// Far more than one call of these candidates takes (a few hundred bytes).
const ARENA_BYTES: usize = 64 << 10;

#[repr(C, align(16))]
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    /// The offset of the first free byte.
    top: Cell<usize>,
    /// Blocks handed out and not yet freed.
    live: Cell<u32>,
    /// While set, allocations go to the system allocator (see [`persistent`]).
    bypass: Cell<bool>,
    served: Cell<u64>,
    fallback: Cell<u64>,
    resets: Cell<u64>,
    high_water: Cell<usize>,
}

// SAFETY: a wasm32-wasip2 component instance has one thread (lib.rs refuses
// to build this module for a target with atomics), so the cells are never
// reached from two threads.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_BYTES]),
    top: Cell::new(0),
    live: Cell::new(0),
    bypass: Cell::new(false),
    served: Cell::new(0),
    fallback: Cell::new(0),
    resets: Cell::new(0),
    high_water: Cell::new(0),
};

struct Bump;

#[global_allocator]
static GLOBAL: Bump = Bump;

impl Arena {
    fn base(&self) -> *mut u8 {
        self.bytes.get().cast()
    }

    /// The block's offset in the arena, if it is an arena block.
    fn offset_of(&self, ptr: *mut u8) -> Option<usize> {
        let offset = (ptr as usize).wrapping_sub(self.base() as usize);
        (offset < ARENA_BYTES).then_some(offset)
    }

    /// A block of `layout` from the arena, if it fits.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if self.bypass.get() {
            return None;
        }
        let base = self.base() as usize;
        // Align the address, not the offset: the arena is only 16-aligned.
        let start = (base + self.top.get())
            .checked_next_multiple_of(layout.align())?
            .checked_sub(base)?;
        let end = start.checked_add(layout.size())?;
        if end > ARENA_BYTES {
            self.fallback.set(self.fallback.get() + 1);
            return None;
        }
        self.top.set(end);
        self.live.set(self.live.get() + 1);
        self.served.set(self.served.get() + 1);
        self.high_water.set(self.high_water.get().max(end));
        // SAFETY: start <= end <= ARENA_BYTES, inside the arena.
        Some(unsafe { self.base().add(start) })
    }

    /// Frees the arena block at `offset` of `size` bytes.
    fn free(&self, offset: usize, size: usize) {
        let live = self.live.get() - 1;
        self.live.set(live);
        if live == 0 {
            self.top.set(0);
            self.resets.set(self.resets.get() + 1);
        } else if offset + size == self.top.get() {
            // The last block handed out: its bytes can be handed out again.
            self.top.set(offset);
        }
    }
}

// SAFETY: arena blocks are disjoint ranges of ARENA below `top`, aligned as
// asked; a range is handed out again only once it is freed (it is the top
// block) or once no block at all is live. Other blocks are the system
// allocator's, and are returned to it.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match ARENA.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout, as GlobalAlloc requires.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match ARENA.offset_of(ptr) {
            Some(offset) => ARENA.free(offset, layout.size()),
            // SAFETY: not an arena block, so the system allocator's.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let Some(offset) = ARENA.offset_of(ptr) {
            // The top block grows or shrinks where it is.
            let end = offset.checked_add(new_size);
            if !ARENA.bypass.get()
                && offset + layout.size() == ARENA.top.get()
                && end.is_some_and(|end| end <= ARENA_BYTES)
            {
                let end = offset + new_size;
                ARENA.top.set(end);
                ARENA.high_water.set(ARENA.high_water.get().max(end));
                return ptr;
            }
        }
        // SAFETY: GlobalAlloc::realloc's contract makes this layout valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size, as the caller promised.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and at least this long, and
            // distinct (the old one is still allocated).
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Runs `make` with the arena bypassed, for values that outlive a call.
pub fn persistent<T>(make: impl FnOnce() -> T) -> T {
    let before = ARENA.bypass.replace(true);
    let value = make();
    ARENA.bypass.set(before);
    value
}

/// What the arena has done so far.
pub struct Stats {
    pub served: u64,
    pub fallback: u64,
    pub resets: u64,
    pub live: u32,
    pub high_water: usize,
}

pub fn stats() -> Stats {
    Stats {
        served: ARENA.served.get(),
        fallback: ARENA.fallback.get(),
        resets: ARENA.resets.get(),
        live: ARENA.live.get(),
        high_water: ARENA.high_water.get(),
    }
}
