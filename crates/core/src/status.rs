//! Execution statuses, as the Python control plane's API names them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an execution is in its life. Every execution ends in one of the terminal statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Recorded, not started yet.
    Pending,
    /// Running in its sandbox.
    Running,
    /// Exited with status 0 (and, for a handler, returned a JSON value).
    Completed,
    /// Exited non-zero, raised an exception, or returned a value that is not JSON.
    Failed,
    /// Killed because it ran past its timeout.
    Timeout,
    /// Killed by a signal (such as the out-of-memory killer), or the sandbox failed under it.
    Crashed,
    /// Cancelled on request: its processes were killed.
    Cancelled,
}

impl ExecutionStatus {
    /// Every status, in the order of an execution's life.
    pub const ALL: [ExecutionStatus; 7] = [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Crashed,
        ExecutionStatus::Cancelled,
    ];

    /// Parses a name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the execution has ended; a terminal status never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Pending | ExecutionStatus::Running)
    }

    /// The name used on the wire and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Crashed => "crashed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses() {
        assert!(!ExecutionStatus::Pending.is_terminal());
        assert!(!ExecutionStatus::Running.is_terminal());
        for s in [
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
            ExecutionStatus::Timeout,
            ExecutionStatus::Crashed,
            ExecutionStatus::Cancelled,
        ] {
            assert!(s.is_terminal());
            assert_eq!(ExecutionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
