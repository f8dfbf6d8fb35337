//! Turns how an execution ended (exit status, runner report, timeout, OOM kill) into the status
//! and message users see. Pure: every rule is a unit test away.

use crate::lang::{Report, ReportError};
use crate::supervisor::SupervisorReport;
use sandbox_core::ExecutionStatus;
use sandbox_protocol::ExecError;
use serde_json::Value;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// This signal killed it.
    Signal(i32),
}

impl Exit {
    /// How the program ended, by the supervisor's report.
    pub fn from_report(r: &SupervisorReport) -> Option<Exit> {
        match r {
            SupervisorReport { signal: Some(s), .. } => Some(Exit::Signal(*s)),
            SupervisorReport { exit_code, .. } => exit_code.map(Exit::Code),
        }
    }

    /// How a process ended, by its `wait` status.
    pub fn from_wait_status(status: i32) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }
}

/// Everything known when an execution has ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// How the program ended, as the supervisor reported it; `None` when no report came (the
    /// supervisor was killed, by user code or with the whole sandbox, before it could send one).
    pub exit: Option<Exit>,
    /// How bwrap ended: with the supervisor's exit code (128 + N when signal N killed it), or
    /// killed itself.
    pub sandbox_exit: Exit,
    /// The wall-clock limit ended it.
    pub timed_out: bool,
    /// A kill request ended it.
    pub killed: bool,
    /// The OOM killer ended it.
    pub oom_killed: bool,
    /// The runner's report, if any arrived.
    pub report: Option<Result<Report, ReportError>>,
    /// The timeout, for messages.
    pub timeout_ms: u64,
    /// The memory limit, for messages.
    pub memory_limit_mb: Option<u64>,
}

/// The user-visible outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The status.
    pub status: ExecutionStatus,
    /// The exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// The signal, when it was killed.
    pub signal: Option<i32>,
    /// A handler's return value.
    pub return_value: Option<Value>,
    /// Why it did not complete.
    pub error_message: Option<String>,
    /// The uncaught exception the runner described, if any.
    pub error: Option<ExecError>,
}

/// Decides the outcome.
pub fn classify(e: &Ended) -> Verdict {
    let mut v = Verdict {
        status: ExecutionStatus::Completed,
        exit_code: None,
        signal: None,
        return_value: None,
        error_message: None,
        error: None,
    };
    let kill = |v: &mut Verdict, status, msg: String| {
        v.status = status;
        v.signal = Some(libc::SIGKILL);
        v.error_message = Some(msg);
    };
    if e.timed_out {
        kill(
            &mut v,
            ExecutionStatus::Timeout,
            format!("execution timed out after {}", seconds(e.timeout_ms)),
        );
        return v;
    }
    if e.killed {
        kill(&mut v, ExecutionStatus::Cancelled, "execution was cancelled on request".into());
        return v;
    }
    let sigkilled = matches!(e.exit.unwrap_or(e.sandbox_exit), Exit::Signal(libc::SIGKILL) | Exit::Code(137));
    if e.oom_killed && sigkilled {
        let limit = e.memory_limit_mb.map(|m| format!(" ({m} MiB)")).unwrap_or_default();
        kill(
            &mut v,
            ExecutionStatus::Crashed,
            format!("out of memory: the sandbox's memory limit{limit} was reached"),
        );
        return v;
    }

    let Some(exit) = e.exit else {
        // Without the supervisor's word nothing the sandbox left behind can be believed (user
        // code may have killed the supervisor to make its own story stick).
        v.status = ExecutionStatus::Crashed;
        v.error_message = Some(format!(
            "the sandbox's supervisor ended before it reported how the program ended ({})",
            match e.sandbox_exit {
                Exit::Code(c) if c > 128 && c <= 128 + 64 => format!("killed by {}", signal_name(c - 128)),
                Exit::Code(c) => format!("exit code {c}"),
                Exit::Signal(s) => format!("bwrap killed by {}", signal_name(s)),
            }
        ));
        return v;
    };
    let code = match exit {
        Exit::Signal(s) => {
            v.status = ExecutionStatus::Crashed;
            v.signal = Some(s);
            v.error_message = Some(format!("killed by signal {}", signal_name(s)));
            return v;
        }
        Exit::Code(c) => c,
    };
    match &e.report {
        Some(Ok(Report::Returned { value })) if code == 0 => {
            v.exit_code = Some(0);
            v.return_value = Some(value.clone());
            return v;
        }
        Some(Ok(Report::NotSerializable { message })) => {
            return failed(v, code, format!("handler return value is not JSON-serialisable: {message}"));
        }
        Some(Ok(Report::Exception { error_type, message, traceback })) => {
            let text =
                if message.is_empty() { error_type.clone() } else { format!("{error_type}: {message}") };
            v.error = Some(ExecError {
                name: error_type.clone(),
                value: message.clone(),
                traceback: traceback.clone(),
            });
            return failed(v, code, text);
        }
        Some(Err(err @ ReportError::TooLarge(_))) => return failed(v, code, err.to_string()),
        _ => {}
    }
    if code == 0 {
        v.exit_code = Some(0);
        return v;
    }
    failed(v, code, format!("exited with code {code}"))
}

