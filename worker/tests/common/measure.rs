//! The process's live heap, Rust's and C's, and its thread count, for
//! `examples/engine-peak.rs` and `tests/estimate.rs` (included by path: an example cannot
//! `mod common`).
//!
//! libheif and its codecs (libde265, dav1d, aom) allocate with C `malloc`, which a Rust
//! `#[global_allocator]` never sees. This binary therefore defines glibc's allocation entry
//! points itself (`malloc`, `calloc`, `realloc`, `free`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`): the dynamic linker binds every shared library's calls to
//! the executable's definitions first, as glibc documents for replacing malloc. Each one
//! counts and forwards to glibc's own allocator through its exported `__libc_*` names (no
//! `dlsym`, so no allocation inside the hook), sizing blocks with `malloc_usable_size` on both
//! sides so that a block counts the same when freed as when allocated. Rust's allocations go
//! through [`Counting`] (around mimalloc, the worker's allocator) into the same counter.
//!
//! Why not the alternatives: `mallinfo2()` is a snapshot, not a peak; the peak RSS of a child
//! process counts touched pages (a `calloc`ed 100 MB plane that the codec never writes is 0),
//! the libraries' code pages, and the allocator's cached free memory, so it neither bounds nor
//! reproduces the allocations the estimate is about. This counts every byte asked for, on
//! every thread (dav1d's workers included), at the moment it is live. Not counted: thread
//! stacks and direct `mmap`s (none of these codecs maps memory itself).
//!
//! Threads are counted the same way: `pthread_create` is defined here too, counts, and
//! forwards to glibc's (found with `dlsym(RTLD_NEXT)`), so a codec's workers are seen however
//! briefly they live.

use std::alloc::{GlobalAlloc, Layout};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Bytes live now and the highest since [`Window::open`]. Signed: a block allocated before
/// the hooks ran (the dynamic loader's) may be freed through them.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Threads started since the process began.
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// One measurement at a time (the test harness runs tests on parallel threads).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn grew(by: usize) {
    let by = by as isize;
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(by: usize) {
    LIVE.fetch_sub(by as isize, Ordering::Relaxed);
}

/// A measurement: the peak of live heap bytes above what was live when it was opened.
pub struct Window {
    before: isize,
    started: usize,
    _one: MutexGuard<'static, ()>,
}

impl Window {
    pub fn open() -> Self {
        let one = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        Window {
            before,
            started: STARTED.load(Ordering::Relaxed),
            _one: one,
        }
    }

    /// Threads started (by anyone in the process) since [`Window::open`].
    pub fn threads_started(&self) -> usize {
        STARTED.load(Ordering::Relaxed) - self.started
    }

    /// The peak so far, above the live bytes at [`Window::open`].
    pub fn peak(&self) -> u64 {
        (PEAK.load(Ordering::Relaxed) - self.before).max(0) as u64
    }
}

/// Panics unless a C library's own allocation reaches the counter: the hooks are not bound
/// (say, the linker did not export them), so C memory would silently count as 0.
pub fn assert_c_allocations_are_counted() {
    extern "C" {
        fn strdup(s: *const std::os::raw::c_char) -> *mut std::os::raw::c_char;
    }
    let text = std::ffi::CString::new(vec![b'x'; 1 << 16]).unwrap();
    let window = Window::open();
    // SAFETY: a NUL-terminated string in; the copy is glibc's, freed once with its `free`.
    unsafe { free(strdup(text.as_ptr()).cast()) };
    assert!(
        window.peak() >= 1 << 16,
        "glibc's strdup allocated 64 KiB the heap counter did not see ({} bytes): the C \
         allocation hooks are not bound",
        window.peak()
    );
}

/// Rust's allocations: mimalloc (the worker's allocator), counted by layout size.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) };
        shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Both blocks may exist during the copy.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

extern "C" {
    fn __libc_malloc(size: usize) -> *mut c_void;
    fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
    fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn __libc_free(p: *mut c_void);
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn malloc_usable_size(p: *mut c_void) -> usize;
}

/// Counts a block glibc returned (null: nothing).
unsafe fn counted(p: *mut c_void) -> *mut c_void {
    if !p.is_null() {
        grew(unsafe { malloc_usable_size(p) });
    }
    p
}

const PAGE: usize = 4096;

#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    unsafe { counted(__libc_malloc(size)) }
}

#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    unsafe { counted(__libc_calloc(n, size)) }
}

#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    if !p.is_null() {
        unsafe {
            shrank(malloc_usable_size(p));
            __libc_free(p);
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    if p.is_null() {
        return unsafe { malloc(size) };
    }
    unsafe {
        let old = malloc_usable_size(p);
        let q = __libc_realloc(p, size);
        if !q.is_null() {
            // Both blocks may exist during the copy.
            grew(malloc_usable_size(q));
            shrank(old);
        } else if size == 0 {
            // glibc's realloc(p, 0) frees p.
            shrank(old);
        }
        q
    }
}

#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    unsafe { counted(__libc_memalign(align, size)) }
}

#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    unsafe { counted(__libc_memalign(align, size)) }
}

#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    const EINVAL: c_int = 22;
    const ENOMEM: c_int = 12;
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<usize>()) {
        return EINVAL;
    }
    let p = unsafe { counted(__libc_memalign(align, size)) };
    if p.is_null() {
        return ENOMEM;
    }
    unsafe { *out = p };
    0
}

#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    unsafe { counted(__libc_memalign(PAGE, size)) }
}

#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    unsafe { counted(__libc_memalign(PAGE, size.div_ceil(PAGE).max(1) * PAGE)) }
}

/// `pthread_t` and the start routine, as glibc declares them.
type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;
type PthreadCreate = unsafe extern "C" fn(
    *mut std::os::raw::c_ulong,
    *const c_void,
    StartRoutine,
    *mut c_void,
) -> c_int;

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const std::os::raw::c_char) -> *mut c_void;
}

/// glibc's `RTLD_NEXT`: the next object after this one in the lookup order.
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;

#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut std::os::raw::c_ulong,
    attr: *const c_void,
    start: StartRoutine,
    arg: *mut c_void,
) -> c_int {
    static REAL: AtomicUsize = AtomicUsize::new(0);
    let mut real = REAL.load(Ordering::Relaxed);
    if real == 0 {
        // SAFETY: a NUL-terminated name; glibc's pthread_create has this signature.
        real = unsafe { dlsym(RTLD_NEXT, c"pthread_create".as_ptr()) } as usize;
        assert!(real != 0, "dlsym found no pthread_create after this binary");
        REAL.store(real, Ordering::Relaxed);
    }
    STARTED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the address dlsym gave for glibc's pthread_create, called with our arguments.
    unsafe { std::mem::transmute::<usize, PthreadCreate>(real)(thread, attr, start, arg) }
}
