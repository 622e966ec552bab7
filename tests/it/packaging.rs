//! What ships: one statically linked binary under 30 MiB stripped, and the .deb around it.

use crate::support::BIN;
use std::process::Command;

#[test]
fn the_binary_is_static_and_small() {
    let ldd = Command::new("ldd").arg(BIN).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    // glibc's ldd says "statically linked" for a static PIE, "not a dynamic executable" for
    // a non-PIE static binary; either way nothing is loaded at run time.
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "{text}"
    );
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains("static:    yes"));
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("strongroom");
    std::fs::copy(BIN, &copy).unwrap();
    let strip = Command::new("strip").arg(&copy).status().unwrap();
    assert!(strip.success());
    let size = std::fs::metadata(&copy).unwrap().len();
    assert!(size < 30 << 20, "stripped binary is {size} bytes");
    // Still runs after stripping.
    let v = Command::new(&copy).arg("--version").output().unwrap();
    assert!(v.status.success());
}
