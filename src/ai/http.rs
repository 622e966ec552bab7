//! Model endpoints over HTTP: OpenAI-compatible chat completions and Anthropic Messages,
//! plain or streamed (server-sent events), on the one reqwest client stack of the binary
//! (rustls with ring). Every wait is bounded (connect, first byte, silence inside the
//! answer, the whole call); transient failures are retried a bounded number of times with
//! jitter, on the next base URL of the endpoint, and never once text has been passed on;
//! a URL that keeps failing is skipped for a while (circuit breaker).

use super::egress::{base_url, Resolver};
use super::model::{Deltas, Model, ModelError, Pending, Prompt, Reply, Role, Stop};
use crate::config::{EndpointConfig, Protocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Largest answer read from a model, streamed or not.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Longest `Retry-After` waited for before giving up on a rate-limited endpoint.
const MAX_RETRY_AFTER: u64 = 10;
/// The Anthropic API version spoken.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A token count the model reported, bounded: a count past any context a model has (a
/// faulty or hostile server's `u64::MAX`) is taken as that bound, so sums and budgets never
/// wrap.
fn count(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().map(|n| n.min(MAX_REPORTED_TOKENS))
}

/// The most tokens a model's report is believed for one call.
const MAX_REPORTED_TOKENS: u64 = 1 << 32;

/// An endpoint's API key. Prints `[redacted]`; wiped when dropped.
pub struct ApiKey(Zeroizing<String>);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl ApiKey {
    /// The key itself, for the one client that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this key, in time that does not depend on where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        let (a, b) = (
            ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes()),
            ring::digest::digest(&ring::digest::SHA256, presented.as_bytes()),
        );
        a.as_ref().ct_eq(b.as_ref()).into()
    }
}

/// Reads an API key file: one line of printable ASCII, at most 4 KiB.
///
/// # Errors
/// The file cannot be read, or holds no key; the message names the file, never its content.
pub fn read_key(path: &Path) -> Result<ApiKey, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {}", e.kind()))?;
    if !meta.is_file() || meta.len() > 4096 {
        return Err(format!("{shown} must be a file of one line, at most 4 KiB"));
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|_| format!("{shown} is not a text file"))?,
    );
    let key = text.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{shown} must hold the key alone, on one line, without spaces"
        ));
    }
    Ok(ApiKey(Zeroizing::new(key.to_string())))
}

/// A URL that keeps failing is not called until `open_until`; after that it is half open:
/// one call at a time tries it (until `trial_until`), and the others keep away until that
/// trial ends, so a recovering provider is not met by every waiting call at once.
#[derive(Default)]
struct Breaker {
    failures: u64,
    open_until: Option<Instant>,
    trial_until: Option<Instant>,
}

/// One configured endpoint.
pub struct HttpModel {
    cfg: EndpointConfig,
    key: Option<ApiKey>,
    urls: Vec<url::Url>,
    /// Where each of `urls` takes a call, formed once: parsing it per call was a few
    /// microseconds of every gateway call.
    targets: Vec<url::Url>,
    resolver: Arc<Resolver>,
    trust: Vec<reqwest::Certificate>,
    /// One client per pinned set of addresses, so a pool is kept while a name resolves the
    /// same way, and a changed resolution gets a fresh client.
    clients: Mutex<HashMap<String, reqwest::Client>>,
    breakers: Vec<Mutex<Breaker>>,
    /// Slots for calls in progress (`max_concurrent`), shared by every tenant.
    slots: Arc<tokio::sync::Semaphore>,
    /// Calls waiting for a slot.
    waiting: std::sync::atomic::AtomicU64,
}

/// A call's place in an endpoint's queue: counted as waiting until dropped.
struct Waiting<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for HttpModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpModel")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

/// Refuses every name: connections are only ever made to addresses checked by the egress
/// rules, so the C library's resolver (and the name service behind it) is never reached.
struct NoLookup;

impl reqwest::dns::Resolve for NoLookup {
    fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async { Err("names are resolved by the egress rules only".into()) })
    }
}

/// The URL a call to `base` goes to: the protocol's path under it.
fn call_url(base: &url::Url, protocol: Protocol) -> Result<url::Url, String> {
    let mut root = base.clone();
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let path = match protocol {
        Protocol::Openai => "v1/chat/completions",
        Protocol::Anthropic => "v1/messages",
    };
    root.join(path)
        .map_err(|e| format!("{base}: no call URL can be formed under it ({e})"))
}

