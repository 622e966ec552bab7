//! Parses the command line and hands over to the CLI; nothing else lives here.

use clap::{CommandFactory, FromArgMatches};

/// Many threads (a writer per open tenant, the request workers) allocate and free small
/// buffers on every request; mimalloc's thread-local pages do that without the contention
/// and arena trimming of the C library's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    use strongroom::knowledge::extract;
    // A child reading one PDF for its parent: nothing else of the CLI runs.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == extract::READER_ARG)
    {
        return extract::serve_reader();
    }
    // This very binary, also once the package has replaced the file on disk.
    extract::set_reader(std::path::PathBuf::from("/proc/self/exe"));
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
