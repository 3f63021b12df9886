//! What this binary is: its version, the commit it was built from and when (recorded by
//! the build script; `unknown` for a source tree without git history).

/// The package version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit, abbreviated, or `unknown`.
pub const COMMIT: &str = env!("CHARGEGATE_BUILD_COMMIT");
/// The build's date (UTC), `YYYY-MM-DD`.
pub const DATE: &str = env!("CHARGEGATE_BUILD_DATE");

/// What `--version` prints after the name: `0.1.0 (commit 1a2b3c4d5e6f, built 2026-11-26)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CHARGEGATE_BUILD_COMMIT"),
    ", built ",
    env!("CHARGEGATE_BUILD_DATE"),
    ")"
);