fn timeout(stage: &'static str) -> ModelError {
    ModelError::Timeout(stage)
}

impl HttpModel {
    /// # Errors
    /// The key file or the trust anchors cannot be read: the server must not start.
    pub fn new(
        cfg: &EndpointConfig,
        outbound: &crate::config::OutboundConfig,
        resolver: Arc<Resolver>,
    ) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = cfg
            .api_key_file
            .as_deref()
            .map(read_key)
            .transpose()
            .map_err(|e| format!("ai endpoint {}: {e}", cfg.name))?;
        let urls = cfg
            .urls
            .iter()
            .map(|u| base_url(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ai endpoint {}: {e}", cfg.name))?;
        let targets = urls
            .iter()
            .map(|u| call_url(u, cfg.protocol))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ai endpoint {}: {e}", cfg.name))?;
        let trust = match &outbound.ca_file {
            Some(p) => crate::outbound::read_ca_file(p)?,
            None => Vec::new(),
        };
        Ok(Self {
            breakers: urls
                .iter()
                .map(|_| Mutex::new(Breaker::default()))
                .collect(),
            cfg: cfg.clone(),
            key,
            urls,
            targets,
            resolver,
            trust,
            clients: Mutex::new(HashMap::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(cfg.max_concurrent).unwrap_or(usize::MAX >> 4),
            )),
            waiting: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// A slot for one call: at once if one is free, else after a bounded wait in a bounded
    /// queue. A full queue or a wait that runs out is [`ModelError::Busy`]: the server's
    /// threads are never all spent on one slow provider.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ModelError> {
        use std::sync::atomic::Ordering;
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _place = Waiting(&self.waiting);
        if queued >= self.cfg.queue {
            return Err(ModelError::Busy(1));
        }
        let wait = Duration::from_millis(self.cfg.queue_timeout_ms);
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(ModelError::Busy(1)),
        }
    }

    fn client_for(&self, host: &str, addrs: &[SocketAddr]) -> Result<reqwest::Client, ModelError> {
        let id = format!("{host}|{addrs:?}");
        if let Ok(map) = self.clients.lock() {
            if let Some(c) = map.get(&id) {
                return Ok(c.clone());
            }
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_millis(self.cfg.connect_timeout_ms))
            .dns_resolver(Arc::new(NoLookup))
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")));
        if host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') {
            b = b.resolve_to_addrs(host, addrs);
        }
        if !self.trust.is_empty() {
            b = b.tls_certs_merge(self.trust.iter().cloned());
        }
        let client = b.build().map_err(|e| {
            tracing::error!(error = %e, endpoint = %self.cfg.name, "cannot build the model client");
            ModelError::Unreachable
        })?;
        if let Ok(mut map) = self.clients.lock() {
            if map.len() > 64 {
                map.clear();
            }
            map.insert(id, client.clone());
        }
        Ok(client)
    }

    /// The breaker of URL `i` allows a call now; a half-open breaker allows one trial at a
    /// time (a trial that never reports back is over after the call's total timeout).
    fn admits(&self, i: usize) -> Result<(), u64> {
        let Ok(mut b) = self.breakers[i].lock() else {
            return Ok(());
        };
        let now = Instant::now();
        match b.open_until {
            Some(t) if t > now => Err((t - now).as_secs().max(1)),
            Some(_) => match b.trial_until {
                Some(t) if t > now => Err(1),
                _ => {
                    b.trial_until = Some(now + Duration::from_millis(self.cfg.total_timeout_ms));
                    Ok(())
                }
            },
            None => Ok(()),
        }
    }

    /// The end of a call to URL `i`: a success closes its breaker; a failure counts, and
    /// opens it at the threshold or when it was the half-open breaker's trial.
    fn record(&self, i: usize, ok: bool) {
        let Ok(mut b) = self.breakers[i].lock() else {
            return;
        };
        if ok {
            *b = Breaker::default();
            return;
        }
        b.failures += 1;
        if b.failures >= self.cfg.breaker_failures || b.open_until.is_some() {
            b.open_until = Some(Instant::now() + Duration::from_secs(self.cfg.breaker_open_secs));
            b.trial_until = None;
            tracing::warn!(endpoint = %self.cfg.name, url = %self.urls[i], "model endpoint failing; paused");
        }
    }

