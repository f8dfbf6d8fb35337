//! How a process ended, from its supervisor's report and what the executor did to it.

use crate::supervisor::SupervisorReport;
use chrono::Utc;
use sandbox_protocol::ProcessEnd;
use sandbox_protocol::process::status_text;

/// What the executor knows besides the supervisor's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Circumstances {
    /// The supervisor said the program was starting.
    pub started: bool,
    /// It was killed at its timeout (of this many ms).
    pub timed_out: Option<u64>,
    /// It was killed on request (`SIGKILL`, or the executor ending).
    pub killed: bool,
    /// Its output pipes stayed open after its sandbox ended.
    pub undrained: bool,
}

/// The end of a process whose supervisor sent `report` (none when its sandbox was killed or
/// broke).
pub fn end_of(report: Option<&SupervisorReport>, c: Circumstances) -> ProcessEnd {
    const KILLED: i32 = libc::SIGKILL;
    let (exit_code, signal, mut error) = match (report, c.timed_out) {
        (Some(SupervisorReport { exit_code: Some(code), .. }), _) => (Some(*code), None, None),
        (Some(SupervisorReport { signal: Some(s), .. }), _) => (None, Some(*s), None),
        (_, Some(ms)) => (None, Some(KILLED), Some(format!("it reached its timeout of {ms} ms"))),
        _ if c.killed => (None, Some(KILLED), None),
        _ if !c.started => (None, Some(KILLED), Some("its sandbox could not be started".to_owned())),
        _ => (None, Some(KILLED), Some("its sandbox ended without saying how it did".to_owned())),
    };
    if c.undrained && error.is_none() {
        error = Some("its output pipes stayed open after it ended; later output was lost".to_owned());
    }
    ProcessEnd {
        exit_code: exit_code.unwrap_or(-1),
        exited: exit_code.is_some(),
        signal,
        status: status_text(exit_code, signal),
        error,
        ended_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(exit_code: Option<i32>, signal: Option<i32>) -> SupervisorReport {
        SupervisorReport { exit_code, signal, cpu_time_us: None, peak_memory_kb: None }
    }

    fn started() -> Circumstances {
        Circumstances { started: true, ..Default::default() }
    }

    #[test]
    fn exits_and_signals_read_as_go_reads_them() {
        let e = end_of(Some(&report(Some(3), None)), started());
        assert_eq!(
            (e.exit_code, e.exited, e.signal, e.status.as_str(), e.error),
            (3, true, None, "exit status 3", None)
        );
        let e = end_of(Some(&report(None, Some(15))), started());
        assert_eq!(
            (e.exit_code, e.exited, e.signal, e.status.as_str()),
            (-1, false, Some(15), "signal: terminated")
        );
    }

    #[test]
    fn a_killed_sandbox_is_killed() {
        let e = end_of(None, Circumstances { killed: true, ..started() });
        assert_eq!((e.exit_code, e.exited, e.status.as_str(), e.error), (-1, false, "signal: killed", None));
        let e = end_of(None, Circumstances { timed_out: Some(500), ..started() });
        assert_eq!(e.status, "signal: killed");
        assert_eq!(e.error.as_deref(), Some("it reached its timeout of 500 ms"));
        // A program that exited just as its timeout came keeps its exit.
        let e = end_of(Some(&report(Some(0), None)), Circumstances { timed_out: Some(500), ..started() });
        assert_eq!((e.exit_code, e.exited), (0, true));
        let e = end_of(None, Circumstances::default());
        assert_eq!(e.error.as_deref(), Some("its sandbox could not be started"));
        let e = end_of(None, started());
        assert!(e.error.unwrap().contains("without saying"));
    }
}
