//! Process-wide settings for the `rsam` binary and the benchmark examples
//! (so that they measure what `rsam` runs): mimalloc's purge delay and the
//! thread counts. Call them first thing in `main`, before any thread runs.

/// mimalloc's `mi_option_purge_delay` (the same index in its v2 and v3
/// headers; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed memory goes back to the OS `ms` milliseconds after it is freed
/// (-1: never), unless `MIMALLOC_PURGE_DELAY` says otherwise.
pub fn set_purge_delay(ms: i64) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option (read atomically by mimalloc).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms as _) };
    }
}

/// Every encode, decode and training step allocates and frees tensors of
/// tens of megabytes. mimalloc returns freed memory to the OS after 10 ms by
/// default, and the kernel then zeroes every page again on the next
/// allocation: 9-11 % of encode time and up to 46 % of a training step in
/// perf. Keeping freed memory (purge delay -1) measured encode 3.8 s ->
/// 3.2 s on the base+ bench; the resident size stays at its peak instead of
/// shrinking between requests. `MIMALLOC_PURGE_DELAY` still overrides.
pub fn keep_freed_memory() {
    set_purge_delay(-1);
}

/// Candle asks for its thread count on every matrix product and, unless
/// `RAYON_NUM_THREADS` is set, counts physical cores by reading
/// `/proc/cpuinfo` each time (8 % of a training run's CPU time, measured with
/// perf). Counting once at start-up, before any thread exists, gives the same
/// number for free.
pub fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    // Candle 0.11 runs element-wise operations on its own pool of
    // core-pinned threads that spin (25,000 rounds) after every operation,
    // beside rayon's threads that run the matrix products and our kernels:
    // every spinning worker takes a core from them. One thread (no pool;
    // element-wise operations run on the calling thread) measured decode
    // 250 -> 210 ms and a training step ~3 -> ~2 s on two cores, encode
    // unchanged. CANDLE_NUM_THREADS overrides.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