    /// The end of a call to URL `i` that tells nothing of its health (the request's own
    /// fault): a half-open breaker's trial is over, and the next call may try.
    fn release(&self, i: usize) {
        if let Ok(mut b) = self.breakers[i].lock() {
            b.trial_until = None;
        }
    }

    fn body(&self, prompt: &Prompt, stream: bool) -> serde_json::Value {
        let role = |r: Role| match r {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        // A call's raw part goes only to an endpoint of its own API (the gateway sees to it;
        // checked again here so nothing of one API reaches the other).
        let raw = prompt
            .raw
            .as_ref()
            .filter(|r| r.protocol == self.cfg.protocol);
        let turns: Vec<serde_json::Value> = match raw.and_then(|r| r.messages.as_ref()) {
            Some(messages) => messages.clone(),
            None => prompt
                .messages
                .iter()
                .map(|m| serde_json::json!({ "role": role(m.role), "content": m.content }))
                .collect(),
        };
        let mut v = match self.cfg.protocol {
            Protocol::Openai => {
                let mut messages =
                    vec![serde_json::json!({"role": "system", "content": prompt.system})];
                messages.extend(turns);
                serde_json::json!({
                    "model": self.cfg.model, "messages": messages,
                    "max_tokens": prompt.max_tokens, "temperature": 0,
                })
            }
            Protocol::Anthropic => serde_json::json!({
                "model": self.cfg.model, "system": prompt.system, "messages": turns,
                "max_tokens": prompt.max_tokens, "temperature": 0,
            }),
        };
        if let (Some(r), Some(body)) = (raw, v.as_object_mut()) {
            for (k, x) in &r.fields {
                if !super::model::GATEWAY_FIELDS.contains(&k.as_str()) {
                    body.insert(k.clone(), x.clone());
                }
            }
        }
        // Set last: no field of the caller's decides where the answer goes or how it comes.
        v["stream"] = serde_json::Value::Bool(stream);
        if let Some(body) = v.as_object_mut() {
            body.remove("stream_options");
        }
        if stream && self.cfg.protocol == Protocol::Openai {
            v["stream_options"] = serde_json::json!({ "include_usage": true });
        }
        v
    }

    /// One attempt at URL `i`.
    async fn once(
        &self,
        i: usize,
        prompt: &Prompt,
        allow: &[String],
        deltas: Deltas<'_>,
        deadline: Instant,
        passed_on: &mut bool,
    ) -> Result<Reply, ModelError> {
        let base = &self.urls[i];
        let addrs = self.resolver.check(base, allow).await?;
        let host = base.host_str().unwrap_or_default().to_string();
        let client = self.client_for(&host, &addrs)?;
        let target = self.targets[i].clone();
        // A call that may end in tool calls is asked whole: the calls are returned with
        // their values put back, which a stream of argument fragments would not allow.
        let stream = prompt.stream
            && !prompt
                .raw
                .as_ref()
                .is_some_and(super::model::Raw::has_tools);
        let mut req = client
            .post(target)
            .header("content-type", "application/json")
            .body(self.body(prompt, stream).to_string());
        match (self.cfg.protocol, &self.key) {
            (Protocol::Openai, Some(k)) => req = req.bearer_auth(k.0.as_str()),
            (Protocol::Anthropic, Some(k)) => req = req.header("x-api-key", k.0.as_str()),
            _ => {}
        }
        if self.cfg.protocol == Protocol::Anthropic {
            req = req.header("anthropic-version", ANTHROPIC_VERSION);
        }
        let left = || deadline.saturating_duration_since(Instant::now());
        let first = Duration::from_millis(self.cfg.first_byte_timeout_ms).min(left());
        let mut res = match tokio::time::timeout(first, req.send()).await {
            Err(_) => {
                return Err(timeout(if left().is_zero() {
                    "total"
                } else {
                    "first byte"
                }))
            }
            Ok(Err(e)) if e.is_timeout() => return Err(timeout("connect")),
            Ok(Err(_)) => return Err(ModelError::Unreachable),
            Ok(Ok(r)) => r,
        };
        let status = res.status().as_u16();
        if status == 429 {
            let after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(ModelError::RateLimited(after));
        }
        if !(200..300).contains(&status) {
            return Err(ModelError::Status(status));
        }
        let origin = format!("{}@{}", self.cfg.name, base.origin().ascii_serialization());
        let idle = Duration::from_millis(self.cfg.idle_timeout_ms);
        let mut reply = Reply {
            model: self.cfg.model.clone(),
            endpoint: Some(origin),
            ..Reply::default()
        };
        if !stream {
            let mut body = Vec::new();
            while let Some(c) = next_chunk(&mut res, idle, deadline).await? {
                if body.len() + c.len() > MAX_ANSWER_BYTES {
                    return Err(ModelError::Malformed("the answer is too large"));
                }
                body.extend_from_slice(&c);
            }
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| ModelError::Malformed("not valid JSON"))?;
            self.read_plain(&v, &mut reply)?;
            deltas(&reply.text);
            *passed_on = true;
            return Ok(reply);
        }
        let mut sse = Sse::default();
        let mut total = 0usize;
        let mut done = false;
        while let Some(c) = next_chunk(&mut res, idle, deadline).await? {
            total += c.len();
            if total > MAX_ANSWER_BYTES {
                return Err(ModelError::Malformed("the answer is too large"));
            }
            for (event, data) in sse.feed(&c) {
                if done {
                    continue;
                }
                if let Some(text) =
                    self.read_event(event.as_deref(), &data, &mut reply, &mut done)?
                {
                    if !text.is_empty() {
                        reply.text.push_str(&text);
                        deltas(&text);
                        *passed_on = true;
                    }
                }
            }
            if done {
                break;
            }
        }
        if !done {
            return Err(ModelError::Cut);
        }
        Ok(reply)
    }

