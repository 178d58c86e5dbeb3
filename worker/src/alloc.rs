//! Returning freed memory to the OS promptly.
//!
//! mimalloc keeps freed pages committed for `purge_delay` milliseconds (1000 by default in the
//! pinned mimalloc v3, times 10 for arena pages) so they can be reused without page faults.
//! For the worker that is resident memory the admission budget does not see: a 40 MiB decode
//! buffer freed on one engine thread stays resident while the other threads allocate theirs,
//! and originals fetched on tokio threads are freed on engine threads.
//!
//! Measured here (2 cores, shared machine, so throughput figures are noisy):
//! - `thumbd thumbnail --threads 2` on the full corpus, MIMALLOC_PURGE_DELAY=1000 / 100 / 10 /
//!   0: peak RSS 164 / 142 / 115 / 109 MiB, same throughput within the noise;
//! - `worker/scripts/bench-worker --memory-budget 134217728 --copies 2` with a counting
//!   allocator: peak live heap 65 MiB in every run; peak RSS 201 MiB with the default delay,
//!   158 MiB at 10 ms, 122 MiB at 0, throughput 0.67–0.75× batch in all three.
//!
//! So both commands purge immediately (`main.rs`). For the batch CLI on the peers harness's
//! classes at 2 threads, purging at once cut peak RSS from 75–91 to 42–46 MiB on the small
//! JPEGs and from 118 to 66 MiB on the 2–12 MP ones, for about 10 % more time on the latter.
//! Turning huge pages off as well (the worker does, [`disable_thp`]) halves RSS again but costs
//! the batch another 10 %, so the batch keeps them. An explicit `MIMALLOC_PURGE_DELAY` in the
//! environment wins.

use std::ffi::{c_int, c_long};

// The mimalloc library comes with the `mimalloc` crate (the global allocator of the binary);
// naming the crate links it into every artifact of this library, tests included.
extern crate mimalloc as _;

unsafe extern "C" {
    fn mi_version() -> c_int;
    fn mi_option_get(option: c_int) -> c_long;
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay` in `mimalloc.h`'s `mi_option_t`, v2.1 and later (v3 included).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// The purge delay the worker runs with, in milliseconds.
pub const PURGE_DELAY_MS: c_long = 0;

/// Sets mimalloc's purge delay to [`PURGE_DELAY_MS`] unless the environment chose one.
/// Returns `(before, after)`, or `None` if left alone.
pub fn purge_promptly() -> Option<(c_long, c_long)> {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return None;
    }
    // SAFETY: plain C calls without pointers; mi_option_set is thread-safe in mimalloc.
    unsafe {
        if !(20100..40000).contains(&mi_version()) {
            return None;
        }
        let before = mi_option_get(MI_OPTION_PURGE_DELAY);
        mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        Some((before, mi_option_get(MI_OPTION_PURGE_DELAY)))
    }
}

/// Turns transparent huge pages off for this process (`prctl(PR_SET_THP_DISABLE)`, which also
/// applies to mappings made before it, such as mimalloc's arena), unless `MIMALLOC_ALLOW_THP`
/// is set. With THP, purging a freed range smaller than 2 MiB frees nothing, and the kernel
/// collapses arena pages back into huge pages: in a burst of the largest corpus photos at
/// 1024 px (`bench-worker --memory-budget 268435456 --min-mp 8 --copies 10 --size 1024`) 242
/// MiB of the arena was huge pages at the peak, and the peak RSS was 359 MiB with THP and 285
/// MiB with `MIMALLOC_ALLOW_THP=0`. Returns whether THP was turned off here.
pub fn disable_thp() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return false;
    }
    disable_thp_linux()
}

#[cfg(target_os = "linux")]
fn disable_thp_linux() -> bool {
    const PR_SET_THP_DISABLE: c_int = 41;
    unsafe extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
    }
    // SAFETY: PR_SET_THP_DISABLE takes four integer arguments and touches no memory of ours.
    unsafe {
        prctl(
            PR_SET_THP_DISABLE,
            1 as c_long,
            0 as c_long,
            0 as c_long,
            0 as c_long,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_thp_linux() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_index_is_the_purge_delay() {
        // The pinned mimalloc's default purge delay is 1000 ms (v3) or 10 ms (v2); any other
        // value would mean the enum moved and index 15 is another option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        let (before, after) = super::purge_promptly().expect("mimalloc v2.1+ is linked");
        assert!(
            before == 1000 || before == 10 || before == super::PURGE_DELAY_MS,
            "{before}"
        );
        assert_eq!(after, super::PURGE_DELAY_MS);
    }
}
