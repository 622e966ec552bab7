//! The gateway's limits shared across nodes through a real `redis-server` on loopback: two
//! nodes of one installation (each its own state and limiter) meet one burst, one count of
//! calls in progress and one day's tokens; Redis killed mid-test refuses calls by default
//! (and they reach no model) or lets them through under each node's own limits when the
//! tenant says open; Redis back, sharing resumes. The shared limiter is also held to the
//! in-memory one step for step, and to its bounds when Redis hangs or a node dies.

use crate::gateway_api::{post, post_on};
use crate::models::{endpoint, Ai, Backend};
use crate::redis_server::{available, free_port, RedisServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use strongroom::ai::limits::{CallLimiter, Denied, Refusal, Scoped};
use strongroom::clock::Clock;
use strongroom::config::{RateLimitConfig, RedisUrl};
use strongroom::policy::limits::{Limits, OnSharedFailure};

/// Short waits on Redis, so the tests of its absence end quickly.
const TIMEOUT_MS: u64 = 300;

fn config(redis_url: &str, fake: &Backend) -> String {
    let mut c = format!("[rate_limit]\nredis_url = {redis_url:?}\ntimeout_ms = {TIMEOUT_MS}\n");
    c.push_str(&endpoint("o-echo", "openai", &[&fake.url], "echo", ""));
    c.push_str(&endpoint(
        "o-slow",
        "openai",
        &[&fake.url],
        "slow-first-byte-1500",
        "",
    ));
    c
}

fn set_limits(ai: &Ai, assignments: &[&str]) -> Value {
    let tenant = ai.tenant.as_str();
    let mut a = vec!["assistant", "limits", "--tenant", tenant];
    for s in assignments {
        a.extend(["--set", s]);
    }
    serde_json::from_str(&ai.s.env.ok(&a)).unwrap()
}

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "hello" }] })
}

fn anthropic(model: &str) -> Value {
    json!({ "model": model, "max_tokens": 50, "messages": [{ "role": "user", "content": "hello" }] })
}

fn reached(fake: &Backend, model: &str) -> u64 {
    tokio::task::block_in_place(|| fake.requests()["by_model"][model].as_u64().unwrap_or(0))
}

/// A burst spent on node A is refused on node B, in each vendor's shape; the bucket refills
/// with the (shared) clock for both; calls in progress on A count on B; a day's tokens
/// spent on A are gone on B until midnight UTC.
#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_limits_hold_across_two_nodes() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let fake = Backend::fake(&[]);
    let ai = Ai::new(&config(&redis.url(), &fake));
    ai.use_model("o-echo");
    let b = ai.s.node();
    let auth = ai.op.clone();
    let h = [("authorization", auth.as_str())];

    let shown = set_limits(&ai, &["token.rps=0.5", "token.burst=2"]);
    assert_eq!(shown["token"]["burst"], 2);
    // Closed unless set, and then not written, so older nodes still read the policy.
    assert!(shown.get("on_shared_failure").is_none(), "{shown}");
    for _ in 0..2 {
        let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("extractive")).await;
        assert_eq!(st, 200, "node A: {raw}");
    }
    let (st, headers, v, raw) = post_on(&b, "/v1/chat/completions", &h, &chat("o-echo")).await;
    assert_eq!(st, 429, "node B shares A's bucket: {raw}");
    assert_eq!(
        headers["retry-after"], "2",
        "one call at half a call per second"
    );
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token's limit of requests per second"),
        "{raw}"
    );
    let (st, headers, v, raw) = post_on(&b, "/v1/messages", &h, &anthropic("o-echo")).await;
    assert_eq!(st, 429, "{raw}");
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(reached(&fake, "echo"), 0, "refused calls reach no model");

    // Two seconds on the shared clock: one call, on whichever node, then none on the other.
    ai.s.clock.advance_us(2_000_000);
    let (st, _, _, raw) = post_on(&b, "/v1/chat/completions", &h, &chat("o-echo")).await;
    assert_eq!(st, 200, "{raw}");
    assert_eq!(reached(&fake, "echo"), 1);
    let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 429, "B's call took A's refill: {raw}");

    // Calls in progress: one at a time for the tenant, counted wherever they run.
    set_limits(
        &ai,
        &["token.rps=off", "token.burst=off", "tenant.concurrent=1"],
    );
    let slow = async { post(&ai, "/v1/chat/completions", &h, &chat("o-slow")).await };
    let meanwhile = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while reached(&fake, "slow-first-byte-1500") == 0 {
            assert!(
                Instant::now() < deadline,
                "the slow call never reached its model"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        post_on(&b, "/v1/chat/completions", &h, &chat("extractive")).await
    };
    let ((st_a, _, _, raw_a), (st_b, headers, v, raw_b)) = tokio::join!(slow, meanwhile);
    assert_eq!(st_a, 200, "{raw_a}");
    assert_eq!(st_b, 429, "A's call in progress fills B's slot: {raw_b}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant's limit of concurrent calls"),
        "{raw_b}"
    );
    // A's call has ended; its slot is given back (by a task of its own, so within moments).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (st, _, _, raw) = post_on(&b, "/v1/chat/completions", &h, &chat("extractive")).await;
        if st == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was never given back: {raw}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A day's tokens: A's call spends past the budget; B waits for midnight UTC.
    set_limits(&ai, &["tenant.concurrent=off", "tenant.tokens_per_day=5"]);
    let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 200, "{raw}");
    let (st, headers, v, raw) = post_on(&b, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 429, "{raw}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant's limit of model tokens per day is used up"),
        "{raw}"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    let now_s = ai.s.clock.now_us().div_euclid(1_000_000) as u64;
    assert_eq!(wait, 86_400 - now_s % 86_400, "until midnight UTC");
    ai.s.clock.advance_us(wait as i64 * 1_000_000);
    let (st, _, _, raw) = post_on(&b, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 200, "a new day on both nodes: {raw}");
}

