//! Typed configuration. Precedence: built-in defaults < the config file
//! (`/etc/strongroom/config.toml`, or `--config`) < `STRONGROOM_*` environment variables <
//! command-line flags. Unknown keys are errors, and every error names the key and the fix.
//!
//! Environment variables map onto keys with `__` between section and key:
//! `STRONGROOM_SERVER__LISTEN=127.0.0.1:9443` sets `server.listen`. Values are read as TOML
//! (`true`, `42`, `"text"`); anything that is not valid TOML is taken as a string.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod rate_limit;
pub use rate_limit::{RateLimitConfig, RedisUrl};

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/strongroom/config.toml";
/// The documented default configuration, as installed by the package.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../packaging/config.toml");

/// Environment variables with this prefix are configuration (except those below).
const ENV_PREFIX: &str = "STRONGROOM_";
/// Read by the command line itself, not by the config loader.
const ENV_HANDLED_BY_FLAGS: [&str; 2] = ["STRONGROOM_CONFIG", "STRONGROOM_DATA_DIR"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} cannot be read: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("configuration key {key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "CFG-0001",
            Self::Parse { .. } => "CFG-0002",
            Self::Env { .. } => "CFG-0003",
            Self::Invalid { .. } => "CFG-0004",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where `system.db`, `tenants/`, the key file and the certificate live.
    pub data_dir: Option<PathBuf>,
    pub server: ServerConfig,
    pub keys: KeysConfig,
    pub store: StoreConfig,
    pub audit: AuditConfig,
    pub log: LogConfig,
    pub security: SecurityConfig,
    pub identity: IdentityConfig,
    pub outbound: OutboundConfig,
    pub ai: AiConfig,
    pub metrics: MetricsConfig,
    pub rate_limit: RateLimitConfig,
}

/// Who may read `/metrics`, and what its labels may name.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A file holding the token a scraper off this host sends as `Authorization: Bearer`
    /// (read at start; the server does not start without it). Without it, `/metrics` is
    /// served to loopback peers only.
    pub token_file: Option<PathBuf>,
    /// Label gateway calls with the tenant's id (never its name). Off by default: ids
    /// tell a scraper which tenants exist and how busy they are.
    pub tenant_ids: bool,
    /// Every scraper presents the token, also one on this host: for a host where a reverse
    /// proxy forwards without saying so, which makes its clients loopback peers. Needs
    /// `token_file`.
    pub require_token: bool,
}

/// Model endpoints the assistant may call. Each is named; a tenant's policy lists the names
/// it may use. None by default: the assistant then answers with the extractive answerer.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AiConfig {
    pub endpoints: Vec<EndpointConfig>,
}

/// The wire protocol of an endpoint.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenAI-compatible chat completions (llama.cpp server, vLLM, Ollama, OpenAI).
    Openai,
    /// Anthropic Messages.
    Anthropic,
}

/// One model endpoint: a provider reached at one or more base URLs (tried in order on
/// failure), with its waits and retry and circuit-breaker bounds.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub name: String,
    pub protocol: Protocol,
    /// Base URLs such as `http://127.0.0.1:8080` or `https://api.openai.com`; `/v1/...` is
    /// added. Plain http only to loopback.
    pub urls: Vec<String>,
    /// The model name sent to the endpoint.
    pub model: String,
    /// A file holding the API key (read at start; the server does not start without it).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Until the answer's first byte.
    #[serde(default = "defaults::first_byte_timeout_ms")]
    pub first_byte_timeout_ms: u64,
    /// Longest silence inside an answer.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// The whole call, retries included.
    #[serde(default = "defaults::total_timeout_ms")]
    pub total_timeout_ms: u64,
    /// Further attempts after a transient failure (never once text has been passed on).
    #[serde(default = "defaults::retries")]
    pub retries: u64,
    /// Consecutive failures of a URL after which it is not called for `breaker_open_secs`.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u64,
    #[serde(default = "defaults::breaker_open_secs")]
    pub breaker_open_secs: u64,
    /// Calls in progress to this endpoint at a time, from all tenants; more wait in a queue,
    /// so a slow provider holds a bounded share of the server.
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent: u64,
    /// Calls that may wait for a slot; one more is refused at once.
    #[serde(default = "defaults::queue")]
    pub queue: u64,
    /// Longest wait for a slot before the call is refused as busy.
    #[serde(default = "defaults::queue_timeout_ms")]
    pub queue_timeout_ms: u64,
}