    fn read_plain(&self, v: &serde_json::Value, reply: &mut Reply) -> Result<(), ModelError> {
        match self.cfg.protocol {
            Protocol::Openai => {
                let message = &v["choices"][0]["message"];
                let calls = message["tool_calls"].as_array().filter(|c| !c.is_empty());
                if calls.is_some_and(|c| !c.iter().all(serde_json::Value::is_object)) {
                    return Err(ModelError::Malformed(
                        "choices[0].message.tool_calls holds something that is not a call",
                    ));
                }
                reply.text = match message["content"].as_str() {
                    Some(t) => t.to_string(),
                    // A message that only calls tools has no content.
                    None if calls.is_some() => String::new(),
                    None => return Err(ModelError::Malformed("no choices[0].message.content")),
                };
                reply.tool_calls = calls.map(|c| serde_json::Value::Array(c.clone()));
                reply.stop = v["choices"][0]["finish_reason"]
                    .as_str()
                    .and_then(Stop::parse);
                reply.input_tokens = count(&v["usage"]["prompt_tokens"]);
                reply.output_tokens = count(&v["usage"]["completion_tokens"]);
            }
            Protocol::Anthropic => {
                let blocks = v["content"]
                    .as_array()
                    .ok_or(ModelError::Malformed("no content blocks"))?;
                reply.text = blocks
                    .iter()
                    .filter(|b| b["type"] == "text")
                    .filter_map(|b| b["text"].as_str())
                    .collect();
                if blocks.iter().any(|b| b["type"] == "tool_use") {
                    reply.tool_calls = Some(serde_json::Value::Array(blocks.clone()));
                }
                reply.stop = v["stop_reason"].as_str().and_then(Stop::parse);
                reply.input_tokens = count(&v["usage"]["input_tokens"]);
                reply.output_tokens = count(&v["usage"]["output_tokens"]);
            }
        }
        if let Some(m) = v["model"].as_str() {
            reply.model = m.chars().take(200).collect();
        }
        Ok(())
    }

