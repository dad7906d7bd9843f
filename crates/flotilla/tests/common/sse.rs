#![allow(dead_code)]
//! A small Server-Sent Events client for the tests: reads a `text/event-stream` response into
//! events until a condition holds or the stream ends.

use std::time::Duration;

use serde_json::Value;

/// One event as the stream carried it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// An open stream and what it has read but not yet parsed.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    pub comments: usize,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> SseStream {
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseStream {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event; `None` when the server closed the stream. Panics after a minute without
    /// one (a guard against a hung test, not a timing check).
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.response.chunk())
                .await
                .expect("an event within a minute")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Events until (and with) the first for which `last` holds, or until the stream ends.
    pub async fn until(&mut self, last: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            let done = last(&event);
            events.push(event);
            if done {
                break;
            }
        }
        events
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
        let mut fields = 0;
        for line in block.lines() {
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            fields += 1;
            match name {
                "event" => event = value.to_string(),
                "id" => id = Some(value.to_string()),
                "data" => data.push_str(value),
                _ => {}
            }
        }
        (fields > 0).then(|| SseEvent {
            event,
            id,
            data: serde_json::from_str(&data).expect("event data is JSON"),
        })
    }
}
