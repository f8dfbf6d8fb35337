//! What runners send on the result descriptor: one JSON object per line.
//!
//! - `{"type": "display", "output": {...}}`: a rich output ([`DisplayOutput`]);
//! - `{"type": "report", "outcome": ...}`: how a stateless execution ended ([`Report`]);
//! - `{"type": "done", "seq": N, "exit_code": C, "error": ...}`: a context's cell ended
//!   ([`Done`]).
//!
//! The descriptor is private to the runner (output cannot reach it, programs the code starts do
//! not inherit it), but code inside the interpreter itself can write to it, so nothing here is
//! trusted: lines are cut at a length cap, display outputs count against a budget, and what
//! does not parse is dropped.

use sandbox_protocol::{DisplayOutput, ExecError, ExecEvent};
use serde::Deserialize;
use serde_json::Value;
use std::collections::VecDeque;
use tokio::sync::mpsc::UnboundedSender;

/// What a stateless execution's runner reported.
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
        /// The traceback as printed.
        #[serde(default)]
        traceback: String,
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
}

/// A context's cell ended.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Done {
    /// The cell's number (0 for the context's start).
    pub seq: u64,
    /// 0; 1 after an exception; a `SystemExit`'s code; a shell cell's last status.
    pub exit_code: i32,
    /// The uncaught exception, if any.
    #[serde(default)]
    pub error: Option<ExecError>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    Display { output: DisplayOutput },
    Report(Report),
    Done(Done),
}

/// Bytes a report line holds besides the value itself (`{"type":"report",...}`).
const REPORT_OVERHEAD: usize = 64;
/// How much of an over-long line is kept, to tell what it was.
const KEPT_PREFIX: usize = 32;

/// One line of the result descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its newline.
    Whole(Vec<u8>),
    /// A line longer than the cap: its first bytes, the rest dropped as it arrived.
    TooLong(Vec<u8>),
}

/// Splits a byte stream into lines, never holding more than `max` bytes of one.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    partial: Vec<u8>,
    overlong: Option<Vec<u8>>,
    ready: VecDeque<Line>,
}

impl LineSplitter {
    /// A splitter for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineSplitter { max, partial: Vec::new(), overlong: None, ready: VecDeque::new() }
    }

    /// Takes the next bytes of the stream.
    pub fn push(&mut self, mut chunk: &[u8]) {
        loop {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.extend(&chunk[..i]);
                    self.end_line();
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.extend(chunk);
                    return;
                }
            }
        }
    }

    /// The stream has ended: what is left counts as a last line.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() || self.overlong.is_some() {
            self.end_line();
        }
    }

    /// The next complete line.
    pub fn next_line(&mut self) -> Option<Line> {
        self.ready.pop_front()
    }

    fn extend(&mut self, part: &[u8]) {
        if self.overlong.is_some() {
            return;
        }
        if self.partial.len() + part.len() > self.max {
            let mut start = std::mem::take(&mut self.partial);
            start.extend_from_slice(&part[..part.len().min(KEPT_PREFIX)]);
            start.truncate(KEPT_PREFIX);
            self.overlong = Some(start);
        } else {
            self.partial.extend_from_slice(part);
        }
    }

    fn end_line(&mut self) {
        let line = match self.overlong.take() {
            Some(start) => Line::TooLong(start),
            None => Line::Whole(std::mem::take(&mut self.partial)),
        };
        self.ready.push_back(line);
    }
}

/// What one execution's runner sent: its display outputs (within a byte budget) and its report.
#[derive(Debug)]
pub struct Collected {
    /// Display outputs kept, in order.
    pub results: Vec<DisplayOutput>,
    /// Whether some were dropped for the budget.
    pub results_truncated: bool,
    /// A stateless execution's report, when one came.
    pub report: Option<Result<Report, ReportError>>,
    display_budget: usize,
    report_cap: usize,
}

impl Collected {
    /// Keeps up to `display_budget` bytes of display messages, and reports whose value is at
    /// most `report_cap` bytes.
    pub fn new(display_budget: usize, report_cap: usize) -> Self {
        Collected { results: Vec::new(), results_truncated: false, report: None, display_budget, report_cap }
    }

    /// The longest line worth reading whole.
    pub fn max_line(&self) -> usize {
        self.display_budget.max(self.report_cap + REPORT_OVERHEAD)
    }

