//! `stark-pipeline`: with no arguments, runs the whole pipeline locally; see `--help`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    stark_pipeline::cli::main()
}
