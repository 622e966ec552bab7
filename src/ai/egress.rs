//! Where a tenant's data may go. A model endpoint on loopback is local; any other is
//! upstream, and reached for a tenant only when its host is on that tenant's egress
//! allow-list. Host names are resolved here, by `hickory-resolver` reading `/etc/hosts` and
//! `resolv.conf` itself (never the C library's name service), and the connection is pinned
//! to the addresses checked, so a name cannot be re-pointed between the check and the call
//! (DNS rebinding). An upstream host that resolves to a loopback, private, link-local or
//! otherwise internal address is refused unless that address itself is listed.

use super::model::ModelError;
use std::net::{IpAddr, SocketAddr};

/// A base URL of an endpoint, checked: http or https, a host, no credentials, query or
/// fragment; plain http only to a loopback address or `localhost`.
///
/// # Errors
/// What is wrong with it, in words for the configuration error.
pub fn base_url(raw: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw.trim())
        .map_err(|_| format!("{raw:?} is not a URL such as https://api.example.com"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: use http:// or https://"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "{:?}: no credentials in the URL; give the key in api_key_file",
            u.host_str().unwrap_or("")
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!("{raw:?}: no query or fragment"));
    }
    let Some(host) = u.host_str() else {
        return Err(format!("{raw:?} has no host"));
    };
    if u.scheme() == "http" && !is_loopback_host(host) {
        return Err(format!(
            "{raw:?}: plain http is only for loopback endpoints; use https for {host}"
        ));
    }
    Ok(u)
}

/// `localhost` or a loopback address: a local endpoint, whose calls do not leave the host.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub use crate::outbound::is_internal;

/// Resolves names for model calls, with the installation's one resolver rule.
#[derive(Default)]
pub struct Resolver {
    names: crate::outbound::Names,
}

impl Resolver {
    pub fn new() -> Self {
        Self::default()
    }

    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ModelError> {
        self.names
            .lookup(host)
            .await
            .map_err(|reason| ModelError::Egress {
                host: host.to_string(),
                reason: reason.to_string(),
            })
    }

    /// The addresses `url` may be reached at for a tenant whose allow-list is `allow`, or
    /// why not. Loopback endpoints need no listing (the tenant's policy already allowed
    /// the endpoint); any other needs its host listed, and every address it resolves to
    /// public or itself listed.
    ///
    /// # Errors
    /// [`ModelError::Egress`] naming the host and the reason.
    pub async fn check(
        &self,
        url: &url::Url,
        allow: &[String],
    ) -> Result<Vec<SocketAddr>, ModelError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let ips: Vec<IpAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![ip]
        } else if host == "localhost" {
            vec![IpAddr::from([127, 0, 0, 1])]
        } else {
            self.lookup(&host).await?
        };
        judge(&host, &bare, ips, port, allow)
    }
}

/// Where a call to `host` (`bare`: without brackets) may go, given the addresses it
/// resolved to, or why it may not.
fn judge(
    host: &str,
    bare: &str,
    ips: Vec<IpAddr>,
    port: u16,
    allow: &[String],
) -> Result<Vec<SocketAddr>, ModelError> {
    {
        let host = host.to_string();
        let refuse = |reason: String| ModelError::Egress {
            host: host.clone(),
            reason,
        };
        // Judged by what the URL says, not by what a name resolves to: a name whose records
        // move to 127.0.0.1 would otherwise be reached unlisted, with the endpoint's key.
        if !is_loopback_host(&host) {
            if !allow.iter().any(|a| a == &host || a == bare) {
                return Err(refuse(
                    "it is not on this tenant's egress allow-list (policy ai.egress_allow)".into(),
                ));
            }
            if let Some(ip) = ips
                .iter()
                .find(|ip| is_internal(**ip) && !allow.iter().any(|a| a == &ip.to_string()))
            {
                // The address is the operator's to see, in the log; the refusal reaches
                // callers of the tenant, who have no business learning the network's layout.
                tracing::warn!(%host, address = %ip, "egress refused: an internal address not on the allow-list");
                return Err(refuse(
                    "it resolves to an internal address that is not listed itself (the log names it)"
                        .into(),
                ));
            }
        }
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }
}

#[cfg(test)]
#[test]
fn a_name_that_resolves_to_loopback_is_not_a_local_endpoint() {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    // Named as loopback in the URL: a local endpoint, no listing needed.
    assert!(judge("localhost", "localhost", vec![lo], 80, &[]).is_ok());
    assert!(judge("[::1]", "::1", vec!["::1".parse().unwrap()], 80, &[]).is_ok());
    // A name whose records point at loopback needs the listing every upstream needs, and
    // then its address listed too, as any internal address does.
    let e = judge("model.example", "model.example", vec![lo], 443, &[]).unwrap_err();
    assert!(e.to_string().contains("egress allow-list"), "{e}");
    let e = judge(
        "model.example",
        "model.example",
        vec![lo],
        443,
        &["model.example".into()],
    )
    .unwrap_err();
    assert!(e.to_string().contains("internal address"), "{e}");
    let both = ["model.example".to_string(), "127.0.0.1".to_string()];
    assert!(judge("model.example", "model.example", vec![lo], 443, &both).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_plain_http_is_loopback_only() {
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("http://[::1]:8080/").is_ok());
        assert!(base_url("http://localhost:11434").is_ok());
        assert!(base_url("https://api.openai.com").is_ok());
        for (bad, word) in [
            ("http://10.0.0.5:8080", "plain http"),
            ("ftp://x.test", "http"),
            ("https://user:pw@x.test", "credentials"),
            ("https://x.test/?key=1", "query"),
            ("not a url", "not a URL"),
        ] {
            let e = base_url(bad).unwrap_err();
            assert!(e.contains(word), "{bad}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn internal_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:5",
            "2002:a00:1::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "151.101.1.69", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn upstream_needs_listing_and_internal_addresses_their_own_listing() {
        let r = Resolver::default();
        let _ = r.names.inner.set(None);
        let u = |s: &str| url::Url::parse(s).unwrap();
        let local = r.check(&u("http://127.0.0.1:8080"), &[]).await.unwrap();
        assert_eq!(local, ["127.0.0.1:8080".parse().unwrap()]);
        let e = r.check(&u("https://203.0.113.9"), &[]).await.unwrap_err();
        assert!(e.to_string().contains("egress allow-list"), "{e}");
        let ok = r
            .check(&u("https://151.101.1.69"), &["151.101.1.69".into()])
            .await
            .unwrap();
        assert_eq!(ok[0].port(), 443);
        // An internal address listed as a host is allowed only because it is listed.
        let e = r
            .check(&u("https://api.internal"), &["api.internal".into()])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no DNS configuration"), "{e}");
        assert!(r
            .check(&u("https://10.0.0.7"), &["10.0.0.7".into()])
            .await
            .is_ok());
    }
}
