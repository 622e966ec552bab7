//! The systemd notification protocol (sd_notify), spoken directly: one datagram per message
//! to the socket named by `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//! Without that variable every call is a no-op, so the server runs the same outside systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=...`).
/// Failures are logged, never fatal: the service must not die because its manager is gone.
pub fn notify(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let t = target.to_string_lossy();
        if let Some(name) = t.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(message.as_bytes(), &addr)
        } else {
            sock.send_to(message.as_bytes(), &*t)
        }
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The watchdog period asked for by systemd (`$WATCHDOG_USEC`), if any, for this process
/// (`$WATCHDOG_PID`, when set, must be ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
