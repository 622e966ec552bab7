//! Parses the command line and hands over to the CLI; nothing else lives here.

use clap::Parser;

fn main() -> std::process::ExitCode {
    strongroom::cli::run(strongroom::cli::Cli::parse())
}
