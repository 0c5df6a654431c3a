//! Server-Sent Events: a small line parser and a stream of events over a
//! reqwest response.
//!
//! Hand-written on purpose: there is no well-kept SSE client crate among the
//! workspace's dependencies, and the part of the format MCP uses (`id:`,
//! `event:`, `data:`, `:` comments, blank line ends an event) is a few dozen
//! lines over `bytes_stream()`.

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;

use crate::Error;

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `id:` (the revision on MCP watches), if the event carried one.
    pub id: Option<String>,
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// The `id:` as a revision number.
    pub fn revision(&self) -> Option<u64> {
        self.id.as_deref().and_then(|id| id.trim().parse().ok())
    }
}

/// Incremental parser: feed it bytes as they arrive, take out whole events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an incomplete line.
    line: Vec<u8>,
    /// The event being built.
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    /// The previous chunk ended in `\r`: a following `\n` belongs to it.
    after_cr: bool,
}

/// Longest line the parser buffers; a server sending more is broken or hostile.
const MAX_LINE: usize = 1 << 20;

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed `chunk`; returns the events it completed (in order).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        events.push(event);
                    }
                }
                _ if self.line.len() < MAX_LINE => self.line.push(byte),
                _ => {}
            }
        }
        events
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None; // a comment (heartbeat)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // `retry:` and unknown fields are ignored
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let data = self.data.take();
        let event = self.event.take();
        let id = self.id.take();
        // Per the spec, an event without data is not dispatched.
        data.map(|data| SseEvent {
            id,
            event: event.unwrap_or_else(|| "message".to_owned()),
            data,
        })
    }
}

/// The events of one open watch response.
pub struct EventStream {
    url: String,
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: SseParser,
    pending: std::collections::VecDeque<SseEvent>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("url", &self.url)
            .finish()
    }
}

impl EventStream {
    pub(crate) fn new(url: String, response: reqwest::Response) -> Self {
        Self {
            url,
            body: response.bytes_stream().boxed(),
            parser: SseParser::new(),
            pending: std::collections::VecDeque::new(),
        }
    }

    /// The next event; `None` when the server closed the stream, an error
    /// when the connection broke. Either way the caller reconnects with the
    /// last revision it saw.
    pub async fn next(&mut self) -> Option<Result<SseEvent, Error>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            match self.body.next().await? {
                Ok(chunk) => self.pending.extend(self.parser.push(&chunk)),
                Err(e) => return Some(Err(Error::transport(&self.url, &e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_event_and_data() {
        let mut parser = SseParser::new();
        let events = parser.push(b"id: 7\nevent: put\ndata: {\"a\":1}\n\n");
        assert_eq!(
            events,
            vec![SseEvent {
                id: Some("7".into()),
                event: "put".into(),
                data: "{\"a\":1}".into()
            }]
        );
        assert_eq!(events[0].revision(), Some(7));
    }

    #[test]
    fn events_split_across_chunks_and_crlf() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"id: 1\r").is_empty());
        assert!(parser.push(b"\nevent: reset\r\nda").is_empty());
        let events = parser.push(b"ta: {\"revision\":9}\r\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "reset");
        assert_eq!(events[0].data, "{\"revision\":9}");
    }

    #[test]
    fn comments_and_dataless_events_are_skipped() {
        let mut parser = SseParser::new();
        let events = parser.push(b": heartbeat\n\nevent: x\n\ndata: a\ndata: b\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, "message");
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(events[0].id, None);
    }

    #[test]
    fn several_events_in_one_chunk() {
        let mut parser = SseParser::new();
        let events = parser.push(b"id:1\ndata:x\n\nid:2\ndata:y\n\n");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].revision(), Some(2));
        assert_eq!(events[1].data, "y");
    }
}