/// Redis killed mid-test: closed (the default) refuses every limited call with 503 and
/// `Retry-After: 1` in the vendor's shape, saying the limits could not be checked, and no
/// call reaches a model; open answers under this node's own limits; Redis back, the two
/// nodes share again.
#[tokio::test(flavor = "multi_thread")]
async fn redis_going_away_refuses_when_closed_and_answers_when_open() {
    if !available() {
        return;
    }
    let mut redis = RedisServer::start();
    let fake = Backend::fake(&[]);
    let ai = Ai::new(&config(&redis.url(), &fake));
    ai.use_model("o-echo");
    let b = ai.s.node();
    let auth = ai.op.clone();
    let h = [("authorization", auth.as_str())];
    set_limits(&ai, &["token.rps=0.5", "token.burst=2"]);
    let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("o-echo")).await;
    assert_eq!(st, 200, "{raw}");
    assert_eq!(reached(&fake, "echo"), 1);

    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let (st, headers, v, raw) = post(&ai, "/v1/chat/completions", &h, &chat("o-echo")).await;
        assert_eq!(st, 503, "{raw}");
        assert!(
            started.elapsed() < Duration::from_millis(TIMEOUT_MS + 1500),
            "bounded by rate_limit.timeout_ms: {:?}",
            started.elapsed()
        );
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(v["error"]["type"], "server_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limits on calls to models could not be checked"),
            "{raw}"
        );
    }
    let (st, headers, v, raw) = post_on(&b, "/v1/messages", &h, &anthropic("o-echo")).await;
    assert_eq!(st, 503, "{raw}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(
        reached(&fake, "echo"),
        1,
        "no refused call reached the model"
    );
    // Each node's first refusal is on the record before its answer (later ones are counted
    // and written together when their window ends).
    let refused: Vec<Value> = crate::gateway_api::audit_entries(&ai, "gateway.refused");
    let first = refused
        .iter()
        .filter(|e| e["params"]["refused"] == 1)
        .count();
    assert!(first >= 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|e| e["params"]["reason"] == "limits_unavailable" && e["outcome"] == "denied"),
        "{refused:?}"
    );

    // Open: answered, under each node's own limits (a fresh bucket of two, per node).
    let shown = set_limits(&ai, &["on_shared_failure=open"]);
    assert_eq!(shown["on_shared_failure"], "open");
    for node in [&ai.s.router, &b] {
        for _ in 0..2 {
            let (st, _, _, raw) = post_on(node, "/v1/chat/completions", &h, &chat("o-echo")).await;
            assert_eq!(st, 200, "{raw}");
        }
        let (st, _, v, raw) = post_on(node, "/v1/chat/completions", &h, &chat("o-echo")).await;
        assert_eq!(st, 429, "the node's own limits still hold: {raw}");
        assert_eq!(v["error"]["type"], "rate_limit_error");
    }
    assert_eq!(reached(&fake, "echo"), 5);

    // Redis back (empty): closed again, and once A reaches it the nodes share one bucket.
    redis.restart();
    let shown = set_limits(&ai, &["on_shared_failure=closed"]);
    assert!(shown.get("on_shared_failure").is_none(), "{shown}");
    ai.s.clock.advance_us(60_000_000);
    // Each node finds out on a call of its own that Redis is back (that call fails closed).
    answered_once_reconnected(&ai.s.router, &h).await;
    answered_once_reconnected(&b, &h).await;
    for node in [&ai.s.router, &b] {
        let (st, _, v, raw) = post_on(node, "/v1/chat/completions", &h, &chat("extractive")).await;
        assert_eq!(st, 429, "shared again: {raw}");
        assert_eq!(v["error"]["type"], "rate_limit_error");
    }
}

