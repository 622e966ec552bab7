//! Crash-test hooks. `SR_FAULT_ROTATE_STEP=N` makes the process stop dead (sleep until
//! killed) at point N, so the crash tests can SIGKILL a multi-step operation between any two
//! of its steps and check what a restart makes of it.
//!
//! Points: 1–5 root-key rotation; 11–14 tenant-key rotation (11: the staged copy exists but
//! is still empty); 21–22 single-tenant restore; 31 whole-installation restore.

/// Stops here, for good, when the crash test asked for this point.
pub fn point(step: u32) {
    if std::env::var("SR_FAULT_ROTATE_STEP")
        .ok()
        .and_then(|v| v.parse().ok())
        == Some(step)
    {
        tracing::error!(step, "fault point reached; waiting to be killed");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
