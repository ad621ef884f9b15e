fn main() -> std::process::ExitCode {
    kflip::cli::main()
}
