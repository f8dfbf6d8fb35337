//! Server-Sent Events: an incremental parser, and a reader of the events of a response body.

use crate::client::Result;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use std::collections::VecDeque;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its `event:` field (`message` when there is none).
    pub event: String,
    /// Its `data:` lines, joined with newlines.
    pub data: String,
    /// Its `id:` field, if it had one.
    pub id: Option<String>,
}

/// Parses an event stream fed in chunks split anywhere.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
}

impl Parser {
    /// Takes the next bytes; answers the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    let event = self.event.take().unwrap_or_else(|| "message".to_owned());
                    out.push(Event { event, data, id: self.id.take() });
                }
                self.event = None;
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                "id" => self.id = Some(value.to_owned()),
                _ => {} // comments (`:`), `retry` and unknown fields
            }
        }
        out
    }
}

/// The events of a streamed response body, one at a time.
pub struct Events {
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: Parser,
    ready: VecDeque<Event>,
}

impl Events {
    /// Reads the events of `resp`'s body.
    pub fn new(resp: reqwest::Response) -> Self {
        Events { body: resp.bytes_stream().boxed(), parser: Parser::default(), ready: VecDeque::new() }
    }

    /// The next event; `None` at the end of the body.
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            match self.body.next().await {
                Some(chunk) => self.ready.extend(self.parser.feed(&chunk?)),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str, id: Option<&str>) -> Event {
        Event { event: event.into(), data: data.into(), id: id.map(Into::into) }
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = b"event: stdout\r\nid: 1\r\ndata: {\"data\":\"hi\"}\r\n\r\n: keep-alive\n\ndata: a\ndata: b\n\nevent: result\ndata:{}\n\n";
        let want = vec![
            event("stdout", "{\"data\":\"hi\"}", Some("1")),
            event("message", "a\nb", None),
            event("result", "{}", None),
        ];
        for split in 0..text.len() {
            let mut p = Parser::default();
            let mut got = p.feed(&text[..split]);
            got.extend(p.feed(&text[split..]));
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn an_event_without_data_or_an_unfinished_one_is_not_dispatched() {
        let mut p = Parser::default();
        assert!(p.feed(b"event: ping\n\ndata: x").is_empty());
        assert_eq!(p.feed(b"\n\n"), vec![event("message", "x", None)]);
    }
}
