//! A Server-Sent Events parser (the WHATWG event-stream format): bytes in, whole events out.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:`; "message" when the event has none.
    pub name: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
    /// `id:`, when the event set one.
    pub id: Option<String>,
}

#[derive(Default)]
pub struct Parser {
    /// Bytes of a line not yet ended.
    partial: Vec<u8>,
    name: Option<String>,
    data: Vec<String>,
    id: Option<String>,
}

impl Parser {
    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.partial.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.partial.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // a comment: keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            "id" => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
        let name = self.name.take();
        let id = self.id.take();
        if self.data.is_empty() && name.is_none() {
            return None;
        }
        Some(Event {
            name: name.unwrap_or_else(|| "message".into()),
            data: std::mem::take(&mut self.data).join("\n"),
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_lines_ending_in_crlf() {
        let mut parser = Parser::default();
        assert!(parser.push(b": keep-alive\n\nevent: sta").is_empty());
        let events = parser
            .push(b"tus\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\nid: 7\nevent: device\ndata:x\n\n");
        assert_eq!(
            events,
            vec![
                Event {
                    name: "status".into(),
                    data: "{\"a\":\n1}".into(),
                    id: None
                },
                Event {
                    name: "device".into(),
                    data: "x".into(),
                    id: Some("7".into())
                },
            ]
        );
    }
}