mod defaults {
    pub fn connect_timeout_ms() -> u64 {
        3_000
    }
    pub fn first_byte_timeout_ms() -> u64 {
        60_000
    }
    pub fn idle_timeout_ms() -> u64 {
        30_000
    }
    pub fn total_timeout_ms() -> u64 {
        180_000
    }
    pub fn retries() -> u64 {
        2
    }
    pub fn breaker_failures() -> u64 {
        5
    }
    pub fn breaker_open_secs() -> u64 {
        30
    }
    pub fn max_concurrent() -> u64 {
        32
    }
    pub fn queue() -> u64 {
        64
    }
    pub fn queue_timeout_ms() -> u64 {
        10_000
    }
}

impl EndpointConfig {
    /// Checks one endpoint; `key` is its place in the file (`ai.endpoints[0]`).
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let bad = |field: &str, m: String| invalid(&format!("{key}.{field}"), m);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if !name_ok || self.name == crate::ai::extractive::MODEL {
            return Err(bad(
                "name",
                format!(
                    "{:?} is not a name; use lower-case letters, digits, '-' and '_' (not \"extractive\")",
                    self.name
                ),
            ));
        }
        if self.urls.is_empty() || self.urls.len() > 8 {
            return Err(bad("urls", "give one to eight base URLs".into()));
        }
        for u in &self.urls {
            crate::ai::egress::base_url(u).map_err(|m| bad("urls", m))?;
        }
        if self.model.trim().is_empty() || self.model.len() > 200 {
            return Err(bad(
                "model",
                "give the model name the endpoint expects".into(),
            ));
        }
        if let Some(path) = &self.api_key_file {
            crate::ai::http::read_key(path).map_err(|m| bad("api_key_file", m))?;
        }
        for (field, v, range) in [
            ("connect_timeout_ms", self.connect_timeout_ms, 100..=60_000),
            (
                "first_byte_timeout_ms",
                self.first_byte_timeout_ms,
                100..=600_000,
            ),
            ("idle_timeout_ms", self.idle_timeout_ms, 100..=600_000),
            ("total_timeout_ms", self.total_timeout_ms, 100..=3_600_000),
            ("retries", self.retries, 0..=5),
            ("breaker_failures", self.breaker_failures, 1..=1000),
            ("breaker_open_secs", self.breaker_open_secs, 1..=3600),
            ("max_concurrent", self.max_concurrent, 1..=10_000),
            ("queue", self.queue, 0..=100_000),
            ("queue_timeout_ms", self.queue_timeout_ms, 0..=600_000),
        ] {
            if !range.contains(&v) {
                return Err(bad(
                    field,
                    format!(
                        "{v} is out of range; use a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Calls Strongroom makes to other servers (single sign-on providers; model endpoints later):
/// one rustls client with the ring provider, trusting the system's roots plus `ca_file`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// PEM file of extra trust anchors, e.g. the company CA of an internal identity provider.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout_secs: u64,
    /// Whole-request bound, connect to last byte.
    pub timeout_secs: u64,
    /// Host names or addresses that may be reached at internal (loopback, private,
    /// link-local) addresses, e.g. an identity provider on the company network. Others are
    /// refused there, so a tenant's settings cannot reach the machines around the server.
    pub allow_internal: Vec<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            connect_timeout_secs: 10,
            timeout_secs: 30,
            allow_internal: Vec::new(),
        }
    }
}

/// Sessions and sign-in throttling; a tenant's policy may tighten the session timeouts.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// A session unused this long ends.
    pub session_idle_secs: u64,
    /// A session ends this long after sign-in, however busy.
    pub session_absolute_secs: u64,
    /// Failed sign-ins (per account, and per source address) within the lockout window
    /// after which sign-in is refused until the window has passed. Delays grow before that.
    pub lockout_failures: u64,
    pub lockout_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            session_idle_secs: 30 * 60,
            session_absolute_secs: 12 * 3600,
            lockout_failures: 10,
            lockout_secs: 15 * 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Must be true to listen on anything but loopback.
    pub allow_public_listen: bool,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub shutdown_grace_secs: u64,
    /// A client must send a request's headers within this many seconds (slowloris guard).
    pub header_timeout_secs: u64,
    /// The address people use, e.g. `https://strongroom.example.com` (single sign-on
    /// redirects come back here). Unset: the request's own host.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            allow_public_listen: false,
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 10,
            header_timeout_secs: 15,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Defaults to `<data_dir>/root.key`. A systemd credential `root-key` takes precedence.
    pub root_key_file: Option<PathBuf>,
    /// Warn (in `keys status`, `doctor` and `/status`) when a key is older than this.
    pub max_age_days: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub busy_timeout_ms: u64,
    pub max_open_tenants: usize,
    pub tenant_idle_secs: u64,
    /// Memory all SQLite page caches of the process may hold together, in MiB. Past it a
    /// cache reuses its own pages instead of growing (each reader and writer keeps up to
    /// 64 MiB of decrypted pages, so searches of a large index do not decrypt the same pages
    /// again).
    pub page_cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            busy_timeout_ms: 10_000,
            max_open_tenants: 256,
            tenant_idle_secs: 300,
            page_cache_mib: 512,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub checkpoint_every: u64,
    pub checkpoint_interval_secs: u64,
    /// The witness: signed heads of every journal, which the journals must always extend.
    /// Keep it outside the data directory (and ideally copy it elsewhere), so an old copy
    /// of the data put back in place is caught. Default: `<data_dir>/witness.ndjson`.
    pub witness_path: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval_secs: 60,
            witness_path: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `strongroom=debug,info`.
    pub level: String,
    /// Directory of the daily-rolling log file; defaults to `<data_dir>/logs`.
    pub dir: Option<PathBuf>,
    /// Set to false to log to stderr only.
    pub file: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
            dir: None,
            file: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `Contact:` of `/.well-known/security.txt` (`mailto:` or `https:`); unset serves 404.
    pub contact: Option<String>,
    pub policy_url: Option<String>,
    pub preferred_languages: String,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            contact: None,
            policy_url: None,
            preferred_languages: "en".into(),
        }
    }
}

