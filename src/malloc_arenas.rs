//! glibc's malloc arenas, limited to one per CPU. By default glibc gives each thread that
//! meets a locked arena a new one, up to eight per CPU; the blocking pool's threads come and
//! go, each lands on some arena, and every arena keeps the free memory of its own past peaks.
//! Under the soak of `docs/BENCHMARKS.md` that held three times the live heap and kept
//! growing for twenty minutes; with one arena per CPU it stays within a few percent of where
//! it starts. glibc's per-thread caches keep most small allocations off the arena locks, which
//! is what makes so few arenas affordable. `MALLOC_ARENA_MAX` in the environment, glibc's own
//! setting, still wins.

/// Limits glibc to one malloc arena per CPU unless `MALLOC_ARENA_MAX` chose a number. Call
/// it first thing in `main`, before any thread starts: arenas are made as threads need
/// them. Does nothing with other C libraries, which have no such arenas.
pub fn limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let arenas = libc::c_int::try_from(cpus).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only sets a tunable of the allocator; glibc documents
        // `M_ARENA_MAX` as settable at any time, and it takes effect for arenas made later.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
