//! How each language starts inside the sandbox, and what its runner reports back.
//!
//! User code is never put on a command line or through a shell: it is copied into the sandbox
//! as `/sandbox/main.<ext>` and started by a small runner (Python, JavaScript) or by `bash`
//! directly. Runners call handlers and report the outcome on file descriptor 3.

use sandbox_core::Language;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// The file descriptor runners report on, inside the sandbox.
pub const RESULT_FD: i32 = 3;

/// Where a language's pieces live inside the sandbox, and how it starts.
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    /// The interpreter, looked up on the sandbox's `PATH`.
    pub program: &'static str,
    /// Its arguments.
    pub args: &'static [&'static str],
    /// Where the user's code is placed.
    pub code_path: &'static str,
    /// The runner script (its path and source), if the language has one.
    pub runner: Option<(&'static str, &'static str)>,
}

const PY_RUNNER: &str = "/sandbox/runner.py";
const JS_RUNNER: &str = "/sandbox/runner.js";

/// How `language` starts.
pub fn launch(language: Language) -> Launch {
    match language {
        Language::Python => Launch {
            program: "python3",
            // Unbuffered, so output written before a timeout is not lost; no .pyc files in the
            // workspace.
            args: &["-u", "-B", PY_RUNNER],
            code_path: "/sandbox/main.py",
            runner: Some((PY_RUNNER, include_str!("runner.py"))),
        },
        Language::Javascript => Launch {
            program: "node",
            args: &[JS_RUNNER],
            code_path: "/sandbox/main.js",
            runner: Some((JS_RUNNER, include_str!("runner.js"))),
        },
        Language::Shell => Launch {
            program: "bash",
            args: &["/sandbox/main.sh"],
            code_path: "/sandbox/main.sh",
            runner: None,
        },
    }
}

/// The directories searched for interpreters (the sandbox's `PATH`).
pub const SANDBOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The languages whose interpreter exists under `root` on [`SANDBOX_PATH`].
pub fn available(root: &Path) -> Vec<Language> {
    Language::ALL
        .into_iter()
        .filter(|l| {
            let program = launch(*l).program;
            SANDBOX_PATH.split(':').any(|dir| root.join(dir.trim_start_matches('/')).join(program).is_file())
        })
        .collect()
}

/// What a runner wrote on [`RESULT_FD`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Report {
    /// The handler returned this value.
    Returned {
        /// The value.
        value: Value,
    },
    /// The handler returned something JSON cannot carry.
    NotSerializable {
        /// The serialiser's complaint.
        message: String,
    },
    /// The code raised and did not catch.
    Exception {
        /// The exception's type name.
        error_type: String,
        /// Its message.
        message: String,
    },
    /// The code asked to exit with this code.
    Exit {
        /// The exit code.
        code: i32,
    },
    /// There was no handler; the script ran to its end.
    Script,
}

/// Why a runner's report could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// More bytes than the result cap.
    #[error("handler return value is larger than the {0}-byte limit")]
    TooLarge(usize),
    /// Not a report at all (user code wrote to the result descriptor).
    #[error("the result channel carried something that is not a result: {0}")]
    Malformed(String),
}

/// Parses what arrived on the result descriptor; `None` when nothing did.
pub fn parse_report(bytes: &[u8], total: u64, cap: usize) -> Option<Result<Report, ReportError>> {
    if total == 0 {
        return None;
    }
    if total > cap as u64 {
        return Some(Err(ReportError::TooLarge(cap)));
    }
    Some(serde_json::from_slice(bytes).map_err(|e| ReportError::Malformed(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        let r = parse_report(br#"{"outcome":"returned","value":{"a":1}}"#, 38, 100);
        assert_eq!(r, Some(Ok(Report::Returned { value: serde_json::json!({"a": 1}) })));
        assert_eq!(parse_report(b"", 0, 100), None);
        assert_eq!(parse_report(b"xx", 500, 100), Some(Err(ReportError::TooLarge(100))));
        assert!(matches!(parse_report(b"junk", 4, 100), Some(Err(ReportError::Malformed(_)))));
        assert_eq!(parse_report(br#"{"outcome":"script"}"#, 20, 100), Some(Ok(Report::Script)));
    }

    #[test]
    fn finds_interpreters() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/python3"), "").unwrap();
        std::fs::write(root.path().join("usr/bin/bash"), "").unwrap();
        assert_eq!(available(root.path()), vec![Language::Python, Language::Shell]);
    }
}
