//! Reads a child's output pipe, keeping at most a cap of it, and turns byte chunks into text
//! without splitting a UTF-8 character across two chunks.

use sandbox_protocol::{ExecEvent, StreamEvent};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::UnboundedSender;

/// What was read from one pipe.
#[derive(Debug, Default)]
pub struct Captured {
    /// The first `cap` bytes.
    pub bytes: Vec<u8>,
    /// Bytes read in all, kept or not.
    pub total: u64,
}

impl Captured {
    /// Whether more was written than kept.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }

    /// Counts `chunk` and keeps what fits under `cap`; returns the part kept.
    pub fn push<'a>(&mut self, chunk: &'a [u8], cap: usize) -> &'a [u8] {
        self.total += chunk.len() as u64;
        let room = cap.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes.extend_from_slice(&chunk[..room]);
        &chunk[..room]
    }
}

/// Reads `r` until end of file. Keeps the first `cap` bytes and hands each kept chunk to
/// `on_chunk` as it arrives; everything past the cap is read and dropped, so a program that
/// writes without end never blocks on a full pipe.
pub async fn capture<R: AsyncRead + Unpin>(
    mut r: R,
    cap: usize,
    mut on_chunk: impl FnMut(&[u8]),
) -> std::io::Result<Captured> {
    let mut out = Captured::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        let kept = out.push(&buf[..n], cap);
        if !kept.is_empty() {
            on_chunk(kept);
        }
    }
}

/// Standard output or error as an execution sees it: the first `cap` bytes kept, and each kept
/// chunk sent on as text to the execution's event stream, if it has one.
#[derive(Debug)]
pub struct Output {
    captured: Captured,
    cap: usize,
    text: Utf8Chunks,
    wrap: fn(String) -> StreamEvent,
}

impl Output {
    /// Standard output, keeping `cap` bytes.
    pub fn stdout(cap: usize) -> Self {
        Self::new(cap, |data| StreamEvent::Stdout { data })
    }

    /// Standard error, keeping `cap` bytes.
    pub fn stderr(cap: usize) -> Self {
        Self::new(cap, |data| StreamEvent::Stderr { data })
    }

    fn new(cap: usize, wrap: fn(String) -> StreamEvent) -> Self {
        Output { captured: Captured::default(), cap, text: Utf8Chunks::default(), wrap }
    }

    /// Takes the next chunk the program wrote.
    pub fn push(&mut self, chunk: &[u8], events: Option<&UnboundedSender<ExecEvent>>) {
        let kept = self.captured.push(chunk, self.cap);
        if let Some(tx) = events {
            let s = self.text.push(kept);
            if !s.is_empty() {
                let _ = tx.send((self.wrap)(s).into());
            }
        }
    }

    /// The stream has ended; what was kept.
    pub fn finish(self, events: Option<&UnboundedSender<ExecEvent>>) -> Captured {
        if let Some(tx) = events {
            let rest = self.text.finish();
            if !rest.is_empty() {
                let _ = tx.send((self.wrap)(rest).into());
            }
        }
        self.captured
    }
}

/// Decodes a byte stream chunk by chunk; invalid sequences become U+FFFD, and a character
/// split across chunks is held back until its last byte arrives.
#[derive(Debug, Default)]
pub struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    /// Decodes what can be decoded of `chunk` (after anything held back).
    pub fn push(&mut self, chunk: &[u8]) -> String {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(chunk);
        let mut out = String::with_capacity(data.len());
        let mut rest = &data[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).expect("valid prefix"));
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None => {
                            // An incomplete character at the end: wait for the rest of it.
                            self.pending = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Decodes whatever is still held back (an incomplete character becomes U+FFFD).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_cap_and_drains_the_rest() {
        let data = vec![b'x'; 300_000];
        let mut seen = 0;
        let c = capture(&data[..], 1000, |c| seen += c.len()).await.unwrap();
        assert_eq!(c.bytes.len(), 1000);
        assert_eq!(seen, 1000);
        assert_eq!(c.total, 300_000);
        assert!(c.truncated());
        let small = capture(&b"hi"[..], 1000, |_| {}).await.unwrap();
        assert!(!small.truncated());
        assert_eq!(small.bytes, b"hi");
    }

    #[test]
    fn output_streams_the_kept_text() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut out = Output::stderr(5);
        out.push("h\u{e9}".as_bytes(), Some(&tx));
        out.push(b"llo world", Some(&tx));
        let c = out.finish(Some(&tx));
        assert_eq!((c.bytes.as_slice(), c.total, c.truncated()), ("h\u{e9}ll".as_bytes(), 12, true));
        let mut text = String::new();
        while let Ok(ExecEvent::Stream(StreamEvent::Stderr { data })) = rx.try_recv() {
            text.push_str(&data);
        }
        assert_eq!(text, "h\u{e9}ll");
    }

    #[test]
    fn characters_split_across_chunks_survive() {
        let text = "héllo 你好 🌍";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut d = Utf8Chunks::default();
            let mut s = d.push(&bytes[..split]);
            s.push_str(&d.push(&bytes[split..]));
            s.push_str(&d.finish());
            assert_eq!(s, text, "split at {split}");
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Utf8Chunks::default();
        assert_eq!(d.push(b"\xff\xfe raw ok\n"), "\u{FFFD}\u{FFFD} raw ok\n");
        assert_eq!(d.push(b"a\xe4\xbd"), "a");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
