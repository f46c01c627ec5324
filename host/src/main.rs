fn main() -> std::process::ExitCode {
    keyhost::cli::main()
}
