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
            timeout_ms: 250,
            lease_secs: 600,
        }
    }
}

impl RateLimitConfig {
    /// Checks the URL and that the lease outlasts every endpoint's longest call.
    pub(super) fn validate(&self, endpoints: &[EndpointConfig]) -> Result<(), ConfigError> {
        let Some(url) = &self.redis_url else {
            return Ok(());
        };
        url.check()
            .map_err(|m| invalid("rate_limit.redis_url", m))?;
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
