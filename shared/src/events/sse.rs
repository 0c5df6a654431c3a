//! The SSE wire form of an event, encoded once and shared: the feed builds
//! each event's frame a single time and every watcher sends the same
//! [`Bytes`] (a reference count, not a copy), so a thousand watchers cost
//! one serialization, not a thousand.
//!
//! The text is what axum's `Sse` wrote for the same event: `id: <revision>`,
//! `event: <kind>`, one `data: ` line per line of the payload (none when it
//! is empty), then a blank line.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use super::Event;

/// The keep-alive comment sent after [`super::HEARTBEAT`] without traffic.
pub(super) const HEARTBEAT_FRAME: &[u8] = b": heartbeat\n\n";

/// Append `event`'s SSE frame to `out`.
pub(super) fn write_frame(out: &mut BytesMut, event: &Event) {
    out.reserve(event.data.len() + event.kind.len() + 40);
    out.put_slice(b"id: ");
    // Writing into a `BytesMut` cannot fail.
    let _ = write!(out, "{}", event.revision);
    out.put_slice(b"\nevent: ");
    // A kind is one of the services' own words; a line break would end the
    // field early, so one is dropped rather than trusted.
    for part in event.kind.split(['\r', '\n']) {
        out.put_slice(part.as_bytes());
    }
    out.put_u8(b'\n');
    if !event.data.is_empty() {
        // The payload is compact JSON (no line breaks); any other text is
        // cut into one `data:` line per line, as the SSE format requires.
        for line in event.data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
            out.put_slice(b"data: ");
            out.put_slice(line.as_bytes());
            out.put_u8(b'\n');
        }
    }
    out.put_u8(b'\n');
}

/// `event`'s SSE frame on its own.
pub(super) fn frame(event: &Event) -> Bytes {
    let mut out = BytesMut::new();
    write_frame(&mut out, event);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: &str) -> Event {
        Event {
            revision: 42,
            kind: kind.to_owned(),
            scope: "app".to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn a_frame_has_id_event_and_data_lines() {
        assert_eq!(
            frame(&event("put", r#"{"key":"k"}"#)),
            "id: 42\nevent: put\ndata: {\"key\":\"k\"}\n\n"
        );
    }

    #[test]
    fn multi_line_data_becomes_one_data_field_per_line() {
        assert_eq!(
            frame(&event("put", "a\nb\r\nc\rd")),
            "id: 42\nevent: put\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_data_has_no_data_field_and_a_kind_keeps_to_one_line() {
        assert_eq!(frame(&event("re\nset", "")), "id: 42\nevent: reset\n\n");
    }

    #[test]
    fn the_reset_notice_carries_its_revision() {
        assert_eq!(
            frame(&Event::reset(7)),
            "id: 7\nevent: reset\ndata: {\"revision\":7}\n\n"
        );
    }
}