/// Where the effective configuration came from, for `config check` and logs.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    pub env_keys: Vec<String>,
}

/// Loads defaults < file < environment. `explicit` is `--config`: it must exist; without it,
/// [`DEFAULT_CONFIG_PATH`] is read only if present.
///
/// # Errors
/// Unreadable file, invalid TOML, unknown key, bad value; each names the key.
pub fn load(
    explicit: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    load_with(explicit, true, env)
}

/// As [`load`]; with `system_file` false, `/etc/strongroom/config.toml` is not read unless it
/// is `explicit` (development mode stays self-contained on a machine with an installation).
///
/// # Errors
/// As [`load`].
/// This process's `STRONGROOM_` variables. Others are not read: one that is not UTF-8 text
/// (which `std::env::vars` panics on) has nothing to do with Strongroom.
///
/// # Errors
/// A `STRONGROOM_` variable whose name or value is not UTF-8 text; named, its value not shown.
pub fn environment(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let shown = name.to_string_lossy();
        if !shown.starts_with(ENV_PREFIX) {
            continue;
        }
        match (name.to_str(), value.into_string()) {
            (Some(name), Ok(value)) => out.push((name.to_string(), value)),
            _ => {
                return Err(ConfigError::Env {
                    var: crate::text::one_line(&shown).into_owned(),
                    message: "is not UTF-8 text; set it again or unset it".into(),
                })
            }
        }
    }
    Ok(out)
}

pub fn load_with(
    explicit: Option<&Path>,
    system_file: bool,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let default_path = Path::new(DEFAULT_CONFIG_PATH);
    let file = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None if system_file && default_path.exists() => Some(default_path.to_path_buf()),
        None => None,
    };
    let mut table = toml::Table::new();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
        table = parse_file(&text, &path.display().to_string())?;
    }
    let mut env_keys = Vec::new();
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_HANDLED_BY_FLAGS.contains(&k.as_str()))
        .collect();
    env.sort();
    for (var, value) in env {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "malformed name; use STRONGROOM_SECTION__KEY".into(),
            });
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        set_path(&mut table, &path, parsed).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        // Check each variable alone so that a bad one is named, not just "the environment".
        toml::Value::Table(table.clone())
            .try_into::<Config>()
            .map_err(|e| ConfigError::Env {
                var: var.clone(),
                message: without_values(e.message()),
            })?;
        env_keys.push(path.join("."));
    }
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(defaults)".into()),
            message: without_values(e.message()),
        })?;
    config.validate()?;
    if let Some(path) = &file {
        refuse_shown_password(&config, path, &env_keys)?;
    }
    Ok(Loaded {
        config,
        file,
        env_keys,
    })
}

