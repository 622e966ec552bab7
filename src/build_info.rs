//! What this binary is: version, commit, build time, the SQLCipher and OpenSSL inside it, and
//! whether it is statically linked. Printed by `strongroom --version` and kept in bug reports.

/// The git commit this binary was built from.
pub const GIT_COMMIT: &str = env!("SR_BUILD_GIT_COMMIT");

/// Build time, Unix seconds (SOURCE_DATE_EPOCH when set).
pub fn build_epoch() -> i64 {
    env!("SR_BUILD_EPOCH").parse().unwrap_or(0)
}

/// True when the C runtime is linked in (`-C target-feature=+crt-static`).
pub const STATIC: bool = cfg!(target_feature = "crt-static");

/// SQLCipher and its crypto provider, asked of the library itself.
fn cipher_versions() -> (String, String, String) {
    let unknown = || "unknown".to_string();
    let Ok(conn) = rusqlite::Connection::open_in_memory() else {
        return (unknown(), unknown(), unknown());
    };
    let q = |sql: &str| {
        conn.query_row(sql, [], |r| r.get::<_, String>(0))
            .unwrap_or_else(|_| unknown())
    };
    let _ = conn.execute_batch("PRAGMA cipher_log_level = NONE;");
    // The provider answers only on a keyed connection; an in-memory throwaway key will do.
    let _ = conn.execute_batch(
        "PRAGMA key = \"x'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'\";",
    );
    (
        q("SELECT sqlite_version()"),
        q("PRAGMA cipher_version"),
        q("PRAGMA cipher_provider_version"),
    )
}

/// The multi-line text of `strongroom --version`.
pub fn long_version() -> String {
    let (sqlite, sqlcipher, provider) = cipher_versions();
    let built = crate::clock::format_rfc3339(build_epoch().saturating_mul(1_000_000));
    format!(
        "{version}\ncommit:    {GIT_COMMIT}\nbuilt:     {built}\nsqlcipher: {sqlcipher} (SQLite {sqlite})\nopenssl:   {provider}\nstatic:    {static_}\ntarget:    {arch}-{os}",
        version = env!("CARGO_PKG_VERSION"),
        static_ = if STATIC { "yes" } else { "no" },
        arch = std::env::consts::ARCH,
        os = std::env::consts::OS,
    )
}
