//! Records which commit the binary was built from, and when, for `--version`, the startup
//! log line and the `chargegate_build_info` metric.
//!
//! The commit comes from `CHARGEGATE_BUILD_COMMIT` when set (a container build, where
//! `.git` is not copied in), else from `git rev-parse`; a source tarball without either
//! builds fine and says `unknown`. The date is `SOURCE_DATE_EPOCH` when set (reproducible
//! builds), else today (UTC).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Asks Cargo to run this script again when the checked-out commit changes.
fn watch_git() {
    let mut watched = Vec::new();
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watched.push(head);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
    {
        watched.push(path);
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watched.push(packed);
    }
    // A watched path that does not exist would rerun this script on every build.
    for path in watched.iter().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=CHARGEGATE_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    watch_git();

    let commit = std::env::var("CHARGEGATE_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());

    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
        });
    let date = seconds
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(|| "unknown".to_owned(), |t| t.date().to_string());

    println!("cargo:rustc-env=CHARGEGATE_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=CHARGEGATE_BUILD_DATE={date}");
}