/// A Redis password written in a configuration file that other users can read is as good
/// as published (the package installs `/etc/strongroom/config.toml` readable by all).
fn refuse_shown_password(
    config: &Config,
    path: &Path,
    env_keys: &[String],
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let from_file = config
        .rate_limit
        .redis_url
        .as_ref()
        .is_some_and(RedisUrl::has_password)
        && !env_keys.iter().any(|k| k == "rate_limit.redis_url");
    if !from_file {
        return Ok(());
    }
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777);
    if mode & 0o077 != 0 {
        return Err(invalid(
            "rate_limit.redis_url",
            format!(
                "carries a password, and {} can be read by other users (mode {mode:o}): put the \
                 password in a file of mode 0600 named by rate_limit.redis_password_file and \
                 take it out of the URL, or run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

fn parse_file(text: &str, path: &str) -> Result<toml::Table, ConfigError> {
    let parse_err = |e: toml::de::Error| {
        // Name the line and its key, so a type error points at it; never its value, which
        // may be a secret (a password inside `redis_url`, an API key put where it does not
        // belong), and this message goes to the service's log.
        let line = e
            .span()
            .filter(|s| s.start <= text.len())
            .map(|s| {
                let no = text[..s.start].matches('\n').count() + 1;
                let shown = key_of_line(text.lines().nth(no - 1).unwrap_or(""));
                if shown.is_empty() {
                    format!(" (line {no})")
                } else {
                    format!(" (line {no}: {shown})")
                }
            })
            .unwrap_or_default();
        ConfigError::Parse {
            path: path.to_string(),
            message: format!("{}{line}", without_values(e.message())),
        }
    };
    let table: toml::Table = toml::from_str(text).map_err(parse_err)?;
    // Deserialize once here so unknown keys are reported against the file, with a line.
    toml::from_str::<Config>(text).map_err(parse_err)?;
    Ok(table)
}

/// What of a configuration line an error may quote: a section header, or a key and `=`
/// without its value.
fn key_of_line(line: &str) -> String {
    let line = line.trim();
    let shown = match line.split_once('=') {
        Some((key, _)) => format!("{} = …", key.trim()),
        None if line.starts_with('[') => line.to_string(),
        None => String::new(),
    };
    crate::text::one_line(&shown.chars().take(80).collect::<String>()).into_owned()
}

/// A deserializer's message without the values it quotes (`invalid type: string "…"`),
/// which may be secrets.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find('"') {
        out.push_str(&rest[..at]);
        match rest[at + 1..].find('"') {
            Some(end) => {
                out.push_str("(value not shown)");
                rest = &rest[at + 1 + end + 1..];
            }
            None => {
                out.push_str("(value not shown)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Checks values that types alone cannot.
    ///
    /// # Errors
    /// The first bad key, with the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr = self.listen_addr()?;
        if !addr.ip().is_loopback() && !self.server.allow_public_listen {
            return Err(invalid(
                "server.listen",
                format!("{addr} is not a loopback address; set server.allow_public_listen = true to serve on the network"),
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return Err(invalid(
                "server.tls_cert",
                "set both server.tls_cert and server.tls_key, or neither (to use the certificate made by init)",
            ));
        }
        for (key, value, range) in self.numeric_keys() {
            if !range.contains(&value) {
                return Err(invalid(
                    key,
                    format!(
                        "{value} is out of range; use a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "{:?} is not a log filter; use e.g. \"info\" or \"strongroom=debug\"",
                    self.log.level
                ),
            ));
        }
        if let Some(c) = &self.security.contact {
            if !(c.starts_with("mailto:") || c.starts_with("https://")) || c.contains(['\n', '\r'])
            {
                return Err(invalid(
                    "security.contact",
                    "must be a mailto: or https:// URI on one line",
                ));
            }
        }
        if let Some(u) = &self.security.policy_url {
            if !u.starts_with("https://") || u.contains(['\n', '\r']) {
                return Err(invalid("security.policy_url", "must be an https:// URL"));
            }
        }
        if let Some(u) = &self.server.public_url {
            if crate::outbound::public_origin(u).is_none() {
                return Err(invalid(
                    "server.public_url",
                    "must be an https:// origin without a path, e.g. https://strongroom.example.com",
                ));
            }
        }
        for (i, host) in self.outbound.allow_internal.iter().enumerate() {
            let name = !host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            if !name && host.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    &format!("outbound.allow_internal[{i}]"),
                    format!("{host:?} is not a host name or address; give e.g. \"idp.corp.example\" or \"10.0.0.5\", without a scheme or port"),
                ));
            }
        }
        if let Some(path) = &self.outbound.ca_file {
            crate::outbound::read_ca_file(path)
                .map_err(|reason| invalid("outbound.ca_file", reason))?;
        }
        let mut names = Vec::new();
        for (i, e) in self.ai.endpoints.iter().enumerate() {
            e.validate(&format!("ai.endpoints[{i}]"))?;
            if names.contains(&&e.name) {
                return Err(invalid(
                    &format!("ai.endpoints[{i}].name"),
                    format!(
                        "{:?} is used by an earlier endpoint; names must differ",
                        e.name
                    ),
                ));
            }
            names.push(&e.name);
        }
        if let Some(path) = &self.metrics.token_file {
            crate::ai::http::read_key(path).map_err(|m| invalid("metrics.token_file", m))?;
        } else if self.metrics.require_token {
            return Err(invalid(
                "metrics.require_token",
                "nobody could read /metrics: set metrics.token_file to the file holding the \
                 scrapers' token, or leave require_token off",
            ));
        }
        self.rate_limit.validate(&self.ai.endpoints)?;
        Ok(())
    }

    /// Every numeric key with its value and the range it must lie in. Bounded at load time, so
    /// a value that would overflow further down (SQLite's busy timeout is a C int of
    /// milliseconds) is a configuration error naming the key, never a panic.
    pub fn numeric_keys(&self) -> [(&'static str, u64, std::ops::RangeInclusive<u64>); 18] {
        let n = |v: usize| v as u64;
        [
            (
                "server.max_body_bytes",
                n(self.server.max_body_bytes),
                1024..=1 << 30,
            ),
            (
                "server.shutdown_grace_secs",
                self.server.shutdown_grace_secs,
                0..=3600,
            ),
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
                1..=300,
            ),
            (
                "keys.max_age_days",
                self.keys.max_age_days.unwrap_or(1),
                1..=36_500,
            ),
            (
                "store.busy_timeout_ms",
                self.store.busy_timeout_ms,
                1..=600_000,
            ),
            (
                "store.max_open_tenants",
                n(self.store.max_open_tenants),
                1..=100_000,
            ),
            (
                "store.tenant_idle_secs",
                self.store.tenant_idle_secs,
                1..=7 * 86_400,
            ),
            (
                "store.page_cache_mib",
                self.store.page_cache_mib,
                16..=1 << 20,
            ),
            (
                "audit.checkpoint_every",
                self.audit.checkpoint_every,
                1..=10_000_000,
            ),
            (
                "audit.checkpoint_interval_secs",
                self.audit.checkpoint_interval_secs,
                1..=86_400,
            ),
            (
                "identity.session_idle_secs",
                self.identity.session_idle_secs,
                60..=7 * 86_400,
            ),
            (
                "identity.session_absolute_secs",
                self.identity.session_absolute_secs,
                300..=30 * 86_400,
            ),
            (
                "identity.lockout_failures",
                self.identity.lockout_failures,
                3..=1000,
            ),
            (
                "identity.lockout_secs",
                self.identity.lockout_secs,
                10..=86_400,
            ),
            (
                "outbound.connect_timeout_secs",
                self.outbound.connect_timeout_secs,
                1..=300,
            ),
            (
                "outbound.timeout_secs",
                self.outbound.timeout_secs,
                1..=3600,
            ),
            (
                "rate_limit.timeout_ms",
                self.rate_limit.timeout_ms,
                10..=10_000,
            ),
            (
                "rate_limit.lease_secs",
                self.rate_limit.lease_secs,
                10..=86_400,
            ),
        ]
    }

    /// The listen address; only IP literals, so no name lookup happens at start-up.
    ///
    /// # Errors
    /// Not `IP:PORT`.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                format!(
                    "{:?} is not an IP:PORT address (e.g. 127.0.0.1:8443 or [::1]:8443)",
                    self.server.listen
                ),
            )
        })
    }
}