    /// One event of a stream: the text it adds, if any; `done` set at the stream's end.
    fn read_event(
        &self,
        event: Option<&str>,
        data: &str,
        reply: &mut Reply,
        done: &mut bool,
    ) -> Result<Option<String>, ModelError> {
        if self.cfg.protocol == Protocol::Openai && data.trim() == "[DONE]" {
            *done = true;
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_str(data)
            .map_err(|_| ModelError::Malformed("invalid JSON in the stream"))?;
        match self.cfg.protocol {
            Protocol::Openai => {
                if v.get("error").is_some() {
                    return Err(ModelError::Status(500));
                }
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    reply.input_tokens = count(&u["prompt_tokens"]);
                    reply.output_tokens = count(&u["completion_tokens"]);
                }
                if let Some(m) = v["model"].as_str() {
                    reply.model = m.chars().take(200).collect();
                }
                if let Some(stop) = v["choices"][0]["finish_reason"].as_str() {
                    reply.stop = Stop::parse(stop);
                }
                Ok(v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string))
            }
            Protocol::Anthropic => match event.or(v["type"].as_str()) {
                Some("message_start") => {
                    reply.input_tokens = count(&v["message"]["usage"]["input_tokens"]);
                    if let Some(m) = v["message"]["model"].as_str() {
                        reply.model = m.chars().take(200).collect();
                    }
                    Ok(None)
                }
                Some("content_block_delta") => Ok(v["delta"]["text"].as_str().map(str::to_string)),
                Some("message_delta") => {
                    if let Some(n) = count(&v["usage"]["output_tokens"]) {
                        reply.output_tokens = Some(n);
                    }
                    if let Some(stop) = v["delta"]["stop_reason"].as_str() {
                        reply.stop = Stop::parse(stop);
                    }
                    Ok(None)
                }
                Some("message_stop") => {
                    *done = true;
                    Ok(None)
                }
                Some("error") => Err(ModelError::Status(
                    if v["error"]["type"] == "overloaded_error" {
                        529
                    } else {
                        500
                    },
                )),
                _ => Ok(None),
            },
        }
    }

    async fn call(
        &self,
        prompt: &Prompt,
        allow: &[String],
        deltas: Deltas<'_>,
    ) -> Result<Reply, ModelError> {
        let m = crate::metrics::global();
        crate::metrics::inc(&m.upstream_calls, &[("endpoint", &self.cfg.name)]);
        let result = match self.slot().await {
            Ok(_slot) => self.attempts(prompt, allow, deltas).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            crate::metrics::inc(
                &m.upstream_errors,
                &[("endpoint", &self.cfg.name), ("error", e.metric())],
            );
            if matches!(e, ModelError::Busy(_)) {
                crate::metrics::inc(&m.throttled, &[("reason", "endpoint_busy")]);
            }
        }
        result
    }

    async fn attempts(
        &self,
        prompt: &Prompt,
        allow: &[String],
        deltas: Deltas<'_>,
    ) -> Result<Reply, ModelError> {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.total_timeout_ms);
        let mut passed_on = false;
        let mut last: Option<ModelError> = None;
        let mut attempt: u64 = 0;
        loop {
            let n = self.urls.len();
            let start = (attempt as usize) % n;
            let pick = (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| self.admits(i).is_ok());
            let Some(i) = pick else {
                let wait = (0..n)
                    .filter_map(|i| self.admits(i).err())
                    .min()
                    .unwrap_or(1);
                return Err(last.unwrap_or(ModelError::CircuitOpen(wait)));
            };
            let result = self
                .once(i, prompt, allow, &mut *deltas, deadline, &mut passed_on)
                .await;
            let e = match result {
                Ok(r) => {
                    self.record(i, true);
                    return Ok(r);
                }
                Err(e) => e,
            };
            // A URL that answers as no such endpoint would (no such path, not the API's
            // shape) is misconfigured or not the provider: the next URL may be right.
            let wrong_url = matches!(e, ModelError::Status(404 | 405) | ModelError::Malformed(_));
            if e.transient() || wrong_url {
                self.record(i, false);
            } else {
                self.release(i);
            }
            tracing::warn!(endpoint = %self.cfg.name, attempt, code = e.code(), error = %e, "model call failed");
            let out_of_time = Instant::now() >= deadline;
            if wrong_url && !passed_on && !out_of_time && attempt + 1 < n as u64 {
                last = Some(e);
                attempt += 1;
                continue;
            }
            if !e.transient() || passed_on || attempt >= self.cfg.retries || out_of_time {
                return Err(e);
            }
            let wait = match e {
                ModelError::RateLimited(s) if s > MAX_RETRY_AFTER => return Err(e),
                ModelError::RateLimited(s) => Duration::from_secs(s),
                _ => backoff(attempt),
            };
            if Instant::now() + wait >= deadline {
                return Err(e);
            }
            tokio::time::sleep(wait).await;
            last = Some(e);
            attempt += 1;
        }
    }
}

