//! What pip's output says: why an install failed, told apart for the client (a package that
//! does not exist, an index that cannot be reached, no space, a timeout, ...).

use super::package_sets::PackageSetError;
use sandbox_runtime::{InstallerOutcome, RuntimeError};
use std::time::Duration;

/// Most characters of pip's output kept in an error.
const MAX_ERROR_CHARS: usize = 2000;

/// Why an install did not complete.
#[derive(Debug, thiserror::Error)]
pub enum InstallFailure {
    /// A package, or a version of it that the constraint allows, is not on the index.
    #[error("{0}")]
    NotFound(String),
    /// The index could not be reached.
    #[error("the package index could not be reached: {0}")]
    IndexUnreachable(String),
    /// pip failed otherwise (conflicting requirements, no wheel, ...).
    #[error("{0}")]
    Failed(String),
    /// The install took longer than allowed.
    #[error("the install did not finish within {0}s")]
    TimedOut(u64),
    /// The packages are larger than allowed.
    #[error("the installed packages take {size_mb} MiB, more than the limit of {limit_mb} MiB")]
    TooLarge {
        /// Their size.
        size_mb: u64,
        /// The limit.
        limit_mb: u64,
    },
    /// pip ran out of room: the packages (or pip's unpacking of them) need more than allowed.
    #[error(
        "the packages do not fit in the limit of {limit_mb} MiB (dependencies.max_size_mb): pip stopped with 'No space left on device'"
    )]
    NoSpace {
        /// The limit.
        limit_mb: u64,
    },
    /// The installer container could not run.
    #[error("the installer could not run: {0}")]
    Runtime(#[from] RuntimeError),
    /// The host directory could not be prepared or read.
    #[error("the package directory: {0}")]
    Host(#[from] std::io::Error),
    /// The package directory or the staged packages could not be handled.
    #[error("the package directory: {0}")]
    Sets(#[from] PackageSetError),
}

/// Reads what pip's output says went wrong; `refusal` is the first attempt the egress proxy
/// refused or could not connect for this install (`host:port: decision`), if any.
pub(super) fn classify(
    outcome: &InstallerOutcome,
    timeout: Duration,
    limit_mb: u64,
    refusal: Option<String>,
) -> InstallFailure {
    const UNREACHABLE: [&str; 8] = [
        "Failed to establish a new connection",
        "NewConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "Temporary failure in name resolution",
        "Name or service not known",
        "ProxyError",
        "SSLError",
    ];
    let Some(_) = outcome.exit_code else { return InstallFailure::TimedOut(timeout.as_secs()) };
    if outcome.oom_killed {
        return InstallFailure::Failed("the installer ran out of memory (dependencies.memory)".into());
    }
    if outcome.output.contains("No space left on device") {
        return InstallFailure::NoSpace { limit_mb };
    }
    let out = &outcome.output;
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("ERROR:")).collect();
    let summary = if errors.is_empty() {
        let lines: Vec<&str> = out.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    } else {
        errors.join("\n")
    };
    let summary: String = summary.chars().take(MAX_ERROR_CHARS).collect();
    if let Some(refusal) = refusal {
        // pip reports a proxy's refusal as a missing package or an HTTP error; the proxy knows.
        return InstallFailure::IndexUnreachable(format!("the egress proxy answered {refusal}\n{summary}"));
    }
    let not_found =
        out.contains("No matching distribution found") || out.contains("Could not find a version");
    if not_found && UNREACHABLE.iter().any(|u| out.contains(u)) {
        let why = out.lines().find(|l| UNREACHABLE.iter().any(|u| l.contains(u))).unwrap_or_default();
        let why: String = why.chars().take(MAX_ERROR_CHARS / 2).collect();
        return InstallFailure::IndexUnreachable(format!("{why}\n{summary}"));
    }
    if not_found {
        return InstallFailure::NotFound(summary);
    }
    InstallFailure::Failed(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit: Option<i64>, output: &str) -> InstallerOutcome {
        InstallerOutcome { exit_code: exit, output: output.into(), oom_killed: false }
    }

    #[test]
    fn pip_failures_are_told_apart() {
        let t = Duration::from_secs(60);
        let unknown = "Looking in indexes: http://127.0.0.1:9/simple/\nERROR: Could not find a version that satisfies the requirement nope (from versions: none)\nERROR: No matching distribution found for nope\n";
        assert!(
            matches!(classify(&outcome(Some(1), unknown), t, 8, None), InstallFailure::NotFound(m) if m.starts_with("ERROR: Could not find") && m.lines().count() == 2)
        );
        let refused = format!(
            "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(... Failed to establish a new connection: [Errno 111] Connection refused')': /simple/six/\n{unknown}"
        );
        assert!(
            matches!(classify(&outcome(Some(1), &refused), t, 8, None), InstallFailure::IndexUnreachable(m) if m.contains("Connection refused"))
        );
        let conflict = "ERROR: Cannot install a==1 and b==2 because these package versions have conflicting dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io";
        assert!(
            matches!(classify(&outcome(Some(1), conflict), t, 8, None), InstallFailure::Failed(m) if m.contains("ResolutionImpossible"))
        );
        assert!(matches!(classify(&outcome(None, ""), t, 8, None), InstallFailure::TimedOut(60)));
        let oom = InstallerOutcome { oom_killed: true, ..outcome(Some(137), "") };
        assert!(matches!(classify(&oom, t, 8, None), InstallFailure::Failed(m) if m.contains("memory")));
        let full = "ERROR: Exception:\nTraceback ...\nOSError: [Errno 28] No space left on device\n";
        assert!(matches!(
            classify(&outcome(Some(2), full), t, 8, None),
            InstallFailure::NoSpace { limit_mb: 8 }
        ));
        // The proxy's word beats pip's guess.
        let refused = Some("127.0.0.1:9: denied_address: loopback".to_owned());
        assert!(
            matches!(classify(&outcome(Some(1), unknown), t, 8, refused), InstallFailure::IndexUnreachable(m) if m.starts_with("the egress proxy answered 127.0.0.1:9: denied_address: loopback\nERROR: Could not find"))
        );
        let long = "x\n".repeat(5000);
        assert!(
            matches!(classify(&outcome(Some(2), &long), t, 8, None), InstallFailure::Failed(m) if m.len() <= MAX_ERROR_CHARS)
        );
    }
}
