//! Time as a parameter: the in-process router on a manual clock, and the timers (checkpoint
//! interval, idle close, security.txt expiry) following that clock rather than the wall.

use crate::support::InProcess;
use strongroom::audit::Actor;
use strongroom::clock::Clock;

/// 2030-01-01T00:00:00Z.
const START_US: i64 = 1_893_456_000 * 1_000_000;
const SECOND: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_router_answers_on_the_test_clock() {
    let t = InProcess::start(
        "[security]\ncontact = \"mailto:security@example.com\"\n",
        START_US,
    );
    let (status, headers, _) = t.request("GET", "/healthz", b"").await;
    assert_eq!(status, 200);
    assert!(headers.contains_key("strict-transport-security"));
    let (status, _, body) = t.request("GET", "/.well-known/security.txt", b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("Expires: 2030-06-30T00:00:00Z"), "{text}");
    t.clock.advance_us(365 * 86_400 * SECOND);
    let (_, _, body) = t.request("GET", "/.well-known/security.txt", b"").await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("Expires: 2031-06-30T00:00:00Z"), "{text}");
}

/// Unsigned entries are signed once the checkpoint interval has passed on the journal's
/// clock, without closing the file and without waiting an hour.
#[test]
fn the_checkpoint_interval_follows_the_clock() {
    let t = InProcess::start(
        "[audit]\ncheckpoint_every = 1000\ncheckpoint_interval_secs = 3600\n",
        START_US,
    );
    let tenant = strongroom::tenants::create(&t.app, &Actor::cli(), "Timed", None).unwrap();
    let store = strongroom::tenants::open_store(&t.app, &tenant.id).unwrap();
    let signed = |store: &strongroom::store::Store| -> (i64, i64) {
        store
            .read(|c| -> Result<_, strongroom::store::StoreError> {
                Ok(c.query_row(
                    "SELECT (SELECT max(seq) FROM audit_entries), \
                     (SELECT coalesce(max(seq), 0) FROM audit_checkpoints)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap())
            })
            .unwrap()
    };
    let (head, cp) = signed(&store);
    assert!(head > cp, "the tail is unsigned at first: {head} {cp}");
    // Real time passes, the clock does not: nothing is signed.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(signed(&store).1, cp);
    t.clock.advance_us(3601 * SECOND);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while signed(&store).1 < head {
        assert!(std::time::Instant::now() < deadline, "never signed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(t.clock.now_us(), START_US + 3601 * SECOND);
    // The journal written on the test clock verifies like any other.
    drop(store);
    t.app.shutdown();
    t.env.ok(&["audit", "verify", "--all"]);
}

/// A tenant file closes after the idle period on the stores' clock.
#[test]
fn idle_tenants_close_on_the_clock() {
    let t = InProcess::start("[store]\ntenant_idle_secs = 300\n", START_US);
    let tenant = strongroom::tenants::create(&t.app, &Actor::cli(), "Idle", None).unwrap();
    drop(strongroom::tenants::open_store(&t.app, &tenant.id).unwrap());
    let stores = t.app.tenant_stores();
    assert_eq!(stores.open_count(), 1);
    assert_eq!(stores.close_idle(), 0, "not idle yet");
    t.clock.advance_us(299 * SECOND);
    assert_eq!(stores.close_idle(), 0, "not idle yet");
    t.clock.advance_us(2 * SECOND);
    assert_eq!(stores.close_idle(), 1);
    assert_eq!(stores.open_count(), 0);
}