fn failed(mut v: Verdict, code: i32, msg: String) -> Verdict {
    v.status = ExecutionStatus::Failed;
    v.exit_code = Some(code);
    v.error_message = Some(msg);
    v
}

/// A duration in milliseconds as people write it: `2s`, `1.5s`.
pub fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{:.1}s", ms as f64 / 1000.0) }
}

/// The conventional name of a signal number.
pub fn signal_name(s: i32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(s)
        .ok()
        .and_then(|i| NAMES.get(i).filter(|_| i > 0))
        .map_or_else(|| format!("{s}"), |n| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ended(exit: Exit, report: Option<Result<Report, ReportError>>) -> Ended {
        Ended {
            exit: Some(exit),
            sandbox_exit: match exit {
                Exit::Code(c) => Exit::Code(c),
                Exit::Signal(s) => Exit::Code(128 + s),
            },
            timed_out: false,
            killed: false,
            oom_killed: false,
            report,
            timeout_ms: 2000,
            memory_limit_mb: Some(512),
        }
    }

    #[test]
    fn completed_handler_keeps_its_value() {
        let v = classify(&ended(Exit::Code(0), Some(Ok(Report::Returned { value: json!(42) }))));
        assert_eq!(v.status, ExecutionStatus::Completed);
        assert_eq!(v.return_value, Some(json!(42)));
        assert_eq!(v.error_message, None);
    }

    #[test]
    fn exceptions_and_bad_values_fail_with_a_message() {
        let exc = Report::Exception {
            error_type: "ZeroDivisionError".into(),
            message: "division by zero".into(),
            traceback: "Traceback (most recent call last): ...".into(),
        };
        let v = classify(&ended(Exit::Code(1), Some(Ok(exc))));
        assert_eq!(v.status, ExecutionStatus::Failed);
        assert_eq!(v.error_message.as_deref(), Some("ZeroDivisionError: division by zero"));
        let error = v.error.unwrap();
        assert_eq!((error.name.as_str(), error.value.as_str()), ("ZeroDivisionError", "division by zero"));
        assert!(error.traceback.starts_with("Traceback"));
        let ns = Report::NotSerializable { message: "Object of type set is not JSON serializable".into() };
        let v = classify(&ended(Exit::Code(1), Some(Ok(ns))));
        assert_eq!(v.status, ExecutionStatus::Failed);
        assert!(v.error_message.unwrap().contains("not JSON-serialisable"));
        let v = classify(&ended(Exit::Code(0), Some(Err(ReportError::TooLarge(10)))));
        assert_eq!(v.status, ExecutionStatus::Failed);
    }

    #[test]
    fn exit_codes() {
        let v = classify(&ended(Exit::Code(3), None));
        assert_eq!((v.status, v.exit_code), (ExecutionStatus::Failed, Some(3)));
        assert_eq!(v.error_message.as_deref(), Some("exited with code 3"));
        // A shell passes on 137 from a child: the supervisor reports it as an exit code.
        let v = classify(&ended(Exit::Code(137), None));
        assert_eq!(v.status, ExecutionStatus::Failed);
        // sys.exit(130) in Python is reported by the runner and stays an exit code.
        let v = classify(&ended(Exit::Code(130), Some(Ok(Report::Exit { code: 130 }))));
        assert_eq!((v.status, v.exit_code), (ExecutionStatus::Failed, Some(130)));
        let v = classify(&ended(Exit::Code(0), Some(Ok(Report::Exit { code: 0 }))));
        assert_eq!(v.status, ExecutionStatus::Completed);
    }

    /// User code that kills the supervisor, after leaving a cheerful report of its own on the
    /// result channel, gets `crashed`, whatever bwrap's status says.
    #[test]
    fn no_supervisor_report_is_a_crash() {
        for sandbox_exit in [Exit::Code(0), Exit::Code(137), Exit::Code(1), Exit::Signal(9)] {
            let e = Ended {
                exit: None,
                sandbox_exit,
                ..ended(Exit::Code(0), Some(Ok(Report::Returned { value: json!("all fine") })))
            };
            let v = classify(&e);
            assert_eq!(
                (v.status, v.return_value.as_ref()),
                (ExecutionStatus::Crashed, None),
                "{sandbox_exit:?}"
            );
            assert!(
                v.error_message.as_ref().unwrap().contains("supervisor ended before it reported"),
                "{v:?}"
            );
        }
        let e = Ended { exit: None, sandbox_exit: Exit::Code(137), ..ended(Exit::Code(0), None) };
        assert!(classify(&e).error_message.unwrap().ends_with("(killed by SIGKILL)"));
        // The limits still name themselves.
        let e = Ended {
            exit: None,
            sandbox_exit: Exit::Code(137),
            timed_out: true,
            ..ended(Exit::Code(0), None)
        };
        assert_eq!(classify(&e).status, ExecutionStatus::Timeout);
        let e = Ended {
            exit: None,
            sandbox_exit: Exit::Code(137),
            oom_killed: true,
            ..ended(Exit::Code(0), None)
        };
        assert!(classify(&e).error_message.unwrap().contains("out of memory"));
    }

    #[test]
    fn signals_crash() {
        let v = classify(&ended(Exit::Signal(11), None));
        assert_eq!((v.status, v.signal), (ExecutionStatus::Crashed, Some(11)));
        assert_eq!(v.error_message.as_deref(), Some("killed by signal SIGSEGV"));
        let v = classify(&ended(Exit::Signal(9), None));
        assert_eq!(v.status, ExecutionStatus::Crashed);
    }

    #[test]
    fn timeout_oom_and_kill_win_over_everything() {
        let mut e = ended(Exit::Signal(9), None);
        e.oom_killed = true;
        let v = classify(&e);
        assert_eq!(v.status, ExecutionStatus::Crashed);
        assert!(v.error_message.unwrap().contains("out of memory"));
        e.timed_out = true;
        let v = classify(&e);
        assert_eq!(v.status, ExecutionStatus::Timeout);
        assert_eq!(v.error_message.as_deref(), Some("execution timed out after 2s"));
        e.timed_out = false;
        e.oom_killed = false;
        e.killed = true;
        assert_eq!(classify(&e).status, ExecutionStatus::Cancelled);
        // An OOM kill elsewhere in the container does not taint a clean exit.
        let mut e = ended(Exit::Code(0), Some(Ok(Report::Script)));
        e.oom_killed = true;
        assert_eq!(classify(&e).status, ExecutionStatus::Completed);
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(0), "0");
        assert_eq!(signal_name(40), "40");
    }
}
