fn main() -> std::process::ExitCode {
    chargegate::cli::main()
}
