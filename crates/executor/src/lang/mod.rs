//! How each language starts inside the sandbox, and how the executor talks to its runner.
//!
//! Every language has a small runner (`runner.py`, `runner.js`, `runner.sh`) that the sandbox's
//! supervisor starts before any request arrives. User code is never put on a command line or
//! through a shell: the executor writes it into the sandbox's `/sandbox` directory (read-only to
//! the code) and then tells the runner, on [`REQUEST_FD`], what to do with it ([`Request`]).
//! The runner answers on [`RESULT_FD`] with one JSON message per line ([`messages`]).

pub mod messages;
#[cfg(test)]
mod runner_tests;

use crate::supervisor::Interrupt;
use sandbox_core::Language;
use std::path::Path;

pub use messages::{Collected, Done, LineSplitter, Report, ReportError};

/// The descriptor runners answer on, inside the sandbox.
pub const RESULT_FD: i32 = 3;
/// The descriptor runners read requests from, inside the sandbox.
pub const REQUEST_FD: i32 = 6;

/// Where the executor's files appear inside the sandbox (read-only to user code).
pub const SANDBOX_DIR: &str = "/sandbox";

/// Where a language's pieces live inside the sandbox, and how it starts.
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    /// The interpreter, looked up on the sandbox's `PATH`.
    pub program: &'static str,
    /// Its arguments (the runner's path last).
    pub args: &'static [&'static str],
    /// The runner's files in [`SANDBOX_DIR`] (name and source), the runner itself first.
    pub files: &'static [(&'static str, &'static str)],
    /// The file name, in [`SANDBOX_DIR`], of a stateless execution's code.
    pub main_file: &'static str,
    /// The file name, in [`SANDBOX_DIR`], of a context's cell.
    pub cell_file: &'static str,
    /// Whom an interrupt reaches.
    pub interrupt: Interrupt,
}

/// How `language` starts.
pub fn launch(language: Language) -> Launch {
    match language {
        Language::Python => Launch {
            program: "python3",
            // Unbuffered, so output written before a timeout is not lost; no .pyc files in the
            // workspace.
            args: &["-u", "-B", "/sandbox/runner.py"],
            files: &[("runner.py", include_str!("runner.py")), ("notebook.py", include_str!("notebook.py"))],
            main_file: "main.py",
            cell_file: "cell.py",
            interrupt: Interrupt::Program,
        },
        Language::Javascript => Launch {
            program: "node",
            args: &["/sandbox/runner.js"],
            files: &[("runner.js", include_str!("runner.js"))],
            main_file: "main.js",
            cell_file: "cell.js",
            interrupt: Interrupt::Program,
        },
        Language::Shell => Launch {
            program: "bash",
            args: &["/sandbox/runner.sh"],
            files: &[("runner.sh", include_str!("runner.sh"))],
            main_file: "main.sh",
            cell_file: "cell.sh",
            interrupt: Interrupt::Group,
        },
    }
}

/// What the executor asks a runner to do, one line on [`REQUEST_FD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Run the stateless execution in [`Launch::main_file`] once, then exit.
    Run,
    /// Become a context working in this directory (an absolute path without control
    /// characters); answered as cell 0.
    Context(&'a str),
    /// Run [`Launch::cell_file`] as this cell of the context.
    Cell(u64),
}

impl Request<'_> {
    /// The line to send.
    pub fn line(&self) -> String {
        match self {
            Request::Run => "run\n".to_owned(),
            Request::Context(cwd) => format!("context {cwd}\n"),
            Request::Cell(seq) => format!("cell {seq}\n"),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_interpreters() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/python3"), "").unwrap();
        std::fs::write(root.path().join("usr/bin/bash"), "").unwrap();
        assert_eq!(available(root.path()), vec![Language::Python, Language::Shell]);
    }

    #[test]
    fn request_lines() {
        assert_eq!(Request::Run.line(), "run\n");
        assert_eq!(Request::Context("/workspace/a b").line(), "context /workspace/a b\n");
        assert_eq!(Request::Cell(7).line(), "cell 7\n");
        for l in Language::ALL {
            let launch = launch(l);
            assert_eq!(launch.args.last(), Some(&format!("{SANDBOX_DIR}/{}", launch.files[0].0).as_str()));
        }
    }
}