    /// Takes one line; a cell's end is handed back, display outputs are forwarded to `events`
    /// as they come.
    pub fn take(&mut self, line: Line, events: Option<&UnboundedSender<ExecEvent>>) -> Option<Done> {
        let bytes = match line {
            Line::Whole(bytes) => bytes,
            Line::TooLong(start) => {
                if start.starts_with(br#"{"type":"display""#) {
                    self.results_truncated = true;
                } else if start.starts_with(br#"{"type":"report""#) {
                    self.report = Some(Err(ReportError::TooLarge(self.report_cap)));
                }
                return None;
            }
        };
        match serde_json::from_slice::<Message>(&bytes) {
            Ok(Message::Display { output }) => {
                if bytes.len() > self.display_budget {
                    self.results_truncated = true;
                    return None;
                }
                if output.data.is_empty() {
                    return None;
                }
                self.display_budget -= bytes.len();
                if output.is_main_result {
                    // One main result per execution: the last one.
                    self.results.iter_mut().for_each(|r| r.is_main_result = false);
                }
                if let Some(tx) = events {
                    let _ = tx.send(ExecEvent::Display { output: output.clone() });
                }
                self.results.push(output);
                None
            }
            Ok(Message::Report(report)) => {
                self.report = Some(if bytes.len() > self.report_cap + REPORT_OVERHEAD {
                    Err(ReportError::TooLarge(self.report_cap))
                } else {
                    Ok(report)
                });
                None
            }
            Ok(Message::Done(done)) => Some(done),
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a line on the result descriptor that is not a message");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(s: &mut LineSplitter) -> Vec<Line> {
        std::iter::from_fn(|| s.next_line()).collect()
    }

    #[test]
    fn lines_are_split_across_chunks_and_cut_at_the_cap() {
        let mut s = LineSplitter::new(10);
        s.push(b"ab");
        s.push(b"c\nde");
        assert_eq!(lines(&mut s), [Line::Whole(b"abc".to_vec())]);
        s.push(b"fghijklmnopqrstuvwxyz");
        s.push(&[b'z'; 100_000]);
        assert!(lines(&mut s).is_empty());
        s.push(b"z\nshort\n\ntail");
        assert_eq!(
            lines(&mut s),
            [
                Line::TooLong(b"defghijklmnopqrstuvwxyz".to_vec()),
                Line::Whole(b"short".to_vec()),
                Line::Whole(vec![]),
            ]
        );
        s.finish();
        assert_eq!(lines(&mut s), [Line::Whole(b"tail".to_vec())]);
        assert!(s.partial.capacity() < 1000, "an over-long line is never held");
    }

    fn line(v: Value) -> Line {
        Line::Whole(serde_json::to_vec(&v).unwrap())
    }

    fn display(text: &str, main: bool) -> Value {
        json!({"type": "display", "output": {"data": {"text/plain": text}, "is_main_result": main}})
    }

    #[test]
    fn messages_are_collected_within_the_budget() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut c = Collected::new(300, 50);
        assert_eq!(c.take(line(display("a", false)), Some(&tx)), None);
        assert!(matches!(rx.try_recv(), Ok(ExecEvent::Display { .. })), "forwarded at once");
        c.take(line(display("b", true)), Some(&tx));
        c.take(line(display("c", true)), Some(&tx));
        let main: Vec<_> = c.results.iter().map(|r| r.is_main_result).collect();
        assert_eq!(main, [false, false, true], "one main result: the last");
        c.take(line(display(&"x".repeat(250), false)), None);
        assert!(c.results_truncated && c.results.len() == 3, "past the budget: dropped and flagged");
        c.take(Line::TooLong(br#"{"type":"display","output""#.to_vec()), None);

        c.take(line(json!({"type": "report", "outcome": "returned", "value": {"a": 1}})), None);
        assert_eq!(c.report, Some(Ok(Report::Returned { value: json!({"a": 1}) })));
        c.take(line(json!({"type": "report", "outcome": "returned", "value": "y".repeat(100)})), None);
        assert_eq!(c.report, Some(Err(ReportError::TooLarge(50))));
        c.take(Line::TooLong(br#"{"type":"report","outcome":"ret"#.to_vec()), None);
        assert_eq!(c.report, Some(Err(ReportError::TooLarge(50))));

        let done = c.take(
            line(json!({"type": "done", "seq": 4, "exit_code": 1,
                        "error": {"name": "KeyboardInterrupt", "value": "", "traceback": "tb"}})),
            None,
        );
        assert_eq!(done.unwrap().error.unwrap().name, "KeyboardInterrupt");
        for junk in [&b"not json"[..], br#"{"type":"bogus"}"#, br#"{"type":"done"}"#] {
            assert_eq!(c.take(Line::Whole(junk.to_vec()), None), None, "{junk:?} is ignored");
        }
        c.take(
            line(json!({"type": "report", "outcome": "exception", "error_type": "E", "message": "m"})),
            None,
        );
        assert!(
            matches!(c.report, Some(Ok(Report::Exception { ref traceback, .. })) if traceback.is_empty())
        );
    }
}
