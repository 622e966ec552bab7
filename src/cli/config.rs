//! `strongroom config check|show`.

use super::{load_config, Cli, Failure};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the configuration; names any bad key and exits non-zero.
    Check,
    /// Print the effective configuration as TOML.
    Show,
}

pub fn run(cli: &Cli, cmd: &Command) -> Result<ExitCode, Failure> {
    let loaded = load_config(cli)?;
    match cmd {
        Command::Check => {
            let file = loaded
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into());
            println!("configuration is valid");
            println!("  file: {file}");
            if !loaded.env_keys.is_empty() {
                println!("  from environment: {}", loaded.env_keys.join(", "));
            }
        }
        Command::Show => {
            let text = toml::to_string_pretty(&loaded.config)
                .map_err(|e| Failure::new("CFG-0005", format!("cannot render: {e}")))?;
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
