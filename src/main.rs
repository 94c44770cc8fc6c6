// sled allocates and frees tree nodes on every insert, and a request is allocated on a
// server thread and freed on the writer's: glibc's malloc spent a quarter of the
// writer's time on that (BENCHMARKS.md); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's `mi_option_set` and the index of `mi_option_purge_delay` in its
// `mi_option_e` (15 in both the v2 and v3 headers that libmimalloc-sys 0.1.49 bundles;
// the crate's Rust bindings do not name it).
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Ten seconds: well past a batch's allocate-and-free cycle (about one second at 8,189
/// receipts) and a reconciliation message's, so the churn reuses its memory, while an
/// idle server still hands a burst's memory back.
const PURGE_DELAY_MS: std::ffi::c_long = 10_000;

fn main() -> std::process::ExitCode {
    // By default mimalloc (v3, what libmimalloc-sys builds) hands memory it freed back
    // to the kernel after a second, and the next allocation faults it in again and the
    // kernel zeroes it: sled frees and allocates its nodes on every insert, so that
    // cycle cost ~45% of a batch receipt's CPU and about one CPU-second in seven of a
    // reconciliation (BENCHMARKS.md). The environment (either of mimalloc's names for
    // the setting) still wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        && std::env::var_os("MIMALLOC_RESET_DELAY").is_none()
    {
        // SAFETY: a plain setter of mimalloc's, called before any other thread exists
        // (mimalloc documents it as not thread safe).
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    case_escrow::cli::main()
}