crate::domain_error!(ConfigError, |_e| crate::error::ErrorKind::Invalid);

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn shipped_default_file_is_valid_and_equals_defaults() {
        let f = write(DEFAULT_CONFIG_TOML);
        let loaded = load(Some(f.path()), env(&[])).unwrap();
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn precedence_file_then_env() {
        let f = write("[server]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n");
        let loaded = load(
            Some(f.path()),
            env(&[
                ("STRONGROOM_SERVER__LISTEN", "127.0.0.1:9100"),
                ("STRONGROOM_LOG__FORMAT", "json"),
                ("STRONGROOM_DATA_DIR", "/ignored/here"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.config.server.listen, "127.0.0.1:9100");
        assert_eq!(loaded.config.server.max_body_bytes, 4096);
        assert_eq!(loaded.config.log.format, LogFormat::Json);
        assert_eq!(loaded.config.data_dir, None);
        assert_eq!(loaded.env_keys, vec!["log.format", "server.listen"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let f = write("[server]\nlisten = \"127.0.0.1:9000\"\nlisen = 1\n");
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(e.contains("lisen") && e.contains("line 3"), "{e}");

        let e = load(None, env(&[("STRONGROOM_SERVR__LISTEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("STRONGROOM_SERVR__LISTEN") && e.contains("servr"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_line_and_key_but_never_quote_a_value() {
        for text in [
            "[rate_limit]\nredis_url = \"redis://:hunter2pw@10.0.0.7:6379\n",
            "[server]\nlisten = \"127.0.0.1:9000\"\napi_key = \"sk-live-hunter2pw\"\n",
            "[server]\nmax_body_bytes = \"hunter2pw\"\n",
        ] {
            let f = write(text);
            let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
            assert!(!e.contains("hunter2pw"), "{e}");
            assert!(e.contains("line 2") || e.contains("line 3"), "{e}");
        }
        let f = write("[server]\nlisten = \"127.0.0.1:9000\"\napi_key = \"sk-live-hunter2pw\"\n");
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(e.contains("api_key") && e.contains("line 3"), "{e}");
        let e = load(
            None,
            env(&[("STRONGROOM_SERVER__MAX_BODY_BYTES", "hunter2pw")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            !e.contains("hunter2pw") && e.contains("MAX_BODY_BYTES"),
            "{e}"
        );
    }

    #[test]
    fn variables_that_are_not_text_are_ignored_or_named_without_their_value() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let vars = environment(vec![
            (bytes(b"OTHER"), bytes(b"\xff\xfesecret")),
            (bytes(b"STRONGROOM_LOG__FORMAT"), bytes(b"json")),
        ])
        .unwrap();
        assert_eq!(
            vars,
            vec![("STRONGROOM_LOG__FORMAT".to_string(), "json".to_string())]
        );
        let e = environment(vec![(bytes(b"STRONGROOM_X"), bytes(b"\xff\xfesecret"))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("STRONGROOM_X") && e.contains("UTF-8") && !e.contains("secret"),
            "{e}"
        );
    }

    #[test]
    fn broken_files_and_values_get_clear_errors() {
        let e = load(Some(Path::new("/nonexistent/strongroom.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Unreadable { .. }), "{e}");

        let f = write("[server\nlisten = 1");
        let e = load(Some(f.path()), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");

        let f = write("[server]\nmax_body_bytes = \"big\"\n");
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(e.contains("max_body_bytes") && e.contains("line 2"), "{e}");

        for (var, val, key) in [
            (
                "STRONGROOM_SERVER__LISTEN",
                "0.0.0.0:8443",
                "allow_public_listen",
            ),
            ("STRONGROOM_SERVER__LISTEN", "localhost:8443", "IP:PORT"),
            ("STRONGROOM_SERVER__MAX_BODY_BYTES", "10", "max_body_bytes"),
            (
                "STRONGROOM_AUDIT__CHECKPOINT_EVERY",
                "0",
                "checkpoint_every",
            ),
            ("STRONGROOM_LOG__LEVEL", "[[", "log.level"),
            (
                "STRONGROOM_SECURITY__CONTACT",
                "security@example.com",
                "mailto",
            ),
            ("STRONGROOM_SERVER__TLS_CERT", "/tmp/c.pem", "tls_key"),
            ("STRONGROOM___X", "1", "malformed"),
        ] {
            let e = load(None, env(&[(var, val)])).unwrap_err().to_string();
            assert!(e.contains(key), "{var}={val}: {e}");
        }
    }

    #[test]
    fn metrics_settings_are_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("metrics.token");
        let f = write(&format!(
            "[metrics]\ntoken_file = {:?}\n",
            missing.display().to_string()
        ));
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("metrics.token_file") && e.contains("cannot read"),
            "{e}"
        );
        std::fs::write(&missing, "two words\n").unwrap();
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("metrics.token_file") && !e.contains("two words"),
            "the message must not show the file's content: {e}"
        );
        std::fs::write(&missing, "scrape-token-0123\n").unwrap();
        assert!(load(Some(f.path()), env(&[])).is_ok());
        // A token required of every scraper needs a token to present.
        let e = load(None, env(&[("STRONGROOM_METRICS__REQUIRE_TOKEN", "true")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics.require_token") && e.contains("metrics.token_file"),
            "{e}"
        );
        let f2 = write(&format!(
            "[metrics]\ntoken_file = {:?}\nrequire_token = true\n",
            missing.display().to_string()
        ));
        assert!(
            load(Some(f2.path()), env(&[]))
                .unwrap()
                .config
                .metrics
                .require_token
        );
        let e = load(
            None,
            env(&[("STRONGROOM_METRICS__REQUIRE_TOKEN", "yes please")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("STRONGROOM_METRICS__REQUIRE_TOKEN") && e.contains("boolean"),
            "{e}"
        );
        let e = load(None, env(&[("STRONGROOM_METRICS__TENANT_IDS", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("STRONGROOM_METRICS__TENANT_IDS"), "{e}");
        let f = write("[metrics]\ntenant_names = true\n");
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(e.contains("tenant_names"), "{e}");
        let f = write("[[ai.endpoints]]\nname = \"local\"\nprotocol = \"openai\"\nurls = [\"http://127.0.0.1:8080\"]\nmodel = \"m\"\nmax_concurrent = 0\n");
        let e = load(Some(f.path()), env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("ai.endpoints[0].max_concurrent") && e.contains("from 1"),
            "{e}"
        );
    }

    #[test]
    fn public_listen_needs_opt_in() {
        let ok = load(
            None,
            env(&[
                ("STRONGROOM_SERVER__LISTEN", "0.0.0.0:8443"),
                ("STRONGROOM_SERVER__ALLOW_PUBLIC_LISTEN", "true"),
            ]),
        )
        .unwrap();
        assert!(ok.config.server.allow_public_listen);
    }

    /// Each numeric key gets its type's extremes, from a file and from the environment; each
    /// is refused with a message naming the key, or (for a value in range) accepted.
    #[test]
    fn every_numeric_key_is_bounded() {
        let keys: Vec<&str> = Config::default()
            .numeric_keys()
            .iter()
            .map(|(k, _, _)| *k)
            .collect();
        for key in keys {
            let (section, name) = key.split_once('.').unwrap();
            for extreme in ["0", "9223372036854775807", "2147483648", "-1"] {
                let f = write(&format!("[{section}]\n{name} = {extreme}\n"));
                let from_file = load(Some(f.path()), env(&[]));
                let var = format!(
                    "STRONGROOM_{}__{}",
                    section.to_uppercase(),
                    name.to_uppercase()
                );
                let from_env = load(None, env(&[(&var, extreme)]));
                for (how, r) in [("file", from_file), ("env", from_env)] {
                    let in_range = Config::default()
                        .numeric_keys()
                        .iter()
                        .find(|(k, _, _)| *k == key)
                        .is_some_and(|(_, _, range)| {
                            extreme.parse::<u64>().is_ok_and(|v| range.contains(&v))
                        });
                    match r {
                        Ok(_) => assert!(in_range, "{key} = {extreme} ({how}) was accepted"),
                        Err(e) => {
                            assert!(!in_range, "{key} = {extreme} ({how}) was refused: {e}");
                            let text = e.to_string();
                            assert!(
                                text.to_lowercase().contains(name) && !text.contains("panicked"),
                                "{key} = {extreme} ({how}): {text}"
                            );
                        }
                    }
                }
            }
        }
        // The value from the review: accepted by config check before, a panic in every
        // command after.
        let f = write("[store]\nbusy_timeout_ms = 2147483648\n");
        let e = load(Some(f.path()), env(&[])).unwrap_err();
        assert!(
            matches!(e, ConfigError::Invalid { ref key, .. } if key == "store.busy_timeout_ms"),
            "{e}"
        );
        assert!(e.to_string().contains("from 1 to 600000"), "{e}");
    }
}
