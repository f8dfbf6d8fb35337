//! The conformance corpus (`conformance/cases.json`, programs every sandbox must handle) and the
//! same checks `conformance/run.py` applies to a live server.

use sandbox_protocol::ExecResult;
use serde::Deserialize;
use serde_json::Value;

/// One case.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// Unique id.
    pub name: String,
    /// `python`, `javascript` or `shell`.
    pub language: String,
    /// The program.
    pub code: String,
    /// An event for a handler.
    #[serde(default)]
    pub event: Option<Value>,
    /// Timeout in seconds (default 10).
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// What counts as correct.
    pub expect: Expect,
    /// Whether a plain `print('ok')` must work afterwards in the same sandbox.
    #[serde(default)]
    pub then_healthy: bool,
}

fn default_timeout() -> u64 {
    10
}

/// Expectations of a case.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Expect {
    /// Acceptable statuses.
    pub status: Vec<String>,
    /// Substrings stdout must contain.
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    /// Substrings stdout must not contain.
    #[serde(default)]
    pub stdout_not_contains: Vec<String>,
    /// Substrings stderr must contain.
    #[serde(default)]
    pub stderr_contains: Vec<String>,
    /// Substrings some text must contain.
    #[serde(default)]
    pub any_text_contains: Vec<String>,
    /// Exact exit code.
    pub exit_code: Option<i64>,
    /// Exact return value.
    pub return_value: Option<Value>,
    /// Cap on stdout bytes.
    pub stdout_max_bytes: Option<usize>,
    /// Cap on stderr bytes.
    pub stderr_max_bytes: Option<usize>,
    /// Cap on the return value's JSON bytes.
    pub result_max_bytes: Option<usize>,
    /// Cap on the wall time of the whole call.
    pub max_seconds: Option<f64>,
}

/// The corpus shipped in the repository.
pub fn cases() -> Vec<Case> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("cases.json parses")
}

/// The fields of a result the checks look at (an executor result or a REST execution).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The status.
    pub status: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// The error message.
    pub error_message: Option<String>,
    /// The exit code.
    pub exit_code: Option<i64>,
    /// The return value.
    pub return_value: Option<Value>,
    /// Wall time of the call, seconds.
    pub seconds: f64,
}

impl Observed {
    /// What an executor result shows, the call having taken `seconds`.
    pub fn of(r: &ExecResult, seconds: f64) -> Observed {
        Observed {
            status: r.status.to_string(),
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            error_message: r.error_message.clone(),
            exit_code: r.exit_code.map(i64::from),
            return_value: r.return_value.clone(),
            seconds,
        }
    }
}

/// Every way `seen` misses `case`'s expectations; empty when it passes.
pub fn check(case: &Case, seen: &Observed) -> Vec<String> {
    let e = &case.expect;
    let mut probs = Vec::new();
    if !e.status.contains(&seen.status) {
        probs.push(format!("status {:?} not in {:?}", seen.status, e.status));
    }
    for s in &e.stdout_contains {
        if !seen.stdout.contains(s.as_str()) {
            probs.push(format!("stdout lacks {s:?}"));
        }
    }
    for s in &e.stdout_not_contains {
        if seen.stdout.contains(s.as_str()) {
            probs.push(format!("stdout has {s:?}"));
        }
    }
    for s in &e.stderr_contains {
        if !seen.stderr.contains(s.as_str()) {
            probs.push(format!("stderr lacks {s:?}"));
        }
    }
    let all_text = format!("{}{}{}", seen.stdout, seen.stderr, seen.error_message.as_deref().unwrap_or(""));
    for s in &e.any_text_contains {
        if !all_text.contains(s.as_str()) {
            probs.push(format!("no text has {s:?}"));
        }
    }
    if e.exit_code.is_some() && e.exit_code != seen.exit_code {
        probs.push(format!("exit_code {:?} != {:?}", seen.exit_code, e.exit_code));
    }
    if e.return_value.is_some() && e.return_value != seen.return_value {
        probs.push(format!("return_value {:?} != {:?}", seen.return_value, e.return_value));
    }
    if e.stdout_max_bytes.is_some_and(|m| seen.stdout.len() > m) {
        probs.push(format!("stdout is {} bytes", seen.stdout.len()));
    }
    if e.stderr_max_bytes.is_some_and(|m| seen.stderr.len() > m) {
        probs.push(format!("stderr is {} bytes", seen.stderr.len()));
    }
    let rv_len = serde_json::to_string(&seen.return_value).map(|s| s.len()).unwrap_or(0);
    if e.result_max_bytes.is_some_and(|m| rv_len > m) {
        probs.push(format!("return value is {rv_len} bytes"));
    }
    if e.max_seconds.is_some_and(|m| seen.seconds > m) {
        probs.push(format!("took {:.1}s > {:?}s", seen.seconds, e.max_seconds));
    }
    probs
}

/// The health check `then_healthy` cases run afterwards.
pub fn healthy_case() -> Case {
    Case {
        name: "then_healthy".into(),
        language: "python".into(),
        code: "print('ok')\n".into(),
        event: None,
        timeout: 10,
        expect: Expect {
            status: vec!["completed".into()],
            stdout_contains: vec!["ok".into()],
            ..Default::default()
        },
        then_healthy: false,
    }
}

/// Prints one line for a case's run and, when it has problems, keeps them (with what the
/// execution said) in `failures` for the test's final assertion.
pub fn report(case: &Case, r: &ExecResult, probs: &[String], failures: &mut Vec<String>) {
    println!("{:<30} {:<10} {:>7.0} ms  {}", case.name, r.status, r.metrics.duration_ms, probs.join("; "));
    if !probs.is_empty() {
        failures.push(format!(
            "{}: {} (error_message {:?}, stderr {:?})",
            case.name,
            probs.join("; "),
            r.error_message,
            r.stderr
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_loads_and_checks_can_fail() {
        let all = cases();
        assert_eq!(all.len(), 33);
        let hello = all.iter().find(|c| c.name == "py_hello").unwrap();
        let good = Observed {
            status: "completed".into(),
            stdout: "hello\n".into(),
            exit_code: Some(0),
            ..Default::default()
        };
        assert!(check(hello, &good).is_empty());
        let bad = Observed { status: "failed".into(), ..good };
        assert_eq!(check(hello, &bad).len(), 1);
    }
}
