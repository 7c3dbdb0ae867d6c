use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before any thread starts: it may set an environment variable.
    diversity_gpu::gpu::quiet_headless_vulkan();
    diversity_gpu::cli::run(diversity_gpu::cli::Cli::parse()).into()
}
