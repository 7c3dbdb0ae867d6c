use clap::Parser;

fn main() -> std::process::ExitCode {
    diversity_gpu::cli::run(diversity_gpu::cli::Cli::parse()).into()
}
