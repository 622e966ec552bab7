//! Crash-test hooks. `SR_FAULT_ROTATE_STEP=N` makes the process stop dead (sleep until
//! killed) at point N, so the crash tests can SIGKILL a multi-step operation between any two
//! of its steps and check what a restart makes of it.
//!
//! Points: 1–5 root-key rotation; 11–14 tenant-key rotation (11: the staged copy exists but
//! is still empty); 21–22 single-tenant restore; 31–34 whole-installation restore; 41 `backup create` renaming its archive into place; 51 `tenant create` between its file
//! and its registry row.
//!
//! `SR_FAULT_FAIL_STEP=N` makes [`fail`] return an error at point N instead, so the tests
//! can check that an operation undoes what it did when a later step fails.

/// Stops here, for good, when the crash test asked for this point.
pub fn point(step: u32) {
    if asked("SR_FAULT_ROTATE_STEP", step) {
        tracing::error!(step, "fault point reached; waiting to be killed");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// An injected failure at point `step`, when the test asked for one.
///
/// # Errors
/// `SR_FAULT_FAIL_STEP` names this point.
pub fn fail(step: u32) -> std::io::Result<()> {
    if asked("SR_FAULT_FAIL_STEP", step) {
        return Err(std::io::Error::other(format!(
            "injected failure at point {step}"
        )));
    }
    Ok(())
}

/// True when the variable `var` names point `step`.
fn asked(var: &str, step: u32) -> bool {
    std::env::var(var).ok().and_then(|v| v.parse().ok()) == Some(step)
}