/// 200 ms doubled per attempt, times a random factor from 0.5 to 1.5.
fn backoff(attempt: u64) -> Duration {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    let jitter = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    Duration::from_millis((200.0 * 2f64.powi(attempt.min(6) as i32) * jitter) as u64)
}

/// The next piece of an answer, waiting at most `idle` and never past `deadline`.
async fn next_chunk(
    res: &mut reqwest::Response,
    idle: Duration,
    deadline: Instant,
) -> Result<Option<Vec<u8>>, ModelError> {
    // Checked before each read: a timeout polls what it wraps first, so an upstream that
    // always has the next piece ready would never see it fire.
    if Instant::now() >= deadline {
        return Err(timeout("total"));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(idle.min(left), res.chunk()).await {
        Err(_) if Instant::now() >= deadline => Err(timeout("total")),
        Err(_) => Err(timeout("idle")),
        Ok(Err(_)) => Err(ModelError::Cut),
        Ok(Ok(c)) => Ok(c.map(|b| b.to_vec())),
    }
}

impl Model for HttpModel {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn protocol(&self) -> Option<Protocol> {
        Some(self.cfg.protocol)
    }

    fn upstream(&self) -> bool {
        !self
            .urls
            .iter()
            .all(|u| u.host_str().is_some_and(super::egress::is_loopback_host))
    }

    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
        egress_allow: &'a [String],
        deltas: Deltas<'a>,
    ) -> Pending<'a> {
        Box::pin(self.call(prompt, egress_allow, deltas))
    }

    fn state(&self) -> Option<crate::metrics::EndpointState> {
        let max = usize::try_from(self.cfg.max_concurrent).unwrap_or(usize::MAX >> 4);
        let now = Instant::now();
        Some(crate::metrics::EndpointState {
            name: self.cfg.name.clone(),
            in_flight: max.saturating_sub(self.slots.available_permits()) as u64,
            waiting: self.waiting.load(std::sync::atomic::Ordering::SeqCst),
            breakers: self
                .breakers
                .iter()
                .map(|b| match b.lock().map(|b| b.open_until) {
                    Ok(Some(t)) if t > now => 1,
                    Ok(Some(_)) => 2,
                    _ => 0,
                })
                .collect(),
        })
    }
}

/// A server-sent events reader: bytes in, complete events (`event`, `data`) out. Each byte
/// is searched once however the stream is cut (a search from the start of what waits, at
/// every piece, made an upstream that never ends an event cost quadratic time), and what
/// waits is moved once per piece, not once per event.
#[derive(Default)]
pub struct Sse {
    buf: Vec<u8>,
    /// Where the next search for an event's end starts.
    scanned: usize,
}

impl Sse {
    /// Takes `bytes` and returns every event completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<(Option<String>, String)> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some((at, len)) = find_blank_line(&self.buf, from) {
            let text = String::from_utf8_lossy(&self.buf[start..at]);
            let (mut event, mut data) = (None, Vec::new());
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_string());
                }
            }
            if !data.is_empty() {
                out.push((event, data.join("\n")));
            }
            start = at + len;
            from = start;
        }
        self.buf.drain(..start);
        // The last three bytes may be the start of an event's end.
        self.scanned = self.buf.len().saturating_sub(3);
        out
    }
}