/// The server starts and serves while Redis is down (tenants without limits never need
/// it), refuses limited calls meanwhile, and uses Redis once it comes up.
#[tokio::test(flavor = "multi_thread")]
async fn the_server_starts_with_redis_down_and_uses_it_once_up() {
    if !available() {
        return;
    }
    let port = free_port();
    let fake = Backend::fake(&[]);
    let ai = Ai::new(&config(&format!("redis://127.0.0.1:{port}"), &fake));
    let auth = ai.op.clone();
    let h = [("authorization", auth.as_str())];
    let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 200, "no limits, nothing to check: {raw}");
    set_limits(&ai, &["tenant.rps=1", "tenant.burst=1"]);
    let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 503, "{raw}");

    let _redis = RedisServer::start_on(port);
    answered_once_reconnected(&ai.s.router, &h).await;
    let (st, _, _, raw) = post(&ai, "/v1/chat/completions", &h, &chat("extractive")).await;
    assert_eq!(st, 429, "the burst of one is in Redis: {raw}");
}

/// Calls `node` until one is answered (each failing closed with 503 meanwhile), within
/// ten seconds; the answered one takes its share of the limits.
async fn answered_once_reconnected(node: &axum::Router, h: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _, _, raw) = post_on(node, "/v1/chat/completions", h, &chat("extractive")).await;
        if st == 200 {
            return;
        }
        assert_eq!(st, 503, "{raw}");
        assert!(Instant::now() < deadline, "never reconnected: {raw}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn shared(url: &str, lease_secs: u64) -> CallLimiter {
    CallLimiter::new(&RateLimitConfig {
        redis_url: Some(RedisUrl::new(url)),
        redis_password_file: None,
        timeout_ms: TIMEOUT_MS,
        lease_secs,
    })
    .unwrap()
}

