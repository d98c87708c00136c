//! The server's resident memory. `rsam` keeps freed memory in mimalloc
//! (purge delay -1, see [`crate::process`]): a benchmark's back-to-back encodes then
//! reuse their pages instead of having the kernel zero them again. A server
//! that idles between requests would instead sit at its peak forever,
//! starting with the peak of its warm-up encode. So the server keeps freed
//! memory only for [`PURGE_DELAY_MS`] (an encode's own frees and
//! allocations, and a burst of requests, still reuse it) and returns the
//! warm-up's peak before it reports ready. `MIMALLOC_PURGE_DELAY` still
//! overrides. Without mimalloc as the allocator (the library's tests) this
//! only tunes an unused heap.

/// How long the server keeps freed memory before returning it to the OS.
pub const PURGE_DELAY_MS: i64 = 1000;

/// Freed memory goes back to the OS after [`PURGE_DELAY_MS`] from now on.
pub fn return_freed_memory_after_a_while() {
    crate::process::set_purge_delay(PURGE_DELAY_MS);
}

/// Returns what is freed now (the warm-up's peak) to the OS at once.
pub fn return_freed_memory_now() {
    // SAFETY: mimalloc's collection entry point, callable from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