/// The first blank line (`\n\n` or `\r\n\r\n`) at or after `from`: its offset and length.
fn find_blank_line(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 1 < b.len() {
        match b[i] {
            b'\n' if b[i + 1] == b'\n' => return Some((i, 2)),
            b'\r' if b[i..].starts_with(b"\r\n\r\n") => return Some((i, 4)),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The endpoints of the configuration, each ready to call.
///
/// # Errors
/// An endpoint whose key or trust anchors cannot be read: the server must not start.
pub fn models(config: &crate::config::Config) -> Result<super::assistant::Models, String> {
    let resolver = Arc::new(Resolver::new());
    let mut out: Vec<Arc<dyn Model>> = Vec::new();
    for e in &config.ai.endpoints {
        out.push(Arc::new(HttpModel::new(
            e,
            &config.outbound,
            resolver.clone(),
        )?));
    }
    Ok(super::assistant::Models::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A half-open breaker lets one trial through at a time; a failed trial opens it again,
    /// a trial that tells nothing frees the next, a success closes it.
    #[tokio::test]
    async fn a_half_open_breaker_admits_one_trial_at_a_time() {
        let cfg: EndpointConfig = toml::from_str(
            "name = \"m\"\nprotocol = \"openai\"\nurls = [\"http://127.0.0.1:9\"]\nmodel = \"m\"\nbreaker_failures = 1\nbreaker_open_secs = 0\n",
        )
        .unwrap();
        let m = HttpModel::new(
            &cfg,
            &crate::config::OutboundConfig::default(),
            Arc::new(Resolver::new()),
        )
        .unwrap();
        assert!(
            m.admits(0).is_ok() && m.admits(0).is_ok(),
            "closed: all pass"
        );
        m.record(0, false);
        // Opened for no time: half open at once.
        assert!(m.admits(0).is_ok(), "the trial");
        assert_eq!(m.admits(0), Err(1), "others wait for the trial");
        m.record(0, false);
        assert!(m.admits(0).is_ok(), "a new trial after the failed one");
        assert_eq!(m.admits(0), Err(1));
        m.release(0);
        assert!(
            m.admits(0).is_ok(),
            "a trial that told nothing frees the next"
        );
        m.record(0, true);
        assert!(m.admits(0).is_ok() && m.admits(0).is_ok(), "closed again");
    }

    /// An upstream that never ends an event, a byte at a time: each byte is looked at a
    /// bounded number of times (counted, not timed).
    #[test]
    fn an_event_that_never_ends_costs_linear_work() {
        let mut sse = Sse::default();
        let line = b"data: x\n";
        let mut fed = 0usize;
        for _ in 0..20_000 {
            for b in line {
                assert!(sse.feed(std::slice::from_ref(b)).is_empty());
                fed += 1;
                // What the next search starts from is never more than 3 bytes back.
                assert!(sse.buf.len() - sse.scanned <= 3);
            }
        }
        assert_eq!(sse.buf.len(), fed);
        // Many events in one piece come out in order, the rest kept for the next.
        let mut sse = Sse::default();
        let many: String = (0..1000).map(|i| format!("data: {i}\n\n")).collect();
        let got = sse.feed(format!("{many}data: tail").as_bytes());
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999].1, "999");
        assert_eq!(sse.feed(b"\n\n"), [(None, "tail".to_string())]);
    }

    #[test]
    fn events_are_split_across_any_chunking() {
        let stream = "event: message_start\ndata: {\"a\":1}\n\ndata: one\ndata: two\r\n\r\n: comment\n\ndata: [DONE]\n\n";
        for size in [1, 3, 7, stream.len()] {
            let mut sse = Sse::default();
            let mut got = Vec::new();
            for chunk in stream.as_bytes().chunks(size) {
                got.extend(sse.feed(chunk));
            }
            assert_eq!(
                got,
                [
                    (Some("message_start".to_string()), "{\"a\":1}".to_string()),
                    (None, "one\ntwo".to_string()),
                    (None, "[DONE]".to_string()),
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn calls_go_to_the_protocols_path_under_the_base() {
        let url = |raw: &str, p| call_url(&url::Url::parse(raw).unwrap(), p).unwrap();
        assert_eq!(
            url("http://127.0.0.1:8080", Protocol::Openai).as_str(),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        // A base with a path keeps it, with or without its last slash.
        for base in ["https://models.example/llm", "https://models.example/llm/"] {
            assert_eq!(
                url(base, Protocol::Anthropic).as_str(),
                "https://models.example/llm/v1/messages"
            );
        }
    }

    #[test]
    fn keys_are_read_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "sk-test-123\n").unwrap();
        let k = read_key(&p).unwrap();
        assert_eq!(k.0.as_str(), "sk-test-123");
        assert_eq!(format!("{k:?}"), "[redacted]");
        std::fs::write(&p, "two words\n").unwrap();
        let e = read_key(&p).unwrap_err();
        assert!(e.contains("without spaces") && !e.contains("two"), "{e}");
        assert!(read_key(&dir.path().join("missing"))
            .unwrap_err()
            .contains("cannot read"));
    }
}