/// A Redis that wants a password gets it from `rate_limit.redis_password_file`; without
/// it (or with a wrong one) the shared limits cannot be checked, and a closed tenant's call
/// is refused as such, not let through.
#[tokio::test(flavor = "multi_thread")]
async fn the_password_from_its_file_opens_a_redis_that_wants_one() {
    use std::os::unix::fs::PermissionsExt;
    if !available() {
        return;
    }
    let redis = RedisServer::start_with_password("s3cret-for-limits");
    let dir = tempfile::tempdir().unwrap();
    let with = |password: Option<&str>| {
        let file = password.map(|pw| {
            let path = dir.path().join(format!("pw-{pw}"));
            std::fs::write(&path, format!("{pw}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        });
        CallLimiter::new(&RateLimitConfig {
            redis_url: Some(RedisUrl::new(redis.url())),
            redis_password_file: file,
            timeout_ms: TIMEOUT_MS,
            lease_secs: 30,
        })
        .unwrap()
    };
    let one = vec![(
        "tenant:pw".to_string(),
        Limits {
            concurrent: Some(1),
            ..Limits::default()
        },
        "tenant",
    )];
    let t0 = 1_700_000_000_000_000;
    let right = with(Some("s3cret-for-limits"));
    let held = right
        .admit(t0, &one, OnSharedFailure::Closed)
        .await
        .unwrap();
    // Counted in Redis: the one slot is taken for every node.
    assert_eq!(
        right
            .admit(t0, &one, OnSharedFailure::Closed)
            .await
            .unwrap_err(),
        Denied::Limited(Refusal::Concurrency { scope: "tenant" })
    );
    drop(held);
    for limiter in [with(None), with(Some("wrong-password"))] {
        assert_eq!(
            limiter
                .admit(t0, &one, OnSharedFailure::Closed)
                .await
                .unwrap_err(),
            Denied::Unavailable
        );
    }
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The same few hundred admissions, spends, call ends and clock steps (across a UTC
/// midnight) on the in-memory limiter and on Redis give the same answer every time, and
/// every kind of refusal comes up. Time moves in quarter seconds and the rates are powers
/// of two, so both sides' arithmetic is exact and must agree to the bit.
#[tokio::test(flavor = "multi_thread")]
async fn the_shared_limiter_answers_as_the_in_memory_one_does() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let local = CallLimiter::new(&RateLimitConfig::default()).unwrap();
    assert!(matches!(local, CallLimiter::Local(_)));
    let remote = shared(&redis.url(), 86_400);
    let tenant = Limits {
        rps: Some(2.0),
        burst: Some(3),
        concurrent: Some(4),
        tokens_per_day: Some(1_000),
    };
    let a = Limits {
        rps: Some(0.5),
        burst: Some(2),
        ..Limits::default()
    };
    let b = Limits {
        concurrent: Some(1),
        tokens_per_day: Some(300),
        ..Limits::default()
    };
    let scopes_of = |who: u64| -> Vec<Scoped> {
        let (id, limits) = if who == 0 { ("a", a) } else { ("b", b) };
        vec![
            ("tenant:parity".into(), tenant, "tenant"),
            (format!("caller:parity:token:{id}"), limits, "token"),
        ]
    };
    // 23:58:30 UTC: some 165 s pass in the sequence, so it crosses midnight.
    let day = 20_000 * 86_400_000_000_i64;
    let mut now = day + 86_400_000_000 - 90_000_000;
    let mut rng = Lcg(7);
    let mut held = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..600 {
        match rng.below(10) {
            0..=5 => {
                let s = scopes_of(rng.below(2));
                let l = local.admit(now, &s, OnSharedFailure::Closed).await;
                let r = remote.admit(now, &s, OnSharedFailure::Closed).await;
                match (l, r) {
                    (Ok(lp), Ok(rp)) => {
                        seen.insert("admitted");
                        held.push((lp, rp));
                    }
                    (Err(Denied::Limited(le)), Err(Denied::Limited(re))) => {
                        assert_eq!(le, re, "step {step}");
                        seen.insert(le.reason());
                    }
                    (l, r) => panic!("step {step}: memory {l:?}, Redis {r:?}"),
                }
            }
            6 => {
                let s = scopes_of(rng.below(2));
                let tokens = rng.below(200);
                local.spend(now, &s, tokens).await;
                remote.spend(now, &s, tokens).await;
            }
            7 => {
                held.clear();
                // Redis hears of the ends on tasks of their own.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => now += 250_000 * rng.below(12) as i64,
        }
    }
    assert!(now > day + 86_400_000_000, "the sequence crossed midnight");
    for kind in ["admitted", "rate", "concurrency", "tokens"] {
        assert!(seen.contains(kind), "{kind} never came up: {seen:?}");
    }
}

/// A node that dies with calls in progress holds their slots only until the lease ends;
/// a hung Redis delays a call by at most `rate_limit.timeout_ms`, then the tenant's choice
/// applies; once it answers again, so do the shared limits.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_nodes_calls_end_with_their_lease_and_a_hung_redis_is_waited_for_briefly() {
    if !available() {
        return;
    }
    let redis = RedisServer::start();
    let limiter = shared(&redis.url(), 30);
    let one = vec![(
        "tenant:lease".to_string(),
        Limits {
            concurrent: Some(1),
            ..Limits::default()
        },
        "tenant",
    )];
    let t0 = 1_700_000_000_000_000;
    // Never dropped, as if its node died mid-call.
    std::mem::forget(
        limiter
            .admit(t0, &one, OnSharedFailure::Closed)
            .await
            .unwrap(),
    );
    let refused = limiter
        .admit(t0 + 29_000_000, &one, OnSharedFailure::Closed)
        .await;
    assert_eq!(
        refused.unwrap_err(),
        Denied::Limited(Refusal::Concurrency { scope: "tenant" })
    );
    let after = limiter
        .admit(t0 + 30_000_001, &one, OnSharedFailure::Closed)
        .await;
    assert!(after.is_ok(), "the lease ended: {after:?}");
    drop(after);

    let pid = redis.pid().to_string();
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    };
    signal("-STOP");
    let later = t0 + 60_000_000;
    for (policy, admitted) in [
        (OnSharedFailure::Closed, false),
        (OnSharedFailure::Open, true),
    ] {
        let started = Instant::now();
        let r = limiter.admit(later, &one, policy).await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(TIMEOUT_MS + 700),
            "{policy:?}: waited {took:?}"
        );
        match (admitted, r) {
            (false, Err(Denied::Unavailable)) | (true, Ok(_)) => {}
            (_, r) => panic!("{policy:?}: {r:?}"),
        }
    }
    signal("-CONT");
    // The refused call's script may still run once Redis wakes (its end, sent after it,
    // may not): past its lease, whatever it left has run out.
    let later = later + 30_000_001;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match limiter.admit(later, &one, OnSharedFailure::Closed).await {
            Ok(p) => {
                // Held: the next is refused by Redis, not by a failure.
                let again = limiter.admit(later, &one, OnSharedFailure::Closed).await;
                assert_eq!(
                    again.unwrap_err(),
                    Denied::Limited(Refusal::Concurrency { scope: "tenant" })
                );
                drop(p);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "never answered again: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
