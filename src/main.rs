//! Parses the command line and hands over to the CLI; nothing else lives here.

use clap::{CommandFactory, FromArgMatches};

/// Many threads (a writer per open tenant, the request workers) allocate and free small
/// buffers on every request; mimalloc's thread-local pages do that without the contention
/// and arena trimming of the C library's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `--version` carries build facts computed at run time (SQLCipher asks its library).
    let long: &'static str = Box::leak(strongroom::build_info::long_version().into_boxed_str());
    let matches = strongroom::cli::Cli::command()
        .long_version(long)
        .get_matches();
    match strongroom::cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => strongroom::cli::run(cli),
        Err(e) => e.exit(),
    }
}
