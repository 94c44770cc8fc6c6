fn main() -> std::process::ExitCode {
    case_escrow::cli::main()
}
