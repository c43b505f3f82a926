use std::process::ExitCode;

fn main() -> ExitCode {
    tracespool::cli::run(tracespool::cli::parse())
}
