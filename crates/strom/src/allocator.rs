//! The process's global allocator (mimalloc) and how it gives memory back to the kernel.
//!
//! mimalloc returns ("purges") memory that stayed free for `purge_delay` ms (1,000 by default;
//! arenas ten times that) with `madvise`, and asks for 2 MiB transparent huge pages when it
//! maps memory. Under steady load that churns: a buffer freed and needed again a second later
//! comes back as a fresh page, zeroed by the kernel on first touch (2 MiB at a time, and on a
//! virtual machine often backed again by the host). An e2e run at 3.5M msgs/s took 500-1,700
//! page faults in the broker this way; with purging off, 13-45 (BENCHMARKS.md, seventh
//! session). So Strom keeps freed memory for reuse, as brokers that size their heap up front do:
//! the resident size stays at its high-water mark, which the broker's own limits bound
//! (`queued.max.request.bytes`, fetch sizes).
//!
//! An operator who wants memory back after load spikes sets mimalloc's own
//! `MIMALLOC_PURGE_DELAY` (milliseconds), which Strom then leaves alone.

/// The global allocator: faster than glibc malloc for the many small, short-lived allocations
/// of request handling (measured with `tests/perf/idle_consumers.py`, see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (the 16th option in both v2 and v3;
/// `libmimalloc-sys` does not export it). A test checks the index against the option's
/// default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable through which mimalloc reads the purge delay at start-up.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// Turns off returning freed memory to the kernel, unless `MIMALLOC_PURGE_DELAY` is set.
/// Safe to call at any time: mimalloc reads the option on every purge decision, and memory it
/// already scheduled for purging stays mapped.
pub fn keep_freed_memory() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Touches `bytes` of heap, then frees it. Freed memory stays with the process (see
/// [`keep_freed_memory`]), so the allocations of the next seconds land on pages the kernel
/// already handed out, instead of faulting in fresh (transparent huge) pages one by one while
/// a request or a timed run waits (`strom server` at start, `strom bench` before its clock).
/// On a virtual machine whose host takes freed memory back, a fresh 2 MiB page took ~5 ms to
/// fault in (BENCHMARKS.md, tenth session).
pub fn warm_heap(bytes: usize) {
    const CHUNK_BYTES: usize = 1024 * 1024;
    let chunks: Vec<Vec<u8>> = (0..bytes / CHUNK_BYTES)
        .map(|_| std::hint::black_box(vec![1u8; CHUNK_BYTES]))
        .collect();
    drop(std::hint::black_box(chunks));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, not two: the option table is process-wide and tests run in parallel.
    #[test]
    fn the_purge_delay_option_is_found_and_turned_off_and_warmed_memory_stays() {
        if std::env::var_os(PURGE_DELAY_ENV).is_some() {
            return; // the operator's choice wins; nothing to check
        }
        // SAFETY: reading mimalloc's version and option table.
        let (version, default_delay_ms) = unsafe {
            (
                libmimalloc_sys::mi_version(),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        // Option 15 is `purge_delay` in mimalloc 2.1 and later and in 3.x; another major
        // version needs this file read again.
        assert!((201..400).contains(&(version / 100)), "mimalloc {version}");
        // v3's default is 1,000 ms, v2's 10: no other option in that slot has either.
        assert!(
            default_delay_ms == 1000 || default_delay_ms == 10,
            "option {MI_OPTION_PURGE_DELAY} is {default_delay_ms}, not a purge delay"
        );
        keep_freed_memory();
        // SAFETY: as above.
        let delay_ms = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay_ms, -1);

        // With purging off, the heap `warm_heap` touched stays with the process.
        let warm_bytes = 64 * 1024 * 1024;
        warm_heap(warm_bytes);
        let mut commit_bytes = 0usize;
        // SAFETY: mi_process_info writes the out-parameters it is given and skips null ones.
        unsafe {
            libmimalloc_sys::mi_process_info(
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut commit_bytes,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert!(commit_bytes >= warm_bytes, "{commit_bytes} bytes held");
    }
}
