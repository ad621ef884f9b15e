//! What every kflip fuzz target shares: an allocator that measures the peak
//! memory an input costs, and the check that it stays within a budget that
//! grows linearly with the input.
//!
//! libFuzzer's own `-malloc_limit_mb` needs a sanitizer's malloc hooks,
//! which a `-s none` (stable) build lacks; hence this allocator.
//! Allocations of 1 GiB or more are mapped lazily (`MAP_NORESERVE`) so that
//! a decoder that reserves capacity from a wire count, and then fails after
//! a few elements, costs address space rather than aborting the run; such an
//! allocation still counts against the budget in full.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Once;

/// Live bytes, and the most there were since the last reset.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// From this size on, memory is mapped without reserving swap.
const LAZY: usize = 1 << 30;

struct Counting;

fn lazy(layout: &Layout) -> bool {
    layout.size() >= LAZY && layout.align() <= 4096
}

fn grew(n: usize) {
    let live = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: forwards to the system allocator, or to anonymous mappings whose
// address and length come back in `dealloc`'s layout.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = if lazy(&layout) {
            let p = libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            }
        } else {
            System.alloc(layout)
        };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if lazy(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        if lazy(&layout) || lazy(&new) {
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            return p;
        }
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// How much memory an input may cost at its peak: `per_byte` times its
/// length plus `fixed`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    per_byte: usize,
    fixed: usize,
}

impl Budget {
    /// A budget of `per_byte` bytes per input byte plus `fixed` bytes.
    pub const fn new(per_byte: usize, fixed: usize) -> Budget {
        Budget { per_byte, fixed }
    }
}

/// Runs `entry` on `data` and, with a budget, fails if the peak of live
/// memory during the call rose above it.
pub fn within_budget(data: &[u8], budget: Option<Budget>, entry: fn(&[u8])) {
    static WARM: Once = Once::new();
    WARM.call_once(kflip::fuzzing::warm_up);
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    entry(data);
    let used = PEAK.load(Relaxed).saturating_sub(base);
    if let Some(b) = budget {
        let allowed = b
            .per_byte
            .saturating_mul(data.len())
            .saturating_add(b.fixed);
        assert!(
            used <= allowed,
            "a {}-byte input allocated {used} bytes at its peak (budget {allowed})",
            data.len()
        );
    }
}
