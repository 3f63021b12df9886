// mimalloc instead of the system allocator: measured with `examples/bench.rs` and perf,
// glibc's malloc and free were about a tenth of the CPU of a `charges/list` page, and
// mimalloc returns freed memory to the system instead of keeping per-thread arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chargegate::cli::main()
}
