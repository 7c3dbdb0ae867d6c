use clap::Parser;

fn main() -> std::process::ExitCode {
    diversity_gpu::cli::main(diversity_gpu::cli::Cli::parse())
}
