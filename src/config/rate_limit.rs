//! `[rate_limit]`: where the gateway keeps its limits on calls to models. In memory on each
//! node by default; shared by every node through one Redis when `redis_url` is set.
//!
//! The URL may carry a password, so it is a secret: [`RedisUrl`] prints, serializes and
//! debugs with the password as `[redacted]`, and no error about it quotes it. It is read as
//! any string and judged in [`RateLimitConfig::validate`], because a failed deserialization
//! makes the TOML error quote the whole line of the file, password and all.

use super::{invalid, ConfigError, EndpointConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]`: limits shared by every node pointing at it.
    /// Unset: each node keeps its own, in memory.
    pub redis_url: Option<RedisUrl>,
    /// A file (mode 0600) holding the Redis password, read at start; `redis_url` then carries
    /// none. Keeps the password out of a configuration file others may read.
    pub redis_password_file: Option<std::path::PathBuf>,
    /// Longest wait for Redis on one call, connecting included: a hung Redis delays a call
    /// by at most this, then the tenant's `on_shared_failure` decides.
    pub timeout_ms: u64,
    /// A call counts as in progress for at most this long, so the calls of a node that died
    /// holding them free their slots; longer than any endpoint's `total_timeout_ms`.
    pub lease_secs: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_password_file: None,
            timeout_ms: 250,
            lease_secs: 600,
        }
    }
}

impl RateLimitConfig {
    /// Checks the URL and that the lease outlasts every endpoint's longest call.
    pub(super) fn validate(&self, endpoints: &[EndpointConfig]) -> Result<(), ConfigError> {
        let Some(url) = &self.redis_url else {
            if self.redis_password_file.is_some() {
                return Err(invalid(
                    "rate_limit.redis_password_file",
                    "is set but rate_limit.redis_url is not: set the URL, or remove the password file",
                ));
            }
            return Ok(());
        };
        url.check()
            .map_err(|m| invalid("rate_limit.redis_url", m))?;
        if let Some(path) = &self.redis_password_file {
            if url.has_password() {
                return Err(invalid(
                    "rate_limit.redis_url",
                    "carries a password and rate_limit.redis_password_file gives one too: take it out of the URL",
                ));
            }
            read_password(path).map_err(|m| invalid("rate_limit.redis_password_file", m))?;
        }
        for (i, e) in endpoints.iter().enumerate() {
            if e.total_timeout_ms > self.lease_secs.saturating_mul(1000) {
                return Err(invalid(
                    "rate_limit.lease_secs",
                    format!(
                        "{} s is shorter than ai.endpoints[{i}].total_timeout_ms ({} ms): a call still in progress would stop counting; raise rate_limit.lease_secs to at least {}",
                        self.lease_secs,
                        e.total_timeout_ms,
                        e.total_timeout_ms.div_ceil(1000)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Reads the Redis password file: like an API key file, and readable by its owner alone.
///
/// # Errors
/// What is wrong with the file, never its content.
pub fn read_password(path: &std::path::Path) -> Result<crate::ai::http::ApiKey, String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} can be read by other users (mode {mode:o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    crate::ai::http::read_key(path)
}

/// A Redis URL, whose password never leaves it except to connect.
#[derive(Clone)]
pub struct RedisUrl(Zeroizing<String>);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Zeroizing::new(url.into()))
    }

    /// The URL with its password, for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the URL is one Strongroom connects to. Messages never quote the URL.
    ///
    /// # Errors
    /// What is wrong and the form to use.
    pub fn check(&self) -> Result<(), String> {
        const FORM: &str = "give redis://HOST:PORT, or redis://:PASSWORD@HOST:PORT/DB";
        let u = url::Url::parse(&self.0).map_err(|_| format!("is not a URL; {FORM}"))?;
        if u.scheme() != "redis" {
            return Err(format!(
                "must start with redis:// (rediss:// and unix sockets are not supported; keep Redis on a trusted network); {FORM}"
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(format!("names no host; {FORM}"));
        }
        if u.port() == Some(0) {
            return Err(format!("port 0 is not a port; {FORM}"));
        }
        let db = u.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u8>().is_err() {
            return Err(format!(
                "the path must be a database number such as /0, or nothing; {FORM}"
            ));
        }
        if u.query().is_some() || u.fragment().is_some() {
            return Err(format!("takes no ?options or #fragment; {FORM}"));
        }
        // What the client itself takes (a password that does not percent-decode, say).
        redis::Client::open(self.expose())
            .map(|_| ())
            .map_err(|_| format!("is not a URL the Redis client takes; {FORM}"))
    }

    /// Whether the URL itself carries a password.
    pub fn has_password(&self) -> bool {
        url::Url::parse(&self.0).is_ok_and(|u| u.password().is_some())
    }

    /// The URL as logs and dumps show it: scheme, user, host, port and database, the
    /// password as `[redacted]`; a URL that does not parse shows as `[redacted]` whole.
    pub fn redacted(&self) -> String {
        let Ok(u) = url::Url::parse(&self.0) else {
            return "[redacted]".into();
        };
        let secret = if u.password().is_some() {
            ":[redacted]"
        } else {
            ""
        };
        let at = if u.username().is_empty() && secret.is_empty() {
            ""
        } else {
            "@"
        };
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!(
            "{}://{}{secret}{at}{}{port}{}",
            u.scheme(),
            u.username(),
            u.host_str().unwrap_or(""),
            u.path()
        )
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl PartialEq for RedisUrl {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// A dump (`config show`) shows the redacted form: it is for reading, not for loading back.
impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load, Config};
    use super::*;

    const SECRET: &str = "hunter2-s3cret";

    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load(
            None,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
        .map(|l| l.config)
    }

    #[test]
    fn a_redis_url_loads_and_never_shows_its_password() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            format!("[rate_limit]\nredis_url = \"redis://:{SECRET}@10.0.0.7:6380/2\"\ntimeout_ms = 100\n"),
        )
        .unwrap();
        let c = load(Some(f.path()), Vec::new()).unwrap().config;
        let url = c.rate_limit.redis_url.as_ref().unwrap();
        assert_eq!(url.expose(), format!("redis://:{SECRET}@10.0.0.7:6380/2"));
        assert_eq!(url.redacted(), "redis://:[redacted]@10.0.0.7:6380/2");
        assert_eq!(c.rate_limit.timeout_ms, 100);
        let shown = [
            format!("{c:?}"),
            format!("{url}"),
            toml::to_string(&c).unwrap(),
            serde_json::to_string(&c).unwrap(),
        ];
        for s in &shown {
            assert!(!s.contains(SECRET), "{s}");
            assert!(s.contains("10.0.0.7"), "{s}");
        }
        let user = RedisUrl::new("redis://app:pw@cache.internal");
        assert_eq!(user.redacted(), "redis://app:[redacted]@cache.internal");
        assert_eq!(
            RedisUrl::new("redis://127.0.0.1:6379").redacted(),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn the_password_comes_from_a_private_file_or_a_private_config() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &std::path::Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        let pw = dir.path().join("redis.pw");
        std::fs::write(&pw, format!("{SECRET}\n")).unwrap();
        mode(&pw, 0o600);
        let cfg = dir.path().join("config.toml");
        let write = |text: String, m: u32| {
            std::fs::write(&cfg, text).unwrap();
            mode(&cfg, m);
        };
        // A file of mode 0600 next to a URL without a password: loads, in a config anyone reads.
        write(
            format!("[rate_limit]\nredis_url = \"redis://10.0.0.7:6380\"\nredis_password_file = {pw:?}\n"),
            0o644,
        );
        let c = load(Some(&cfg), Vec::new()).unwrap().config;
        assert_eq!(
            c.rate_limit.redis_password_file.as_deref(),
            Some(pw.as_path())
        );
        assert!(!format!("{c:?}").contains(SECRET));

        let refused = |text: String, m: u32, key: &str, says: &str| {
            write(text, m);
            let e = load(Some(&cfg), Vec::new()).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(says), "{e}");
            assert!(!e.contains(SECRET), "{e}");
        };
        // The password inline, in a file others can read.
        refused(
            format!("[rate_limit]\nredis_url = \"redis://:{SECRET}@10.0.0.7:6380\"\n"),
            0o644,
            "rate_limit.redis_url",
            "redis_password_file",
        );
        // Inline in a private file is the operator's call.
        write(
            format!("[rate_limit]\nredis_url = \"redis://:{SECRET}@10.0.0.7:6380\"\n"),
            0o600,
        );
        load(Some(&cfg), Vec::new()).unwrap();
        // Both at once.
        refused(
            format!("[rate_limit]\nredis_url = \"redis://:{SECRET}@h:6380\"\nredis_password_file = {pw:?}\n"),
            0o600,
            "rate_limit.redis_url",
            "take it out of the URL",
        );
        // A password file without a URL, one that is missing, one others can read.
        refused(
            format!("[rate_limit]\nredis_password_file = {pw:?}\n"),
            0o600,
            "rate_limit.redis_password_file",
            "redis_url is not",
        );
        let missing = dir.path().join("absent");
        refused(
            format!(
                "[rate_limit]\nredis_url = \"redis://h:6380\"\nredis_password_file = {missing:?}\n"
            ),
            0o600,
            "rate_limit.redis_password_file",
            "cannot read",
        );
        mode(&pw, 0o640);
        refused(
            format!("[rate_limit]\nredis_url = \"redis://h:6380\"\nredis_password_file = {pw:?}\n"),
            0o600,
            "rate_limit.redis_password_file",
            "chmod 600",
        );
    }

    #[test]
    fn broken_redis_urls_are_refused_by_key_without_quoting_them() {
        for (url, says) in [
            ("not a url", "is not a URL"),
            ("rediss://:SECRET@host:6379", "must start with redis://"),
            ("http://:SECRET@host", "must start with redis://"),
            ("redis+unix:///tmp/SECRET.sock", "must start with redis://"),
            ("redis://:SECRET@:6379", "is not a URL"),
            ("redis://:SECRET@host:0", "port 0"),
            ("redis://:SECRET@host/db", "database number"),
            ("redis://:SECRET@host/300", "database number"),
            ("redis://:SECRET@host?protocol=resp3", "?options"),
            ("redis://:SECRET@host#x", "?options"),
            ("", "is not a URL"),
        ] {
            let e = load_env(&[("STRONGROOM_RATE_LIMIT__REDIS_URL", url)])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("rate_limit.redis_url") && e.contains(says),
                "{url}: {e}"
            );
            assert!(!e.contains("SECRET"), "{url}: {e}");
        }
        // A value of the wrong type is named by the parser, with its line (no URL in it).
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), "[rate_limit]\nredis_url = 6379\n").unwrap();
        let e = load(Some(f.path()), Vec::new()).unwrap_err().to_string();
        assert!(e.contains("redis_url") && e.contains("line 2"), "{e}");
        let e = load_env(&[("STRONGROOM_RATE_LIMIT__REDIS_TLS", "true")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("redis_tls"), "{e}");
    }

    #[test]
    fn the_lease_must_outlast_the_longest_call() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "[rate_limit]\nredis_url = \"redis://127.0.0.1:6379\"\nlease_secs = 60\n\
             [[ai.endpoints]]\nname = \"m\"\nprotocol = \"openai\"\nurls = [\"http://127.0.0.1:8080\"]\n\
             model = \"m\"\ntotal_timeout_ms = 90000\n",
        )
        .unwrap();
        let e = load(Some(f.path()), Vec::new()).unwrap_err().to_string();
        assert!(
            e.contains("rate_limit.lease_secs") && e.contains("at least 90"),
            "{e}"
        );
        // Without Redis the lease is not used, so it does not stand in the way.
        let text = std::fs::read_to_string(f.path())
            .unwrap()
            .replace("redis_url = \"redis://127.0.0.1:6379\"\n", "");
        std::fs::write(f.path(), text).unwrap();
        assert!(load(Some(f.path()), Vec::new()).is_ok());
    }
}
