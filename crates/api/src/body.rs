//! Request bodies: JSON only, size-limited, parsed within a memory budget, and every refusal in
//! IoT Central's error shape (axum's own rejections are plain text).

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The largest body accepted; device templates are the biggest documents, well under this.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the parsed bodies of the requests in progress may take together, as [`parse_cost`]
/// estimates it. Parsed, a body grows: 1 MiB of `[0,0,...]` is 36 MiB as a `Value`, 1 MiB of
/// `[[[0]]],...` over 120 MiB.
const PARSE_BUDGET_BYTES: usize = 192 * 1024 * 1024;

/// The budget's bytes not taken by a request in progress.
static PARSE_BUDGET: Semaphore = Semaphore::const_new(PARSE_BUDGET_BYTES);

/// Middleware for every `/api` route, after authentication (so that no body is read for a
/// caller without a token): reads the body, then holds its share of the parse budget until the
/// answer is made, waiting while earlier requests hold it all. A body estimated above the whole
/// budget takes it all, and runs alone.
pub async fn within_budget(request: Request, next: Next) -> Response {
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // The body limit travels in the request's extensions.
    let mut unread = Request::new(body);
    *unread.extensions_mut() = parts.extensions.clone();
    let bytes = match Bytes::from_request(unread, &()).await {
        Ok(bytes) => bytes,
        Err(rejection) => return unreadable(rejection).into_response(),
    };
    let share = parse_cost(&bytes).min(PARSE_BUDGET_BYTES) as u32;
    let _share = PARSE_BUDGET
        .acquire_many(share)
        .await
        .expect("the parse budget is never closed");
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Bytes per `,` or `:` (each adds a value): the value's slot in its array, or its entry in its
/// object, at worst in a vector that has just doubled.
const COST_PER_VALUE: usize = 2 * std::mem::size_of::<Value>();
/// Bytes per `[` or `{`: an array's or object's first allocation (four slots) and its index.
const COST_PER_CONTAINER: usize = 512;

/// An upper bound on the memory `serde_json` allocates to parse `bytes` into a [`Value`]: the
/// text (strings and keys are copied out of it) plus what each value and container takes.
fn parse_cost(bytes: &[u8]) -> usize {
    let (mut values, mut containers) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b',' | b':' => values += 1,
            b'[' | b'{' => containers += 1,
            _ => {}
        }
    }
    bytes.len() + values * COST_PER_VALUE + containers * COST_PER_CONTAINER
}

/// A body that could not be read, in IoT Central's error shape.
fn unreadable(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        )
    } else {
        ApiError::bad_request(format!("The request body could not be read: {rejection}"))
    }
}

/// A request body, read but not yet parsed: handlers check the caller's role first and only
/// then parse it with [`JsonBody::into_json`], so a caller without the role gets 403 whatever it
/// sent.
pub struct JsonBody {
    content_type: Option<String>,
    bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_ascii_lowercase());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(unreadable)?;
        Ok(JsonBody {
            content_type,
            bytes,
        })
    }
}

impl JsonBody {
    /// The body as a JSON object, refusing other media types, empty bodies and malformed JSON.
    pub fn into_json(self) -> Result<Value, ApiError> {
        if let Some(content_type) = &self.content_type {
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            if media_type != "application/json" && media_type != "application/merge-patch+json" {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "The Content-Type '{media_type}' is not supported; send application/json."
                    ),
                ));
            }
        }
        let bytes = self.bytes;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(
                "The request body is empty; send a JSON object.",
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("The request body is not valid JSON: {e}."))
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "The request body must be a JSON object.",
            ));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use super::*;

    /// The system allocator, counting the bytes held by each thread's allocations.
    struct Counting;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
    }

    fn count(bytes: isize) {
        let _ = HELD.try_with(|held| held.set(held.get() + bytes));
    }

    // SAFETY: every call goes to the system allocator as it came; only counts are added.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-(layout.size() as isize));
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count(new_size as isize - layout.size() as isize);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// The bytes a parsed `text` holds.
    fn parsed_size(text: &str) -> usize {
        let before = HELD.with(Cell::get);
        let value: Value = serde_json::from_str(text).unwrap();
        let held = HELD.with(Cell::get) - before;
        drop(value);
        held as usize
    }

    fn repeated(item: &str, bytes: usize) -> String {
        let mut text = String::from("[");
        while text.len() < bytes {
            text.push_str(item);
            text.push(',');
        }
        text.push_str(item);
        text.push(']');
        text
    }

    #[test]
    fn the_cost_bounds_what_a_parsed_body_holds() {
        for item in [
            "0",
            "[]",
            "[[[0]]]",
            "{}",
            r#"{"a":0}"#,
            r#"{"a":{"b":[1,2,3]},"c":"text"}"#,
            r#""a string with \" and , and [ inside""#,
        ] {
            for bytes in [100, 10_000, 300_000] {
                let text = repeated(item, bytes);
                let (held, cost) = (parsed_size(&text), parse_cost(text.as_bytes()));
                assert!(
                    held <= cost,
                    "{item} x {bytes}: {held} held, {cost} estimated"
                );
            }
        }
    }

    #[test]
    fn strings_do_not_count_as_structure() {
        assert_eq!(parse_cost(br#""[,:{""#), 6);
        assert_eq!(parse_cost(br#""\"[""#), 5);
    }
}
