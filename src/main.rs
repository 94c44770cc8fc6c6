// sled allocates and frees tree nodes on every insert, and a request is allocated on a
// server thread and freed on the writer's: glibc's malloc spent a quarter of the
// writer's time on that (BENCHMARKS.md); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    case_escrow::cli::main()
}
