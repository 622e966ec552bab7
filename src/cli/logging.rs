//! Logging: tracing to stderr, and for the server also to a daily-rolling file
//! (tracing-appender), as text or JSON. Secrets are never logged: they are types that print
//! `[redacted]`, and request logs carry the path without the query string.

use crate::config::{LogConfig, LogFormat};
use std::path::Path;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Colour codes only for a person at a terminal: a journal, a pipe or a log collector gets
/// plain text.
fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// One-shot commands: warnings and errors to stderr only.
pub fn init_cli() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal())
        .with_target(false)
        .try_init();
}

/// The server: stderr plus `<dir>/strongroom.log.YYYY-MM-DD`. Keep the guard alive until
/// exit so buffered lines reach the file.
///
/// # Errors
/// The log directory cannot be created.
pub fn init_server(cfg: &LogConfig, dir: &Path) -> Result<Option<WorkerGuard>, super::Failure> {
    let filter = || EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = match cfg.format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(stderr_is_terminal())
            .with_target(false)
            .with_filter(filter())
            .boxed(),
    };
    let (file_layer, guard) = if cfg.file {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                super::Failure::new(
                    "CLI-0002",
                    format!(
                        "cannot create log directory {}: {}",
                        dir.display(),
                        e.kind()
                    ),
                )
            })?;
        let appender = tracing_appender::rolling::daily(dir, "strongroom.log");
        restrict_log_files(dir);
        let (writer, guard) = tracing_appender::non_blocking(appender);
        let layer = match cfg.format {
            LogFormat::Json => fmt::layer()
                .json()
                .with_writer(writer)
                .with_filter(filter())
                .boxed(),
            LogFormat::Text => fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter())
                .boxed(),
        };
        (Some(layer), Some(guard))
    } else {
        (None, None)
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    Ok(guard)
}

/// The appender creates files with the process umask; logs name tenants and addresses, so
/// they are made owner-only like everything else under the data directory.
fn restrict_log_files(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with("strongroom.log")
            {
                let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600));
            }
        }
    }
}
