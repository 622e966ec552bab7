//! `strongroom config check|show`.

use super::{load_config, Cli, Failure};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the configuration; names any bad key and exits non-zero.
    Check,
    /// Print the effective configuration as TOML.
    Show {
        /// Print it as one JSON object instead, for scripts and configuration management.
        #[arg(long)]
        json: bool,
    },
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
        Command::Show { json } => {
            let text = if *json {
                serde_json::to_string_pretty(&loaded.config)
                    .map(|t| t + "\n")
                    .map_err(|e| e.to_string())
            } else {
                toml::to_string_pretty(&loaded.config).map_err(|e| e.to_string())
            }
            .map_err(|e| Failure::new("CFG-0005", format!("cannot render: {e}")))?;
            print!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
