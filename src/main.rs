//! The `promtier` binary: parses the command line and hands off to `promtier::cli`.

fn main() -> std::process::ExitCode {
    promtier::cli::main()
}
