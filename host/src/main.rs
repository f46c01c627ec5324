// glibc's malloc took 9% of serve's /auth under wrk (perf: malloc, free,
// malloc_consolidate); mimalloc's thread-local heaps take it off that path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keyhost::cli::main()
}
