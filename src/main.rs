//! The `exosphere` executable: everything it does lives in the library (`src/lib.rs`), so
//! tests can start the same server in process. The one choice only the executable makes is
//! its memory allocator.

/// jemalloc serves every allocation of the process, Rust's and the bundled C libraries'
/// (SQLite's) alike: with glibc's malloc, each thread of the blocking pool (they come and go)
/// kept a cache of freed chunks of every size it met, and under `bench soak` the server's
/// memory rose for twenty minutes and wobbled by a tenth of its size with a flat live heap
/// (docs/BENCHMARKS.md, "what the rest of the memory is"). glibc reads the setting that would
/// stop it only from the environment; jemalloc takes its settings from the binary
/// ([`MALLOC_CONF`]). Linux only: elsewhere the platform's allocator stays.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A pointer to a C string that is never written, as jemalloc's `malloc_conf` is declared.
#[cfg(target_os = "linux")]
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a `'static` C string literal; nothing writes through it.
#[cfg(target_os = "linux")]
unsafe impl Sync for MallocConf {}

/// jemalloc's settings, read once when it starts (its `malloc_conf` symbol; the
/// `MALLOC_CONF` environment variable is read after it and wins, option by option):
/// - `tcache:false`: no per-thread caches of freed chunks, glibc's trouble again (with them,
///   the soak's memory rose from 13.5 to 20 MB in 18 minutes; without, 6.5 to 7 MB), at no
///   cost `bench sync` could measure; the arenas' locks are what the caches spare, and
/// - `percpu_arena:percpu` keeps those uncontended: one arena per CPU, whichever threads run
///   there, instead of four per CPU handed to threads as they start;
/// - `background_thread:true`: a thread of jemalloc's own returns freed pages to the system
///   on time, instead of the next allocation on some arena doing it (or none);
/// - `dirty_decay_ms:1000,muzzy_decay_ms:0`: freed pages go back within about a second (the
///   default keeps them ten), so memory follows the load down after a burst.
#[cfg(target_os = "linux")]
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: MallocConf = MallocConf(
    c"tcache:false,percpu_arena:percpu,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
        .as_ptr(),
);

fn main() -> std::process::ExitCode {
    exosphere::main()
}
